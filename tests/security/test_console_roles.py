"""The role matrix in the console (docs/roles.md): every page and action, for a member, an admin
and an owner, refused (403) or allowed exactly as the API's routes are.

The console's pages are enumerated from the URL configuration: a new page fails here until it is
in EXPECTED with the capability it needs. Pages whose capability is declared by HTTP method
(`@console_view(capabilities=…)`) are compared with the declaration; pages that decide by an
argument of the URL (`instances:action`, `instances:domain-action`, `billing:alerts-action`)
are checked by the sweep, argument by argument.
"""

from __future__ import annotations

import pytest
from django.urls import URLResolver, get_resolver, reverse

from orchestrio import notifications, roles
from orchestrio.models import Notification

from ..factories import ApiTokenFactory, MembershipFactory, UserFactory
from ..helpers import CommitClient
from .test_isolation_matrix import ROLES_HOLDING, queued_jobs, tenant_b, tenant_rows  # noqa: F401 - a fixture

# Routes that are not tenant pages (no tenant, or not the console at all).
OUTSIDE = {"console:login", "console:logout", "console:signup", "console:password-change", "console:invitation", "console:invitation-link", "addons:backup-download"}
NOT_CONSOLE = ("api/", "admin/", "tunnel/", "gateway/", "internal/", "billing/stripe/", "health", "metrics", "favicon", "docs", "redoc")

