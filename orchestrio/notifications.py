"""Notifications: each person's feed of what needs their attention in a tenant (docs/notifications.md).

They come from the one event source the alert webhooks hear too: `orchestrio.hooks.tenant_events`.
The core registers `notify` on it (apps.py) beside billing's alert webhooks, so a place that
raises an event (`instance.error`, `task.failed`, `quota.80`…) reaches both, in the transaction
of the change: a change that rolls back leaves no notification either.

Why the core owns them: a notification is for a person of a tenant (a membership, the core's),
events come from every app (instances, tasks, billing, the core's own team), and the console's top
bar on every page shows the count. An app higher up could not be heard by the apps below it.

Each event says which capability (orchestrio/roles.py) a member's role needs to see it, how it
reads (a title and a sentence, in the person's words) and which object it is about (the console
links it through `hooks.object_links`). An event not listed here makes no notification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from . import roles
from .models import Membership, Notification


@dataclass(frozen=True)
class Kind:
    capability: str
    label: str  # what the event is, for the docs and the console's filter
    title: Callable[[dict], str]
    body: Callable[[dict], str]
    ref: Callable[[str, dict], tuple[str, str]]  # (object_type, object_id) of the console link


def _day(value) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime | date):
        return f"{value.day} {value:%b %Y}"
    return ""


def _instance(tenant_id: str, data: dict) -> tuple[str, str]:
    return ("instance", str(data.get("instance_id") or ""))


def _billing(tenant_id: str, data: dict) -> tuple[str, str]:
    return ("subscription", tenant_id)


def _health_down(data: dict) -> str:
    failures = data.get("failures")
    text = f"Its health check failed {failures} times in a row" if failures else "Its health check fails"
    return text + (f": {data['detail']}." if data.get("detail") else ".")


def _task_failed(data: dict) -> str:
    status = str(data.get("status") or "failed").replace("_", " ")
    text = f"{data.get('operation_code') or 'A task'} {status}"
    if data.get("exit_code") is not None:
        text += f" with exit code {data['exit_code']}"
    return text + (f": {data['reason']}" if data.get("reason") else ".")


def _quota(data: dict) -> str:
    text = f"{data.get('executions')} of {data.get('quota')} executions used"
    if data.get("period_start") and data.get("period_end"):
        text += f" between {_day(data['period_start'])} and {_day(data['period_end'])}"
    return text + "."


def _payment_failed(data: dict) -> str:
    amount = data.get("amount_due")
    text = "Stripe could not collect " + (f"invoice {data['invoice']}" if data.get("invoice") else "an invoice")
    if isinstance(amount, int):
        text += f" ({amount / 100:.2f})"
    if data.get("attempt_count"):
        text += f", attempt {data['attempt_count']}"
    return text + ". Update the payment method on the Billing page."


KINDS: dict[str, Kind] = {
    "instance.error": Kind(
        roles.READ, "an instance went to error",
        lambda d: f"{d.get('instance_id')} is in error",
        lambda d: str(d.get("error_message") or "An operation on it failed."),
        _instance,
    ),
    "instance.health_down": Kind(
        roles.READ, "a running instance became unhealthy",
        lambda d: f"{d.get('instance_id')} is unhealthy", _health_down, _instance,
    ),
    "instance.health_up": Kind(
        roles.READ, "an unhealthy instance recovered",
        lambda d: f"{d.get('instance_id')} is healthy again", lambda d: "Its health check answers again.", _instance,
    ),
    "task.failed": Kind(
        roles.READ, "a task failed or timed out",
        lambda d: f"A task failed on {d.get('instance_id')}", _task_failed,
        lambda tenant_id, d: ("task", str(d.get("task_id") or "")),
    ),
    "quota.80": Kind(
        roles.READ, "80% of the monthly executions are used",
        lambda d: "80% of this period's executions are used", _quota, _billing,
    ),
    "quota.100": Kind(
        roles.READ, "the monthly executions are used up",
        lambda d: "This period's executions are used up", _quota, _billing,
    ),
    "billing.payment_failed": Kind(
        roles.BILLING, "a payment failed",
        lambda d: "A payment failed", _payment_failed, _billing,
    ),
    "invitation.accepted": Kind(
        roles.MEMBERS, "someone accepted an invitation and joined the team",
        lambda d: f"{d.get('email')} joined the team",
        lambda d: f"They accepted the invitation as {d.get('role')}.",
        lambda tenant_id, d: ("member", str(d.get("member_id") or "")),
    ),
}  # fmt: skip


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def notify(events: list[tuple[str, str, dict]]) -> list[Notification]:
    """The `tenant_events` listener: one row per event and member whose role holds the event's
    capability, in one query for the members and one insert. Runs inside the change's transaction.
    The person an event is about (`data["user_id"]`: who just joined) is not told about themselves."""
    wanted = [(tenant_id, event, data) for tenant_id, event, data in events if event in KINDS]
    if not wanted:
        return []
    members: dict[str, list[tuple[int, str]]] = {}
    for tenant_id, user_id, role in Membership.objects.filter(tenant_id__in={t for t, _, _ in wanted}).values_list("tenant_id", "user_id", "role"):
        members.setdefault(tenant_id, []).append((user_id, role))
    now = timezone.now()
    rows = []
    for tenant_id, event, data in wanted:
        kind = KINDS[event]
        holders = roles.roles_for(kind.capability)
        object_type, object_id = kind.ref(tenant_id, data)
        title, body = _clip(kind.title(data), 200), _clip(kind.body(data), 1000)
        for user_id, role in members.get(tenant_id, ()):
            if role in holders and user_id != data.get("user_id"):
                rows.append(Notification(
                    tenant_id=tenant_id, user_id=user_id, event=event, capability=kind.capability, title=title, body=body,
                    object_type=object_type, object_id=object_id, created_at=now,
                ))  # fmt: skip
    return Notification.objects.bulk_create(rows)


def trim(*, now=None) -> int:
    """Delete notifications older than NOTIFICATIONS_RETENTION_DAYS and, per person and tenant,
    those beyond the newest NOTIFICATIONS_KEEP_PER_USER (the periodic job)."""
    now = now or timezone.now()
    deleted, _ = Notification.objects.filter(created_at__lt=now - timedelta(days=settings.NOTIFICATIONS_RETENTION_DAYS)).delete()
    ranked = Notification.objects.annotate(
        rank=Window(RowNumber(), partition_by=[F("user_id"), F("tenant_id")], order_by=[F("created_at").desc(), F("id").desc()])
    ).filter(rank__gt=settings.NOTIFICATIONS_KEEP_PER_USER)
    while True:
        surplus = list(ranked.values_list("pk", flat=True)[:1000])
        if not surplus:
            return deleted
        deleted += Notification.objects.filter(pk__in=surplus).delete()[0]
