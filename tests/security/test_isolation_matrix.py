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
from dataclasses import dataclass
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
PARAMETER_OBJECTS = {"instance_id": "instance", "task_id": "task", "key": "idempotency_key"}
VIEW_PARAMETER_OBJECTS = {
    ("ApiTokenViewSet", "pk"): "api_token",
    ("BlueprintViewSet", "name"): "blueprint",
    ("DeploymentViewSet", "pk"): "deployment",
    ("PolicyViewSet", "pk"): "gateway_policy",
    ("AlertDeliveryViewSet", "pk"): "alert_delivery",
}

# Bodies that pass validation, so that a 404 comes from the tenant-scoped lookup and not from a
# validator that happens to run first.
BODIES = {
    ("api:instance-config", "patch"): {"b_was_here": True},
    ("api:instance-custom-domain", "post"): {"domain": "app.intruder.example"},
    ("api:instance-resize", "put"): {"plan_id": "openclaw-pro"},
    ("api:instance-task-list", "post"): {"operation_code": "steal", "script_path": "/opt/orchestrio/scripts/echo-args.sh"},
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
    ("api:billing-checkout", "post"): {"plan": "team"},
    ("api:alerts", "patch"): {"webhook_url": "https://hooks.intruder.example/alerts", "enabled": True},
}
# Headers for B's requests: an Idempotency-Key that A used must not replay A's response to B.
HEADERS = {("api:instance-list", "post"): {"Idempotency-Key": "acme-corp-create-key"}}

# Where another tenant's id does not answer 404, what it answers instead (and why).
NOT_FOUND_BODIES = {
    # A lookup by key, not an object: "no create with that key in your tenant" is a 200.
    "api:instance-by-idempotency-key": {"found": False, "instance_id": None, "state": None, "provisioning_stage": None, "logs": []},
}
# B's writes that take no ids and may be refused, with the reason.
ALLOWED_REFUSALS = {
    ("api:billing-portal", "post"): 400,  # no Stripe customer yet, unless the checkout made one
}


@dataclass(frozen=True)
class Route:
    name: str  # "api:instance-stop"
    parameters: tuple[str, ...]
    methods: tuple[str, ...]
    view: str

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
    for kind in ("task", "gateway_policy", "deployment", "alert_delivery"):
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
        if route.name in NOT_FOUND_BODIES:
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
            assert not leaks(response, [f'"{tenant_id}"', *a_ids(a)]), (where, response.content[:500])

    assert tenant_rows(a.api.tenant) == before, "tenant B's requests changed tenant A's rows"
    assert queued_jobs() > jobs_before  # B's own creates were queued: the queue is really observed
