from django.conf import settings
from django.urls import NoReverseMatch, reverse

from . import roles

# The console's navigation: (label, URL name, the capability the page needs). Pages slot in
# here as they are built.
NAV = [
    ("Overview", "console:home", "read"),
    ("Instances", "instances:list", "read"),
    ("Deployments", "deployments:list", "read"),
    ("Billing", "billing:overview", "read"),
    ("Alerts", "billing:alerts", "alerts"),
    ("API tokens", "console:tokens", "read"),
    ("Team", "console:team", "read"),
    ("Activity", "console:activity", "read"),
    ("Account", "console:account", "read"),
]


def _nav(path: str, can: dict[str, bool] | None):
    items = []
    for label, name, capability in NAV:
        if can is not None and not can[capability]:
            continue  # (pages outside a tenant, like the password change, show every item)
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        active = path == url if url == "/" else path.startswith(url)
        items.append({"label": label, "url": url, "active": active})
    return items


def console(request):
    principal = getattr(request, "principal", None)
    # What the current role may do (orchestrio/roles.py): pages show only the actions it holds.
    can = roles.held_by(principal.role if principal is not None else None)
    return {
        "nav": _nav(request.path, can if principal is not None else None) if getattr(request, "user", None) and request.user.is_authenticated else [],
        "current_tenant": principal.tenant if principal is not None else None,
        "current_role": principal.role if principal is not None else None,
        "can": can,
        # static/console/live.js polls `[data-live]` fragments at this interval (milliseconds).
        "live_interval_ms": settings.CONSOLE_LIVE_INTERVAL_SECONDS * 1000,
    }
