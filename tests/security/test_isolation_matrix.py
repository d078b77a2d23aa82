"""Tenant isolation, route by route, for every route the URLconf has under /api/v1/.

The routes are enumerated from the URL configuration, not listed here, so a new route is covered
the day it appears, or this module fails until it says which of tenant A's objects its path
parameters name (`PARAMETER_OBJECTS`, `VIEW_PARAMETER_OBJECTS`).

Tenant B (with objects of its own) then calls every method of every route with A's ids in the
path: each answers 404 with the error body, as API.md requires ("another tenant's object answers
404, never 403"), and afterwards every row A owns, in every model, is as it was, and no job was
queued. (The one exception, in NOT_FOUND_BODIES: a lookup by Idempotency-Key answers "not found"
in its 200 body.) B's own lists and writes (which take no ids) never show or touch anything of
A's, and A's names and Idempotency-Key are free for B to use, unreported. Finally
A itself reaches every one of those routes with the same ids (not 404), which proves the ids name
real objects, so B's 404s mean something.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import django_rq
import pytest
from django.apps import apps
from django.urls import URLResolver, get_resolver, reverse

from orchestrio.models import ApiToken, Tenant

from ..helpers import assert_error
from .conftest import Seeded, seed_tenant, tenant_api

API_PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")

# Which of a tenant's objects a path parameter names: by its name, or, for the generic names a
# router gives (`pk`) and `name`, by the view that reads it.
PARAMETER_OBJECTS = {"instance_id": "instance", "task_id": "task", "key": "idempotency_key", "request_id": "fleet_request", "addon_id": "addon", "backup_id": "addon_backup", "function_id": "function", "cid": "conversation"}
VIEW_PARAMETER_OBJECTS = {
    ("FunctionNameCheckView", "name"): "function_slug",
    ("ApiTokenViewSet", "pk"): "api_token",
    ("BlueprintViewSet", "name"): "blueprint",
    ("DeploymentViewSet", "pk"): "deployment",
    ("PolicyViewSet", "pk"): "gateway_policy",
    ("AlertDeliveryViewSet", "pk"): "alert_delivery",
    ("MemberViewSet", "pk"): "member",
    ("InvitationViewSet", "pk"): "invitation",
    ("OperationViewSet", "pk"): "operation",
    ("NotificationViewSet", "pk"): "notification",
}

# Bodies that pass validation, so that a 404 comes from the tenant-scoped lookup and not from a
# validator that happens to run first.
BODIES = {
    ("api:instance-config", "patch"): {"b_was_here": True},
    ("api:instance-chat", "post"): {"message": "hello"},
    ("api:instance-consent", "patch"): {"debug_access": True},
    ("api:instance-model-policy", "put"): {"allowed_models": ["default"]},
    ("api:instance-detail", "patch"): {"idle_timeout_seconds": 600},
    ("api:instance-custom-domain", "post"): {"domain": "app.intruder.example"},
    ("api:instance-resize", "put"): {"plan_id": "openclaw-pro"},
    ("api:instance-task-list", "post"): {"operation_code": "steal", "script_path": "/opt/orchestrio/scripts/echo-args.sh"},
    ("api:instance-addon-list", "post"): {"engine": "redis"},
    ("api:addon-auto-backup", "post"): {"enabled": True},
    ("api:addon-restore", "post"): {"backup_id": "bak_b_was_here"},
    ("api:function-detail", "patch"): {"idle_timeout_seconds": 60},
    ("api:function-list", "post"): {"slug": "other-corp-fn2", "runtime": "python3.11", "code": "def handler(request):\n    return 1\n"},
    ("api:instance-gateway-policy-list", "post"): {"slug": "intruder", "provider": "anonymous"},
    ("api:gateway-policy-detail", "patch"): {"enabled": False},
    ("api:deployment-detail", "patch"): {"config": {"b_was_here": True}},
    ("api:deployment-rollback", "post"): {"revision": 1},
    ("api:blueprint-detail", "put"): {"name": "acme-corp-bp", "health_path": "/b"},
    ("api:blueprint-detail", "patch"): {"health_path": "/b"},
    # Routes without ids: B's own writes, some of them named like A's objects.
    ("api:instance-list", "post"): {"instance_id": "other-corp-second"},
    ("api:blueprint-list", "post"): {"name": "acme-corp-bp"},
    ("api:blueprint-validate", "post"): {"name": "other-corp-draft"},
    ("api:deployment-list", "post"): {"name": "acme-corp-dep", "environment": "staging"},
    ("api:api-token-list", "post"): {"name": "acme-corp-ci"},
    ("api:invitation-list", "post"): {"email": "new-hire@example.org"},
    ("api:member-detail", "patch"): {"role": "member"},
    ("api:billing-checkout", "post"): {"plan": "team"},
    ("api:fleet-request-list", "post"): {"count": 1, "instance_id_prefix": "other-corp-batch"},
    ("api:fleet-request-return-instances", "post"): {"instance_ids": ["acme-corp-web"]},
    ("api:alerts", "patch"): {"webhook_url": "https://hooks.intruder.example/alerts", "enabled": True},
}
# Headers for B's requests: an Idempotency-Key that A used must not replay A's response to B.
HEADERS = {("api:instance-list", "post"): {"Idempotency-Key": "acme-corp-create-key"}}

# Where another tenant's id does not answer 404, what it answers instead (and why).
NOT_FOUND_BODIES = {
    # A lookup by key, not an object: "no create with that key in your tenant" is a 200.
    "api:instance-by-idempotency-key": {"found": False, "instance_id": None, "state": None, "provisioning_stage": None, "logs": []},
    # Function slugs are public hostnames, unique on the installation (as instance ids are): that
    # one is taken is no secret, and says nothing else of A's function.
    "api:function-check-name": {"name": "acme-corp-fn", "available": False, "reason": "taken"},
}
# B's writes that take no ids and may be refused, with the reason.
ALLOWED_REFUSALS = {
    ("api:billing-portal", "post"): 400,  # no Stripe customer yet, unless the checkout made one
    # B names A's instance in the body: 404, and A's rows (checked after) are untouched.
    ("api:fleet-request-return-instances", "post"): 404,
}


@dataclass(frozen=True)
class Route:
    name: str  # "api:instance-stop"
    parameters: tuple[str, ...]
    methods: tuple[str, ...]
    view: str
    view_class: type | None = field(default=None, compare=False)
    actions: tuple[tuple[str, str], ...] = ()  # a viewset's (method, action) pairs

    def action(self, method: str) -> str | None:
        return dict(self.actions).get(method)

    def objects(self) -> dict[str, str | None]:
        """Path parameter → the kind of tenant A's object it names (None: unmapped)."""
        return {
            parameter: VIEW_PARAMETER_OBJECTS.get((self.view, parameter)) or PARAMETER_OBJECTS.get(parameter)
            for parameter in self.parameters
        }

    def path(self, seeded: Seeded) -> str:
        kwargs = {parameter: seeded.ids[kind][0] for parameter, kind in self.objects().items()}
        return reverse(self.name, kwargs=kwargs)


