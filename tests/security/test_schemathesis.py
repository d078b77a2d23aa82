"""Schemathesis against the live OpenAPI document: every operation, generated inputs, in-process.

The schema is fetched from `/api/schema` of the WSGI application, as a client gets it, and every
operation is called with cases generated from it (the examples, coverage and fuzzing phases;
positive and negative data) with a real `ork_` token of a tenant that owns one object of every
kind. Every response must pass:

- not_a_server_error: no 5xx, for any input (Stripe, DNS and the instance's agent answer on
  loopback, so no 502/503/504 stands in for an upstream);
- status_code_conformance, content_type_conformance, response_schema_conformance: the status
  is documented for the operation, with its content type and JSON schema;
- negative_data_rejection: a request the schema says is invalid gets a 4xx, not a 2xx;
- ignored_auth: an operation that declares authentication refuses a request without it.

No operation is excluded. Only the stateful phase is off: it chains operations through the
document's links, and every example here starts from the same seeded tenant instead.

Positive path parameters mostly name the tenant's real objects, so handlers run past their
lookups with fuzzed bodies and query strings; some fuzzed cases keep the generated value, which
exercises the "no such object" paths with odd ids.

Each case runs inside a savepoint that is rolled back afterwards, so every case sees the tenant as
seeded (a DELETE in one does not turn the next into a 404). Jobs the requests enqueue on commit go
to the embedded Redis and are not run.
"""

from __future__ import annotations

import itertools
import zlib
from types import SimpleNamespace

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import TestCase
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase

from instances import waiting
from instances.api import applogs
from orchestrio.wsgi import application

# Generated cases per operation in the fuzzing phase; the coverage phase adds its own boundary
# cases (all of them, deterministically).
MAX_EXAMPLES = 15

# Path parameters and where their real values come from (see conftest.seed_tenant).
PARAMETER_KINDS = {"instance_id": "instance", "task_id": "task", "name": "blueprint", "key": "idempotency_key", "request_id": "fleet_request", "addon_id": "addon", "backup_id": "addon_backup", "function_id": "function", "cid": "conversation"}
# `{id}` names a different kind of object on each resource.
ID_KINDS = {
    "/api/v1/api-tokens/": "api_token",
    "/api/v1/deployments/": "deployment",
    "/api/v1/gateway-policies/": "gateway_policy",
    "/api/v1/alerts/deliveries/": "alert_delivery",
    "/api/v1/members/": "member",
    "/api/v1/invitations/": "invitation",
    "/api/v1/operations/": "operation",
    "/api/v1/notifications/": "notification",
}


def _kind(path: str, parameter: str) -> str:
    if parameter in PARAMETER_KINDS:
        return PARAMETER_KINDS[parameter]
    for prefix, kind in ID_KINDS.items():
        if parameter == "id" and path.startswith(prefix):
            return kind
    raise AssertionError(f"no real object for {{{parameter}}} in {path}: add it to PARAMETER_KINDS or ID_KINDS")


def use_real_objects(case, seeded) -> None:
    """Point positive path parameters at the tenant's real objects (deterministically): always in
    the coverage phase, whose cases vary the body and query around one path, and in two of three
    fuzzed cases (the third keeps its generated, odd, id)."""
    if not case.path_parameters or case.meta is None or case.meta.is_negative_at(ParameterLocation.PATH):
        return
    choice = zlib.crc32(repr((sorted(case.path_parameters.items()), case.query, case.body)).encode())
    if case.meta.phase.name == TestPhase.FUZZING and choice % 3 == 0:
        return
    for parameter in list(case.path_parameters):
        values = seeded.ids[_kind(case.operation.path, parameter)]
        case.path_parameters[parameter] = str(values[choice % len(values)])


CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "negative_data_rejection": {"enabled": True},
            "ignored_auth": {"enabled": True},
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema?format=json", application, config=CONFIG)


@pytest.fixture
def keep_test_connection():
    """Requests go through the real WSGI handler, which closes the database connection when a
    request ends; the test's transaction lives on that connection. Django's test client
    disconnects the same handler for the same reason."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def wait_times_out_at_once(monkeypatch):
    """`/wait` long-polls for up to `timeout` (≤ 300) seconds; here its clock runs out at the first
    look, so the 408 answer comes at once (tests/instances/test_wait.py waits for real)."""
    ticks = itertools.count(step=1000)
    monkeypatch.setattr(waiting, "time", SimpleNamespace(monotonic=lambda: next(ticks), sleep=lambda seconds: None))
    # A followed app log (server-sent events) ends at once the same way.
    monkeypatch.setattr(applogs, "time", SimpleNamespace(monotonic=lambda: next(ticks), sleep=lambda seconds: None))


def _credentials(case, token: str) -> dict[str, str]:
    """The tenant's real token, except in a negative case about the headers that carries its own
    Authorization: replacing that would send valid credentials with a case meant to be refused."""
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER) and "Authorization" in (case.headers or {}):
        return {}
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
# The seeded tenant is shared (module and `db` fixtures); each example's savepoint is rolled back,
# so every example sees it as seeded.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_conforms_and_never_fails(case, seeded_module, db, keep_test_connection, wait_times_out_at_once):
    use_real_objects(case, seeded_module)
    with transaction.atomic():
        with TestCase.captureOnCommitCallbacks(execute=True):
            case.call_and_validate(headers=_credentials(case, seeded_module.api.token))
        transaction.set_rollback(True)
