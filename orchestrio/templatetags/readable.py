"""Readable state for the console: one status badge and one time element, used by every page.

`{% status value %}` draws a state (an instance's, an operation's, a task's, a deployment's, a
domain's, an alert delivery's…) as a badge whose tone is given by colour *and* by an icon
(static/console/components.css draws a glyph per tone), with the state as its text, so colour is
never the only signal. `{% when value %}` draws a time as `<time>`: relative text rendered here
(so it reads without JavaScript), the exact UTC time on hover, the ISO time only in `datetime`
(static/console/readable.js keeps the relative text current).
"""

from __future__ import annotations

from datetime import date, datetime, timezone as dt_timezone

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

register = template.Library()

# A state's tone. "running" is done for an instance and in progress for an operation, a task or
# a step: the kinds below override the shared table.
TONES = {
    # done, healthy, in force
    "running": "good", "succeeded": "good", "active": "good", "healthy": "good", "delivered": "good",
    "applied": "good", "accepted": "good", "enabled": "good", "completed": "good", "trialing": "good", "complete": "good",
    "available": "good",
    # in progress, waiting
    "pending": "busy", "provisioning": "busy", "starting": "busy", "stopping": "busy", "suspending": "busy",
    "resuming": "busy", "sleeping": "busy", "waking": "busy", "resizing": "busy", "destroying": "busy", "queued": "busy", "updating": "busy",
    "rolling_back": "busy", "deleting": "busy", "pending_dns": "busy", "verifying": "busy", "removing": "busy",
    "processing": "busy", "retrying": "busy", "in_progress": "busy", "backing_up": "busy", "restoring": "busy",
    # half wrong
    "degraded": "warn",
    # wrong
    "error": "bad", "failed": "bad", "unhealthy": "bad", "timed_out": "bad", "past_due": "bad", "unpaid": "bad",
    "incomplete": "bad", "revoked": "bad", "partial": "bad",
    # at rest
    "stopped": "idle", "suspended": "idle", "asleep": "idle", "destroyed": "idle", "deleted": "idle", "cancelled": "idle",
    "canceled": "idle", "skipped": "idle", "unknown": "idle", "none": "idle", "expired": "idle", "disabled": "idle",
}
KIND_TONES = {
    "operation": {"running": "busy"},
    "task": {"running": "busy"},
    "step": {"running": "busy"},
}


def status_tone(value, kind: str = "") -> str:
    value = str(value or "unknown")
    return KIND_TONES.get(kind, {}).get(value) or TONES.get(value, "idle")


@register.simple_tag
def status(value, kind: str = "", css: str = "", field: str = "", testid: str = "", label: str = ""):
    """A state badge. `css` adds the page's own classes (e.g. "state"), `field`/`testid` the
    data-field/data-testid hooks live updates and tests use; the text is the state itself."""
    value = str(value if value not in (None, "") else "unknown")
    tone = status_tone(value, kind)
    classes = f"status status-{tone}" + (f" {css}" if css else "")
    attrs = format_html_join("", ' {}="{}"', [(name, v) for name, v in (("data-field", field), ("data-testid", testid)) if v])
    return format_html('<span class="{}" data-status="{}"{}>{}</span>', classes, value, attrs, label or value.replace("_", " "))


def _utc(value) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(dt_timezone.utc) if timezone.is_aware(value) else value.replace(tzinfo=dt_timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=dt_timezone.utc)
    return None


def relative(when: datetime, now: datetime) -> str:
    """"3 min ago" / "in 2 h"; static/console/readable.js computes the same words."""
    seconds = (now - when).total_seconds()
    past = seconds >= 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now" if past else "in a moment"
    if seconds < 3600:
        amount, unit = round(seconds / 60) or 1, "min"
    elif seconds < 86400:
        amount, unit = round(seconds / 3600), "h"
    elif seconds < 86400 * 60:
        amount, unit = round(seconds / 86400), "d"
    else:
        return when.strftime("%Y-%m-%d")
    if amount == 60 and unit == "min":
        amount, unit = 1, "h"
    if amount == 24 and unit == "h":
        amount, unit = 1, "d"
    return f"{amount} {unit} ago" if past else f"in {amount} {unit}"


@register.simple_tag
def when(value, default: str = "—", field: str = "", testid: str = "", clock: bool = False):
    """`<time datetime="ISO" title="exact UTC" data-relative>3 min ago</time>`, or `default` for
    no time. `clock=True` (log lines, read as a sequence) shows the UTC time of day instead."""
    moment = _utc(value)
    if moment is None:
        return default
    moment = moment.replace(microsecond=0)
    attrs = format_html_join("", ' {}="{}"', [(name, v) for name, v in (("data-field", field), ("data-testid", testid)) if v])
    return format_html(
        '<time datetime="{}" title="{}"{}{}>{}</time>',
        moment.isoformat().replace("+00:00", "Z"),
        moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "" if clock else mark_safe(" data-relative"),
        attrs,
        moment.strftime("%H:%M:%S") if clock else relative(moment, timezone.now()),
    )


@register.simple_tag
def rules(value, empty: str = "anyone who authenticates"):
    """Allow rules (an OR-list of AND-rules of claim = value or [values]) as rows people read:
    `repository = acme/app or acme/web · and ref = main`, one rule a line, "or" between them."""
    if not value:
        return format_html('<span class="muted">{}</span>', empty)
    if not isinstance(value, list):
        return format_html("<code>{}</code>", value)
    items = []
    for index, rule in enumerate(value):
        if index:
            items.append(format_html('<li class="rules-or">{}</li>', "or"))
        if not isinstance(rule, dict):
            items.append(format_html("<li><code>{}</code></li>", rule))
            continue
        conditions = []
        for claim, expected in rule.items():
            options = expected if isinstance(expected, list) else [expected]
            shown = format_html_join(" or ", "<code>{}</code>", ((_scalar(o),) for o in options))
            conditions.append(format_html("<code>{}</code> = {}", claim, shown))
        items.append(format_html("<li>{}</li>", format_html_join(mark_safe(' <span class="muted">and</span> '), "{}", ((c,) for c in conditions))))
    return format_html('<ul class="rules" data-testid="allow-rules">{}</ul>', format_html_join("", "{}", ((i,) for i in items)))


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