def api_routes() -> list[Route]:
    """Every route under /api/v1/ in the URLconf, with its path parameters and HTTP methods."""
    routes: list[Route] = []

    def walk(patterns, prefix: str, namespace: str | None) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(part for part in (namespace, pattern.namespace) if part) or None
                walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
                continue
            if not (prefix + str(pattern.pattern)).startswith(API_PREFIX):
                continue
            callback = pattern.callback
            view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
            actions = getattr(callback, "actions", None)
            if actions:
                methods = tuple(m for m in METHODS if m in actions)
            elif view is not None:
                methods = tuple(m for m in METHODS if hasattr(view, m))
            else:
                methods = METHODS  # a plain function view may answer anything
            routes.append(
                Route(
                    name=f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name or "",
                    parameters=tuple(pattern.pattern.regex.groupindex),
                    methods=methods,
                    view=view.__name__ if view is not None else callback.__name__,
                    view_class=view,
                    actions=tuple((m, a) for m, a in (actions or {}).items() if m in METHODS),
                )
            )

    walk(get_resolver().url_patterns, "", None)
    return routes


ROUTES = api_routes()
ID_ROUTES = [route for route in ROUTES if route.parameters]
PLAIN_ROUTES = [route for route in ROUTES if not route.parameters]


def _tenant_lookup(model) -> str | None:
    """How a model's rows are found by tenant: directly, or through the object they belong to."""
    if model is Tenant:
        return "pk"
    names = {f.name: f for f in model._meta.get_fields() if f.is_relation and f.many_to_one}
    if "tenant" in names and names["tenant"].related_model is Tenant:
        return "tenant"
    for name, relation in names.items():
        if any(f.name == "tenant" for f in relation.related_model._meta.get_fields()):
            return f"{name}__tenant"
    return None