# (route, method, the URL's verb or action argument or None, capability), in the order of the
# sweep: reads, then changes, destruction last.
EXPECTED = [
    ("console:home", "GET", None, "read"),
    ("console:account", "GET", None, "read"),
    ("console:activity", "GET", None, "read"),
    ("console:tokens", "GET", None, "read"),
    ("console:token-revoke", "GET", None, "read"),
    ("console:team", "GET", None, "read"),
    ("instances:list", "GET", None, "read"),
    ("instances:create", "GET", None, "read"),
    ("instances:detail", "GET", None, "read"),
    ("instances:tasks", "GET", None, "read"),
    ("instances:gateway", "GET", None, "read"),
    ("instances:traffic", "GET", None, "read"),
    ("instances:domain", "GET", None, "read"),
    ("instances:chat", "GET", None, "read"),
    ("instances:monitoring", "GET", None, "read"),
    ("instances:addons", "GET", None, "read"),
    ("instances:addon-reveal", "GET", None, "tokens"),  # the confirmation page of a reveal
    ("deployments:list", "GET", None, "read"),
    ("deployments:create", "GET", None, "read"),
    ("deployments:detail", "GET", None, "read"),
    ("functions:list", "GET", None, "read"),
    ("functions:detail", "GET", None, "read"),
    ("functions:detail-live", "GET", None, "read"),
    ("operations:list", "GET", None, "read"),
    ("operations:list-live", "GET", None, "read"),
    ("fleet:list", "GET", None, "read"),
    ("fleet:list-live", "GET", None, "read"),
    ("fleet:detail", "GET", None, "read"),
    ("fleet:detail-live", "GET", None, "read"),
    ("tasks:detail", "GET", None, "read"),
    ("billing:overview", "GET", None, "read"),
    ("billing:alerts", "GET", None, "alerts"),
    # The live fragments (static/console/live.js): read like the page each belongs to.
    ("console:home-live", "GET", None, "read"),
    ("instances:list-live", "GET", None, "read"),
    ("instances:detail-live", "GET", None, "read"),
    ("instances:header-live", "GET", None, "read"),
    ("instances:tasks-live", "GET", None, "read"),
    ("instances:monitoring-live", "GET", None, "read"),
    ("instances:traffic-live", "GET", None, "read"),
    ("instances:domain-live", "GET", None, "read"),
    ("instances:addons-live", "GET", None, "read"),
    ("deployments:list-live", "GET", None, "read"),
    ("deployments:detail-live", "GET", None, "read"),
    ("tasks:detail-live", "GET", None, "read"),
    ("billing:alerts-live", "GET", None, "alerts"),
    ("console:notifications", "GET", None, "read"),  # one's own feed, of the events one's role may see
    ("console:notifications-live", "GET", None, "read"),
    ("console:notifications-bell", "GET", None, "read"),
    ("instances:destroy", "GET", None, "destroy"),  # the confirmation page of a destroy
    ("instances:addon-destroy", "GET", None, "destroy"),
    ("console:switch-tenant", "POST", None, "read"),  # the user's own session
    ("console:notification-read", "POST", None, "read"),  # one's own notification; another's is 404
    ("console:notifications-read-all", "POST", None, "read"),
    ("console:tokens", "POST", None, "operate"),
    ("console:token-revoke", "POST", None, "operate"),  # one's own; someone else's needs "tokens"
    ("console:team", "POST", None, "members"),  # inviting an owner needs "owners" (service)
    ("console:team-member-role", "POST", None, "members"),
    ("console:team-invitation-revoke", "POST", None, "members"),
    ("instances:create", "POST", None, "operate"),
    ("instances:config", "POST", None, "operate"),
    ("instances:open", "POST", None, "operate"),  # a one-minute grant for the instance's own host
    ("instances:tasks", "POST", None, "operate"),
    ("instances:gateway", "POST", None, "operate"),  # a public policy needs "expose" (service)
    ("instances:domain", "POST", None, "expose"),
    ("instances:domain-action", "POST", "check", "operate"),
    ("instances:chat-action", "POST", "policy", "operate"),
    ("instances:chat-action", "POST", "consent", "debug"),
    *[("instances:action", "POST", verb, "operate") for verb in ("stop", "start", "restart", "suspend", "resume", "sleep", "wake", "resize", "idle-timeout")],
    ("instances:action", "POST", "rotate-agent-key", "tokens"),
    ("instances:addons", "POST", None, "operate"),
    ("instances:addon-action", "POST", "backup", "operate"),
    ("instances:addon-action", "POST", "auto-backup", "operate"),
    ("instances:addon-reveal", "POST", None, "tokens"),
    ("instances:addon-action", "POST", "download", "tokens"),  # a backup holds all of the add-on's data
    ("instances:addon-action", "POST", "restore", "destroy"),  # it replaces the add-on's data
    ("instances:addon-action", "POST", "delete-backup", "destroy"),
    ("deployments:create", "POST", None, "operate"),
    ("deployments:detail", "POST", None, "operate"),
    ("deployments:rollback", "POST", None, "operate"),
    ("fleet:list", "POST", None, "operate"),
    ("functions:list", "POST", None, "operate"),
    ("functions:detail", "POST", None, "operate"),
    ("functions:deploy", "POST", None, "operate"),
    ("functions:invoke", "POST", None, "operate"),
    ("functions:rotate-key", "POST", None, "tokens"),
    ("tasks:cancel", "POST", None, "operate"),
    ("gateway:policy-toggle", "POST", None, "operate"),  # enabling a public policy needs "expose"
    ("billing:checkout", "POST", None, "billing"),
    ("billing:portal", "POST", None, "billing"),
    ("billing:alerts", "POST", None, "alerts"),
    ("billing:alerts-action", "POST", "test", "alerts"),
    ("billing:alerts-action", "POST", "rotate", "alerts"),
    ("billing:alerts-action", "POST", "redeliver", "alerts"),
    ("instances:domain-action", "POST", "remove", "destroy"),
    ("gateway:policy-delete", "POST", None, "destroy"),
    ("deployments:delete", "POST", None, "destroy"),
    ("fleet:return", "POST", None, "destroy"),
    ("instances:addon-destroy", "POST", None, "destroy"),
    ("functions:delete", "POST", None, "destroy"),
    ("instances:destroy", "POST", None, "destroy"),
    ("console:team-member-remove", "POST", None, "members"),
]
ARGUMENT = {"instances:action": "verb", "instances:domain-action": "action", "instances:chat-action": "action", "billing:alerts-action": "action", "instances:addon-action": "action"}


def console_routes() -> dict[str, object]:
    """Every console page in the URLconf: name → view."""
    found = {}

    def walk(patterns, prefix: str, namespace: str | None) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(part for part in (namespace, pattern.namespace) if part) or None
                walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif not (prefix + str(pattern.pattern)).lstrip("^").startswith(NOT_CONSOLE) and pattern.name:
                found[f"{namespace}:{pattern.name}" if namespace else pattern.name] = pattern.callback

    walk(get_resolver().url_patterns, "", None)
    return found


