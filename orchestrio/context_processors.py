from django.conf import settings
from django.urls import NoReverseMatch, reverse

from . import roles, selectors

# The console's navigation: (label, URL name, the capability the page needs). Pages slot in
# here as they are built.
NAV = [
    ("Overview", "console:home", "read"),
    ("Instances", "instances:list", "read"),
    ("Deployments", "deployments:list", "read"),
    ("Functions", "functions:list", "read"),
    ("Fleet requests", "fleet:list", "read"),
    ("Billing", "billing:overview", "read"),
    ("Alerts", "billing:alerts", "alerts"),
    ("API tokens", "console:tokens", "read"),
    ("Team", "console:team", "read"),
    ("Activity", "console:activity", "read"),
    ("Account", "console:account", "read"),
]


def _covers(url: str, path: str) -> bool:
    """`url` is `path` or one of its parent folders, segment by segment ("/team" is not a parent
    of "/teams"); the home page "/" covers only itself."""
    if url == "/" or path == url:
        return path == url
    return path.startswith(url if url.endswith("/") else url + "/")


def _nav(path: str, can: dict[str, bool] | None, section: str | None = None):
    """The sidebar's items, with at most one `active`: the page's declared section (a NAV URL name,
    `console_view(section=…)`, for a page whose address is under no item, like a task's), else the
    item with the longest address covering the path — Alerts (/billing/alerts) wins over Billing
    (/billing/) on the Alerts page, where each used to be marked by its own prefix."""
    items = []
    for label, name, capability in NAV:
        if can is not None and not can[capability]:
            continue  # (pages outside a tenant, like the password change, show every item)
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        items.append({"label": label, "url": url, "name": name, "active": False, "current": None})
    current = next((item for item in items if item["name"] == section), None)
    if current is None:
        covering = [item for item in items if _covers(item["url"], path)]
        current = max(covering, key=lambda item: len(item["url"]), default=None)
    if current is not None:
        current["active"] = True
        # aria-current: "page" on the item's own page, "true" (the current section) below it.
        current["current"] = "page" if current["url"] == path else "true"
    return items


def console(request):
    principal = getattr(request, "principal", None)
    # What the current role may do (orchestrio/roles.py): pages show only the actions it holds.
    can = roles.held_by(principal.role if principal is not None else None)
    return {
        "nav": _nav(request.path, can if principal is not None else None, getattr(request, "console_section", None)) if getattr(request, "user", None) and request.user.is_authenticated else [],
        "current_tenant": principal.tenant if principal is not None else None,
        "current_role": principal.role if principal is not None else None,
        "can": can,
        # The top bar's bell (templates/console/_bell.html): a callable, so the one COUNT query
        # runs only where a template shows it (not for fragments, redirects or JSON).
        "notifications_unread": (lambda: selectors.notification_unread_count(principal=principal)) if principal is not None else None,
        # static/console/live.js polls `[data-live]` fragments at this interval (milliseconds).
        "live_interval_ms": settings.CONSOLE_LIVE_INTERVAL_SECONDS * 1000,
    }