def tenant_rows(tenant) -> dict[str, list[dict[str, Any]]]:
    """Every row of every model that belongs to `tenant`."""
    rows = {}
    for model in apps.get_models():
        lookup = _tenant_lookup(model)
        if lookup is not None:
            rows[model._meta.label] = list(model.objects.filter(**{lookup: tenant}).order_by("pk").values())
    return rows


def queued_jobs() -> int:
    return sum(django_rq.get_queue(name).count for name in ("default", "periodic"))


def a_ids(a: Seeded) -> list[str]:
    """Ids of tenant A's objects that tenant B cannot choose for its own."""
    ids = {*a.ids["instance"], *a.ids["domain"]}
    for kind in ("task", "gateway_policy", "deployment", "alert_delivery", "function", "function_slug"):
        ids.update(a.ids[kind])
    ids.update(ApiToken.objects.filter(tenant=a.api.tenant).values_list("prefix", flat=True))
    return sorted(ids)


def leaks(response, markers: list[str]) -> list[str]:
    text = json.dumps(response.json()) if response.content else ""
    return [marker for marker in markers if marker in text]


@pytest.fixture
def tenant_b(seeded, agent_server):
    """Tenant B ("other-corp"), an owner with objects of its own."""
    return seed_tenant(tenant_api("other-corp", "mallory@other.example"), agent_port=agent_server.server_port)


def test_every_route_with_ids_is_mapped_to_an_object():
    assert len(ID_ROUTES) > 20 and len(PLAIN_ROUTES) > 10, "the URLconf walk found too few routes"
    assert all(route.name for route in ROUTES), "every /api/v1/ route needs a name: the matrix reverses routes by name"
    unmapped = [f"{route.name} {{{parameter}}} ({route.view})" for route in ID_ROUTES for parameter, kind in route.objects().items() if kind is None]
    assert not unmapped, (
        "routes whose path parameters the isolation matrix cannot point at tenant A's objects; "
        f"add them to PARAMETER_OBJECTS or VIEW_PARAMETER_OBJECTS: {unmapped}"
    )
    known = {route.name for route in ROUTES}
    stale = [key for key in [*BODIES, *HEADERS, *ALLOWED_REFUSALS] if key[0] not in known] + [
        name for name in NOT_FOUND_BODIES if name not in known
    ]
    assert not stale, f"entries for routes that no longer exist: {stale}"


def test_other_tenant_gets_404_on_every_route_that_names_an_object(seeded, tenant_b):
    a, b = seeded, tenant_b
    before, jobs_before = tenant_rows(a.api.tenant), queued_jobs()

    for route in ID_ROUTES:
        path = route.path(a)
        for method in route.methods:
            response = b.api.request(method.upper(), path, BODIES.get((route.name, method)))
            where = f"{method.upper()} {path} ({route.name}) with tenant B's token"
            if route.name in NOT_FOUND_BODIES:
                assert response.status_code == 200 and response.json() == NOT_FOUND_BODIES[route.name], (where, response.content)
                continue
            assert response.status_code == 404, (where, response.status_code, response.content[:300])
            assert_error(response, 404)

    assert tenant_rows(a.api.tenant) == before, "tenant B's requests changed tenant A's rows"
    assert queued_jobs() == jobs_before, "tenant B's requests queued jobs"

    # The same ids are A's real objects: A reaches every route (mutations last, deletions at the end).
    order = {"get": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}
    calls = sorted(((order[m], route, m) for route in ID_ROUTES for m in route.methods), key=lambda c: (c[0], c[1].name, c[2]))
    for _, route, method in calls:
        response = a.api.request(method.upper(), route.path(a), BODIES.get((route.name, method)))
        assert response.status_code != 404, (method.upper(), route.path(a), response.content[:300])
        if route.name in NOT_FOUND_BODIES and "found" in NOT_FOUND_BODIES[route.name]:
            assert response.json()["found"] is True