def test_console_declarations_match_the_expected_matrix():
    pages = {name: view for name, view in console_routes().items() if name not in OUTSIDE}
    listed = {name for name, *_ in EXPECTED}
    assert set(pages) == listed, f"console pages missing from EXPECTED: {set(pages) - listed}; stale: {listed - set(pages)}"
    mismatches = []
    for name, method, argument, capability in EXPECTED:
        view = pages[name]
        assert hasattr(view, "capabilities"), f"{name} is not a @console_view"
        if name in ARGUMENT:
            continue  # decided by the argument: the sweep checks it
        declared = roles.needed(view.capabilities, method)
        if declared != capability:
            mismatches.append(f"{name} {method}: the view declares {declared!r}, the matrix says {capability!r}")
    assert not mismatches, mismatches


def _url(name: str, argument: str | None, ids: dict) -> str:
    kwargs = {
        "console:token-revoke": {"token_pk": ids["own_token"]},
        "console:notification-read": {"notification_pk": ids["own_notification"]},
        "console:team-member-role": {"member_pk": ids["member"]},
        "console:team-member-remove": {"member_pk": ids["member"]},
        "console:team-invitation-revoke": {"invitation_pk": ids["invitation"]},
        "instances:detail": {"instance_id": ids["instance"]},
        "instances:detail-live": {"instance_id": ids["instance"]},
        "instances:header-live": {"instance_id": ids["instance"]},
        "instances:tasks-live": {"instance_id": ids["instance"]},
        "instances:monitoring-live": {"instance_id": ids["instance"]},
        "instances:domain-live": {"instance_id": ids["instance"]},
        "deployments:detail-live": {"deployment_id": ids["deployment"]},
        "tasks:detail-live": {"task_id": ids["task"]},
        "instances:destroy": {"instance_id": ids["instance"]},
        "instances:config": {"instance_id": ids["instance"]},
        "instances:open": {"instance_id": ids["instance"]},
        "instances:tasks": {"instance_id": ids["instance"]},
        "instances:monitoring": {"instance_id": ids["instance"]},
        "instances:gateway": {"instance_id": ids["instance"]},
        "instances:traffic": {"instance_id": ids["instance"]},
        "instances:traffic-live": {"instance_id": ids["instance"]},
        "instances:domain": {"instance_id": ids["instance"]},
        "instances:domain-action": {"instance_id": ids["instance"], "action": argument},
        "instances:chat": {"instance_id": ids["instance"]},
        "instances:chat-action": {"instance_id": ids["instance"], "action": argument},
        "instances:addons": {"instance_id": ids["instance"]},
        "instances:addons-live": {"instance_id": ids["instance"]},
        "instances:addon-reveal": {"instance_id": ids["instance"], "addon_id": ids["addon"]},
        "instances:addon-destroy": {"instance_id": ids["instance"], "addon_id": ids["addon"]},
        "instances:addon-action": {"instance_id": ids["instance"], "addon_id": ids["addon"], "action": argument},
        "instances:action": {"instance_id": ids["instance"], "verb": argument},
        "deployments:detail": {"deployment_id": ids["deployment"]},
        "fleet:detail": {"request_id": ids["fleet_request"]},
        "fleet:detail-live": {"request_id": ids["fleet_request"]},
        "fleet:return": {"request_id": ids["fleet_request"]},
        "functions:detail": {"function_id": ids["function"]},
        "functions:detail-live": {"function_id": ids["function"]},
        "functions:deploy": {"function_id": ids["function"]},
        "functions:invoke": {"function_id": ids["function"]},
        "functions:rotate-key": {"function_id": ids["function"]},
        "functions:delete": {"function_id": ids["function"]},
        "deployments:rollback": {"deployment_id": ids["deployment"]},
        "deployments:delete": {"deployment_id": ids["deployment"]},
        "tasks:detail": {"task_id": ids["task"]},
        "tasks:cancel": {"task_id": ids["task"]},
        "gateway:policy-toggle": {"policy_id": ids["gateway_policy"]},
        "gateway:policy-delete": {"policy_id": ids["gateway_policy"]},
        "billing:checkout": {"plan_id": "team"},
        "billing:alerts-action": {"action": f"redeliver-{ids['alert_delivery']}" if argument == "redeliver" else argument},
    }.get(name, {})
    return reverse(name, kwargs=kwargs)


