from django.urls import NoReverseMatch, reverse

# The console's navigation: (label, URL name). Pages slot in here as they are built.
NAV = [
    ("Overview", "console:home"),
    ("Instances", "instances:list"),
    ("Deployments", "deployments:list"),
    ("Billing", "billing:overview"),
    ("Alerts", "billing:alerts"),
    ("API tokens", "console:tokens"),
    ("Activity", "console:activity"),
    ("Account", "console:account"),
]


def _nav(path: str):
    items = []
    for label, name in NAV:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        active = path == url if url == "/" else path.startswith(url)
        items.append({"label": label, "url": url, "active": active})
    return items


def console(request):
    principal = getattr(request, "principal", None)
    return {
        "nav": _nav(request.path) if getattr(request, "user", None) and request.user.is_authenticated else [],
        "current_tenant": principal.tenant if principal is not None else None,
        "current_role": principal.role if principal is not None else None,
    }