def test_other_tenant_lists_and_writes_never_show_or_touch_tenant_a(seeded, tenant_b):
    a, b = seeded, tenant_b
    tenant_id = a.api.tenant.pk
    before, jobs_before = tenant_rows(a.api.tenant), queued_jobs()

    # Reads first: nothing of A's at all, not even a name (all of A's start with its tenant id).
    for route in PLAIN_ROUTES:
        if "get" in route.methods:
            response = b.api.get(reverse(route.name))
            assert response.status_code == 200, (route.name, response.content[:300])
            assert not leaks(response, [tenant_id, *a_ids(a)]), (route.name, leaks(response, [tenant_id, *a_ids(a)]))
    assert "other-corp-web" in json.dumps(b.api.get("instances").json()), "B's own list must show B's objects"

    # A's names are free in B's tenant: B is not told they exist elsewhere.
    assert b.api.post("blueprints/validate", {"name": "acme-corp-bp"}).json()["valid"] is True

    # Then B's writes, some with A's names or A's Idempotency-Key.
    for route in PLAIN_ROUTES:
        path = reverse(route.name)
        for method in route.methods:
            if method == "get":
                continue
            key = (route.name, method)
            response = b.api.request(method.upper(), path, BODIES.get(key), headers=HEADERS.get(key))
            where = f"{method.upper()} {path} ({route.name}) with tenant B's token"
            if response.status_code != ALLOWED_REFUSALS.get(key):
                assert response.status_code < 400, (where, response.status_code, response.content[:300])
            assert response.get("Idempotent-Replayed") is None, where
            sent = json.dumps(BODIES.get(key))  # an id B itself sent, echoed back in a 404, is no leak
            assert not leaks(response, [i for i in (f'"{tenant_id}"', *a_ids(a)) if i not in sent]), (where, response.content[:500])

    assert tenant_rows(a.api.tenant) == before, "tenant B's requests changed tenant A's rows"
    assert queued_jobs() > jobs_before  # B's own creates were queued: the queue is really observed


# --- the role dimension ------------------------------------------------------------------------
#
# Inside one tenant, what each role may do (docs/roles.md). The capability every route and method
# needs is written out here, and compared with what the views declare (orchestrio/roles.py reads
# the same declarations for every request): a change to one without the other fails. Then a
# member, an admin and an owner each call every route: refused exactly where their role lacks the
# capability (403, changing nothing), allowed everywhere else.