FORMS = {
    ("console:switch-tenant", None): {"tenant_id": "acme-corp"},
    ("console:tokens", None): {"name": "console-made", "mode": "live"},
    ("console:team", None): {"email": "console-hire@example.org", "role": "member", "expires_in_days": "7"},
    ("console:team-member-role", None): {"role": "admin"},
    ("instances:action", "resize"): {"plan_id": "openclaw-pro"},
    ("instances:action", "idle-timeout"): {"idle_timeout_seconds": "600"},
    ("instances:domain", None): {"domain": "www.acme-corp.example"},
    ("instances:chat-action", "policy"): {"allowed_models": ["default"]},
    ("instances:chat-action", "consent"): {"debug_access": "on"},
    ("instances:addons", None): {"engine": "redis", "plan": "hobby"},
    ("instances:destroy", None): {"confirm": "acme-corp-web"},
    ("deployments:rollback", None): {"revision": "1"},
    ("fleet:list", None): {"blueprint_name": "OpenClaw", "count": "1", "plan_id": "openclaw-basic", "instance_id_prefix": "acme-corp-console"},
    ("functions:list", None): {"slug": "acme-corp-console-fn", "runtime": "python3.11", "code": "def handler(request):\n    return 'x'\n", "auth_mode": "none", "idle_timeout_seconds": "60"},
    ("functions:detail", None): {"code": "def handler(request):\n    return 'y'\n", "auth_mode": "api_key", "idle_timeout_seconds": "60"},
    ("functions:invoke", None): {"method": "GET", "path": "/"},
    ("functions:delete", None): {"confirm": "acme-corp-fn"},
}


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_each_role_is_allowed_or_refused_in_the_console_as_the_matrix_says(seeded, role):
    tenant = seeded.api.tenant
    if role == "owner":
        user = seeded.api.user
    else:
        user = UserFactory(username=f"{role}@acme.example")
        MembershipFactory(user=user, tenant=tenant, role=role)
    ids = {kind: values[0] for kind, values in seeded.ids.items()}
    ids["own_token"] = ApiTokenFactory(tenant=tenant, created_by=user, role=role).pk
    notifications.notify([(tenant.pk, "instance.health_up", {"instance_id": ids["instance"]})])
    ids["own_notification"] = Notification.objects.filter(user=user).values_list("pk", flat=True).first()
    client = CommitClient()
    client.force_login(user)

    refused = [row for row in EXPECTED if role not in ROLES_HOLDING[row[3]]]
    allowed = [row for row in EXPECTED if role in ROLES_HOLDING[row[3]]]
    assert bool(refused) == (role == "member")

    before, jobs_before = tenant_rows(tenant), queued_jobs()
    wrong = []
    for name, method, argument, capability in refused:
        response = client.generic(method, _url(name, argument, ids)) if method == "GET" else client.post(_url(name, argument, ids), FORMS.get((name, argument), {}))
        holders = " or ".join(roles.roles_for(capability))
        if response.status_code != 403 or f"needs the {holders} role".encode() not in response.content:
            wrong.append((method, name, argument, response.status_code))
    assert not wrong, f"a {role} was not refused: {wrong}"
    assert tenant_rows(tenant) == before, f"refused console requests of a {role} changed the tenant's rows"
    assert queued_jobs() == jobs_before

    for name, method, argument, capability in allowed:
        url = _url(name, argument, ids)
        response = client.get(url) if method == "GET" else client.post(url, FORMS.get((name, argument), {}))
        assert response.status_code not in (403, 404), (role, method, name, argument, response.status_code, response.content[:300])


OBJECT_PAGES = {"console:notification-read", "console:token-revoke", "console:team-member-role", "console:team-member-remove", "console:team-invitation-revoke"}


def test_a_refusal_in_the_console_comes_after_the_tenant_lookup(seeded, tenant_b):
    """A member of another tenant pointing the console at A's objects gets 404, as from the API."""
    user = UserFactory(username="member@other.example")
    MembershipFactory(user=user, tenant=tenant_b.api.tenant, role="member")
    client = CommitClient()
    client.force_login(user)
    ids = {kind: values[0] for kind, values in seeded.ids.items()}
    ids["own_token"] = ApiTokenFactory(tenant=seeded.api.tenant, created_by=seeded.api.user).pk
    ids["own_notification"] = seeded.ids["notification"][0]
    for name, method, argument, _ in EXPECTED:
        if name.startswith(("console:", "billing:")) and name not in OBJECT_PAGES or name in ("instances:list", "instances:list-live", "instances:create", "deployments:list", "deployments:list-live", "deployments:create", "fleet:list", "fleet:list-live", "operations:list", "operations:list-live", "functions:list"):
            continue  # the page names none of A's objects
        url = _url(name, argument, ids)
        response = client.get(url) if method == "GET" else client.post(url, FORMS.get((name, argument), {}))
        assert response.status_code == 404, (method, name, argument, response.status_code)