PUBLIC = "public"  # no authentication at all
EXPECTED_CAPABILITIES = {
    ("api:tenant", "get"): "read",
    ("api:plans", "get"): PUBLIC,
    ("api:regions", "get"): PUBLIC,
    ("api:api-token-list", "get"): "read",
    ("api:api-token-list", "post"): "operate",  # a token acts with its creator's role, never more
    ("api:api-token-detail", "get"): "read",
    ("api:api-token-detail", "delete"): "operate",  # one's own; someone else's needs "tokens" (service)
    ("api:activity-list", "get"): "read",
    ("api:member-list", "get"): "read",
    ("api:member-detail", "get"): "read",
    ("api:member-detail", "patch"): "members",  # granting or taking away owner needs "owners" (service)
    ("api:member-detail", "delete"): "members",  # an owner needs "owners"; the last owner stays (service)
    ("api:invitation-list", "get"): "members",
    ("api:invitation-list", "post"): "members",  # inviting an owner needs "owners" (service)
    ("api:invitation-detail", "get"): "members",
    ("api:invitation-detail", "delete"): "members",
    ("api:instance-list", "get"): "read",
    ("api:instance-list", "post"): "operate",
    ("api:instance-by-idempotency-key", "get"): "read",
    ("api:instance-cleanup", "post"): "destroy",
    ("api:instance-detail", "get"): "read",
    ("api:instance-detail", "delete"): "destroy",
    ("api:instance-config", "get"): "read",
    ("api:instance-config", "patch"): "operate",
    ("api:instance-custom-domain", "get"): "read",
    ("api:instance-custom-domain", "post"): "expose",
    ("api:instance-custom-domain", "delete"): "destroy",
    ("api:instance-custom-domain-check", "post"): "operate",
    ("api:instance-health", "get"): "read",
    ("api:instance-logs", "get"): "read",
    ("api:instance-operations", "get"): "read",
    ("api:instance-app-logs", "get"): "read",
    ("api:instance-stats", "get"): "read",
    ("api:operation-list", "get"): "read",
    ("api:fleet-request-list", "get"): "read",
    ("api:fleet-request-list", "post"): "operate",
    ("api:fleet-request-detail", "get"): "read",
    ("api:fleet-request-return-request", "post"): "destroy",
    ("api:fleet-request-return-instances", "post"): "destroy",
    ("api:operation-detail", "get"): "read",
    ("api:instance-resize", "put"): "operate",
    ("api:instance-restart", "post"): "operate",
    ("api:instance-resume", "post"): "operate",
    ("api:instance-rotate-agent-key", "post"): "tokens",
    ("api:instance-runtime", "get"): "read",
    ("api:instance-start", "post"): "operate",
    ("api:instance-stop", "post"): "operate",
    ("api:instance-suspend", "post"): "operate",
    ("api:instance-sleep", "post"): "operate",
    ("api:instance-wake", "post"): "operate",
    ("api:instance-detail", "patch"): "operate",
    ("api:instance-usage", "get"): "read",
    ("api:instance-request-metrics", "get"): "read",
    ("api:instance-wait", "get"): "read",
    ("api:instance-chat", "post"): "operate",
    ("api:instance-consent", "get"): "read",
    ("api:instance-consent", "patch"): "debug",
    ("api:instance-conversations", "get"): "debug",
    ("api:instance-conversation", "get"): "debug",
    ("api:instance-model-policy", "get"): "read",
    ("api:instance-model-policy", "put"): "operate",
    ("api:models", "get"): "read",
    ("api:blueprint-list", "get"): "read",
    ("api:blueprint-list", "post"): "operate",
    ("api:blueprint-validate", "post"): "read",  # a POST that changes nothing
    ("api:blueprint-detail", "get"): "read",
    ("api:blueprint-detail", "put"): "operate",
    ("api:blueprint-detail", "patch"): "operate",
    ("api:blueprint-detail", "delete"): "destroy",
    ("api:deployment-list", "get"): "read",
    ("api:deployment-list", "post"): "operate",  # its instance and an api-key webhook policy
    ("api:deployment-detail", "get"): "read",
    ("api:deployment-detail", "patch"): "operate",
    ("api:deployment-detail", "delete"): "destroy",
    ("api:deployment-logs", "get"): "read",
    ("api:deployment-stats", "get"): "read",
    ("api:deployment-revisions", "get"): "read",
    ("api:deployment-rollback", "post"): "operate",
    ("api:instance-task-list", "get"): "read",
    ("api:instance-task-list", "post"): "operate",
    ("api:task-detail", "get"): "read",
    ("api:task-cancel", "post"): "operate",
    ("api:instance-addon-list", "get"): "read",
    ("api:instance-addon-list", "post"): "operate",  # the URL in the 201 only for owners and admins
    ("api:addon-detail", "get"): "read",
    ("api:addon-detail", "delete"): "destroy",
    ("api:addon-rotate-credentials", "post"): "tokens",
    ("api:addon-reveal", "post"): "tokens",
    ("api:addon-auto-backup", "post"): "operate",
    ("api:addon-backup-info", "get"): "read",
    ("api:addon-backups", "get"): "read",
    ("api:addon-backups", "post"): "operate",  # counted against the plan's daily quota
    ("api:addon-backup-delete", "delete"): "destroy",
    ("api:addon-backup-download", "get"): "tokens",  # a backup holds all of the add-on's data
    ("api:addon-restore", "post"): "destroy",  # it replaces the add-on's data
    ("api:function-list", "get"): "read",
    ("api:function-list", "post"): "operate",
    ("api:function-check-name", "get"): "read",
    ("api:function-detail", "get"): "read",
    ("api:function-detail", "patch"): "operate",
    ("api:function-detail", "delete"): "destroy",
    ("api:function-deploy", "post"): "operate",
    ("api:function-invoke", "post"): "operate",
    ("api:function-versions", "get"): "read",
    ("api:function-logs", "get"): "read",
    ("api:function-metrics", "get"): "read",
    ("api:function-env-vars", "get"): "tokens",  # the values, decrypted (audited)
    ("api:function-rotate-api-key", "post"): "tokens",
    ("api:instance-gateway-policy-list", "get"): "read",
    ("api:instance-gateway-policy-list", "post"): "operate",  # a public policy needs "expose" (service)
    ("api:gateway-policy-detail", "get"): "read",
    ("api:gateway-policy-detail", "patch"): "operate",  # making it public needs "expose" (service)
    ("api:gateway-policy-detail", "delete"): "destroy",
    ("api:billing-checkout", "post"): "billing",
    ("api:billing-portal", "post"): "billing",
    ("api:usage-current", "get"): "read",
    ("api:dashboard-summary", "get"): "read",
    ("api:alerts", "get"): "alerts",
    ("api:alerts", "patch"): "alerts",
    ("api:alerts-test", "post"): "alerts",
    ("api:alerts-rotate-secret", "post"): "alerts",
    ("api:alert-delivery-list", "get"): "alerts",
    ("api:alert-delivery-test", "post"): "alerts",
    ("api:alert-delivery-rotate-secret", "post"): "alerts",
    ("api:alert-delivery-redeliver", "post"): "alerts",
    ("api:notification-list", "get"): "read",  # one's own feed, of the events one's role may see
    ("api:notification-read", "post"): "read",
    ("api:notification-read-all", "post"): "read",
}
# The same roles by name, so that the table above is checked against a second statement of the
# matrix and not only against orchestrio/roles.py.
ROLES_HOLDING = {
    "read": {"member", "admin", "owner"},
    "operate": {"member", "admin", "owner"},
    "destroy": {"admin", "owner"},
    "expose": {"admin", "owner"},
    "tokens": {"admin", "owner"},
    "billing": {"admin", "owner"},
    "alerts": {"admin", "owner"},
    "debug": {"admin", "owner"},
    "members": {"admin", "owner"},
    "owners": {"owner"},
    "tenant": {"owner"},
}
# In the live sweep, where the object or the body asks for more than the route declares.
EFFECTIVE_CAPABILITIES = {
    ("api:api-token-detail", "delete"): "tokens",  # the seeded token is the owner's
    ("api:instance-gateway-policy-list", "post"): "expose",  # the body asks for an anonymous policy
}
# Routes naming an object of one person (a notification is its reader's): another person in the
# same tenant, whatever the role, gets 404 as another tenant does.
PERSONAL_ROUTES = {"api:notification-read"}
ROLE_BODIES = {
    **BODIES,
    ("api:instance-gateway-policy-list", "post"): {"slug": "public-hook", "provider": "anonymous"},
    ("api:instance-custom-domain", "post"): {"domain": "www.acme-corp.example"},
    ("api:instance-list", "post"): {"instance_id": "acme-corp-second"},
    ("api:blueprint-list", "post"): {"name": "acme-corp-bp2"},
    ("api:deployment-list", "post"): {"name": "acme-corp-dep2", "environment": "staging"},
    ("api:function-list", "post"): {"slug": "acme-corp-fn2", "runtime": "python3.11", "code": "def handler(request):\n    return 1\n"},
    ("api:fleet-request-list", "post"): {"count": 1, "instance_id_prefix": "acme-corp-batch"},
    # The fleet request's own instance: the sweep's later calls still need acme-corp-web.
    ("api:fleet-request-return-instances", "post"): {"instance_ids": ["acme-corp-fleet-1"]},
}


def role_api(seeded: Seeded, role: str):
    """A token of `role` in the seeded tenant (the seeded owner's own for "owner")."""
    from ..factories import ApiTokenFactory, MembershipFactory, UserFactory
    from ..helpers import Api

    if role == "owner":
        return seeded.api
    user = UserFactory(username=f"{role}@acme.example")
    MembershipFactory(user=user, tenant=seeded.api.tenant, role=role)
    return Api(ApiTokenFactory(tenant=seeded.api.tenant, created_by=user, role=role).plaintext, tenant=seeded.api.tenant, user=user)


def test_role_declarations_match_the_expected_matrix():
    from orchestrio import roles
    from orchestrio.api.viewsets import PublicApiView

    assert {name: set(roles.roles_for(name)) for name in roles.CAPABILITIES} == ROLES_HOLDING
    seen, mismatches, stale_keys = set(), [], []
    for route in ROUTES:
        for method in route.methods:
            key = (route.name, method)
            seen.add(key)
            if key not in EXPECTED_CAPABILITIES:
                mismatches.append(f"{key}: add it to EXPECTED_CAPABILITIES (and docs/roles.md)")
                continue
            if EXPECTED_CAPABILITIES[key] == PUBLIC:
                assert issubclass(route.view_class, PublicApiView), key
                continue
            declared = roles.needed_by_view(route.view_class, route.action(method), method)
            if declared != EXPECTED_CAPABILITIES[key]:
                mismatches.append(f"{key}: the view declares {declared!r}, the matrix says {EXPECTED_CAPABILITIES[key]!r}")
    assert not mismatches, mismatches
    assert not set(EXPECTED_CAPABILITIES) - seen, f"entries for routes that no longer exist: {set(EXPECTED_CAPABILITIES) - seen}"
    # Every declaration names an action (or a method) of its view, and a known capability.
    keys: dict[type, set[str]] = {}
    for route in ROUTES:
        keys.setdefault(route.view_class, set()).update(dict(route.actions).values() if route.actions else route.methods)
    for view, valid in keys.items():
        for key, declaration in getattr(view, "capabilities", {}).items():
            if key not in valid:
                stale_keys.append(f"{view.__name__}.capabilities[{key!r}]: no such action")
            for capability in declaration.values() if isinstance(declaration, dict) else [declaration]:
                roles.roles_for(capability)
    assert not stale_keys, stale_keys


def _sweep(api, seeded: Seeded, routes, *, bodies):
    """Each route with `api`, pointed at `seeded`'s objects: reads, then writes, deletions last."""
    order = {"get": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}
    calls = sorted(((order[m], route, m) for route, m in routes), key=lambda c: (c[0], c[1].name, c[2]))
    for _, route, method in calls:
        yield route, method, api.request(method.upper(), route.path(seeded), bodies.get((route.name, method)))


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_each_role_is_allowed_or_refused_exactly_as_the_matrix_says(seeded, role):
    api = role_api(seeded, role)
    api.get("tenant")  # the token's first use is recorded (last_used_at) before the snapshot
    calls = [(route, m) for route in ROUTES for m in route.methods if EXPECTED_CAPABILITIES[(route.name, m)] != PUBLIC]
    needs = {(route.name, m): EFFECTIVE_CAPABILITIES.get((route.name, m), EXPECTED_CAPABILITIES[(route.name, m)]) for route, m in calls}
    refused = [(route, m) for route, m in calls if role not in ROLES_HOLDING[needs[(route.name, m)]]]
    allowed = [(route, m) for route, m in calls if role in ROLES_HOLDING[needs[(route.name, m)]]]
    assert bool(refused) == (role == "member")  # no API route is for owners only (yet)

    before, jobs_before = tenant_rows(seeded.api.tenant), queued_jobs()
    wrong = []
    for route, method, response in _sweep(api, seeded, refused, bodies=ROLE_BODIES):
        holders = " or ".join(sorted(ROLES_HOLDING[needs[(route.name, method)]], key=["owner", "admin", "member"].index))
        if response.status_code != 403 or f"needs the {holders} role" not in response.json().get("detail", ""):
            wrong.append((method.upper(), route.name, response.status_code, response.content[:200]))
    assert not wrong, f"a {role} was not refused (403 naming the role it needs): {wrong}"
    assert tenant_rows(seeded.api.tenant) == before, f"refused requests of a {role} changed the tenant's rows"
    assert queued_jobs() == jobs_before, f"refused requests of a {role} queued jobs"

    for route, method, response in _sweep(api, seeded, allowed, bodies=ROLE_BODIES):
        if route.name in PERSONAL_ROUTES and api is not seeded.api:
            # The seeded object is the seeded owner's own: another person of the tenant gets 404.
            assert response.status_code == 404, (role, method.upper(), route.name, response.status_code, response.content[:300])
            continue
        assert response.status_code not in (403, 404), (role, method.upper(), route.name, response.status_code, response.content[:300])


def test_another_tenants_object_is_404_for_every_role(seeded, tenant_b):
    """A role refusal never comes before the tenant lookup: a member of B pointing at A's objects
    learns nothing more than B's owner does."""
    member = role_api(tenant_b, "member")
    wrong = []
    for route in ID_ROUTES:
        if route.name in NOT_FOUND_BODIES:
            continue
        for method in route.methods:
            response = member.request(method.upper(), route.path(seeded), ROLE_BODIES.get((route.name, method)))
            if response.status_code != 404:
                wrong.append((method.upper(), route.name, response.status_code))
    assert not wrong, wrong


def test_head_needs_what_get_needs(seeded):
    """HEAD runs the GET handler: an admins-only read stays admins-only without its body."""
    member = role_api(seeded, "member")
    for path in ("alerts", "alerts/deliveries"):
        assert member.request("HEAD", path).status_code == 403, path
    assert seeded.api.request("HEAD", "alerts").status_code == 200
