"""API conventions: error shapes, unknown routes, pagination bounds, rate limits, idempotency,
direct-IP denial."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from orchestrio.choices import IdempotencyStatus
from orchestrio.models import ApiToken, IdempotencyKey

from ..helpers import Api, assert_error, assert_validation_error


def test_malformed_json_is_422_with_loc(api):
    response = api.request("POST", "api-tokens", raw="{not json")
    detail = assert_validation_error(response, ("body",))
    assert detail[0]["type"] == "json_invalid"


def test_wrong_types_are_422_per_field(api):
    detail = assert_validation_error(api.post("api-tokens", {"name": ["x"], "mode": 5}), ("body", "name"), ("body", "mode"))
    assert all(issue["msg"] for issue in detail)


def test_non_object_body_is_422(api):
    assert_validation_error(api.request("POST", "api-tokens", raw="[1, 2]"), ("body",))


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/instances-typo/x", "/api/v2/tenant", "/api/"])
def test_unknown_api_routes_are_json_404(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "no such endpoint" in response.json()["detail"]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_unknown_api_routes_are_json_404_for_writes_without_a_csrf_cookie(api, method):
    # API clients send no CSRF cookie: the answer is the JSON 404, not Django's CSRF failure page.
    response = getattr(Client(enforce_csrf_checks=True), method)("/api/v1/api-tokens/1.5", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 404 and "no such endpoint" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("api-tokens", {"name": 5}, ("body", "name")),
        ("api-tokens", {"name": "ci", "expires_in_days": "30"}, ("body", "expires_in_days")),
        ("api-tokens", {"name": "ci", "mode": 1}, ("body", "mode")),
        ("blueprints", {"name": "typed", "command": ["ok", 0]}, ("body", "command", 1)),
        ("blueprints", {"name": "typed", "agent_port": "8080"}, ("body", "agent_port")),
        ("blueprints", {"name": "typed", "tags": {"team": 1}}, ("body", "tags", "team")),
    ],
)
def test_json_values_of_the_wrong_type_are_422_not_coerced(api, path, body, loc):
    assert_validation_error(api.post(path, body), loc)


def test_nul_characters_are_refused_before_they_reach_the_database(api):
    # PostgreSQL stores no NUL in text or jsonb: the API refuses them, it does not fail with a 500.
    assert_validation_error(api.post("api-tokens", {"name": "ci", "extra": [{"k\x00": 1}, "v\x00"]}), ("body", "extra", 0, "k\x00"), ("body", "extra", 1))
    assert_error(api.get("instances/web%00-01"), 404)
    assert_error(api.get("instances/by-idempotency-key/k%00"), 404)
    assert_validation_error(api.get("instances", label="team:a\x00"), ("query", "label"))
    assert_validation_error(api.post("api-tokens", {"name": "ci"}, headers={"Idempotency-Key": "k\x00"}), ("header", "Idempotency-Key"))


def test_boolean_bodies_take_only_true_or_false(api):
    assert_validation_error(api.patch("alerts", {"enabled": "yes"}), ("body", "enabled"))
    assert_validation_error(api.patch("alerts", {"enabled": 1}), ("body", "enabled"))


def test_boolean_query_filters_take_only_true_or_false(api):
    assert_validation_error(api.get("api-tokens", revoked="yes"), ("query", "revoked"))
    assert api.get("api-tokens", revoked="false").json()["count"] == 1
    assert api.get("api-tokens", revoked="true").json()["count"] == 0
    assert api.get("api-tokens?revoked=").json()["count"] == 1  # empty: not given


def test_method_not_allowed_is_json(api):
    response = api.put("tenant", {})
    assert_error(response, 405)


@pytest.mark.parametrize(
    ("query", "loc"),
    [({"limit": "0"}, ("query", "limit")), ({"limit": "201"}, ("query", "limit")), ({"limit": "ten"}, ("query", "limit")), ({"offset": "-1"}, ("query", "offset"))],
)
def test_pagination_bounds_are_422(api, query, loc):
    assert_validation_error(api.get("api-tokens", **query), loc)


def test_invalid_filter_value_is_422(api):
    assert_validation_error(api.get("api-tokens", mode="prod"), ("query", "mode"))


def test_list_envelope(api):
    body = api.get("api-tokens").json()
    assert set(body) == {"count", "next", "previous", "results"}


def test_every_response_carries_rate_limit_headers(api):
    response = api.get("tenant")
    assert int(response["X-RateLimit-Limit"]) > 0
    assert int(response["X-RateLimit-Remaining"]) >= 0


def test_429_with_retry_after(api, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "3/m"}
    remaining = [int(api.get("tenant")["X-RateLimit-Remaining"]) for _ in range(3)]
    assert remaining == [2, 1, 0]
    response = api.get("tenant")
    assert_error(response, 429, contains="rate limit")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["X-RateLimit-Remaining"] == "0"
    # Another endpoint of the same class keeps its own counter.
    assert api.get("api-tokens").status_code == 200


def test_rate_limits_are_per_token(api, tenant, owner, settings):
    from ..factories import ApiTokenFactory

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "1/m"}
    assert api.get("tenant").status_code == 200
    assert api.get("tenant").status_code == 429
    other = Api(ApiTokenFactory(tenant=tenant, created_by=owner).plaintext)
    assert other.get("tenant").status_code == 200


def test_plan_ceiling_applies_across_endpoints(api, tenant):
    from orchestrio.models import SubscriptionPlan

    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(api_requests_per_minute=2)
    assert api.get("tenant").status_code == 200
    assert api.get("api-tokens").status_code == 200
    response = api.get("activity")
    assert_error(response, 429)
    assert response["X-RateLimit-Limit"] == "2"


def test_write_class_limit(api, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "write": "2/m"}
    assert api.post("api-tokens", {"name": "a"}).status_code == 201
    assert api.post("api-tokens", {"name": "b"}).status_code == 201
    assert_error(api.post("api-tokens", {"name": "c"}), 429)


def test_failed_authentication_is_limited_per_source_without_refusing_valid_tokens(anon_api, api, member_api, settings):
    """Issue 14, finding 14: a source that keeps presenting bad tokens gets 429 for further bad
    ones, but a valid token from the same address (a NAT'd office) still works."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth_failure": "3/m"}
    from orchestrio import tokens

    def bad():
        return anon_api.get("tenant", headers={"Authorization": f"Bearer {tokens.generate('live').plaintext}"})

    for _ in range(3):
        assert bad().status_code == 401
    response = bad()
    assert_error(response, 429, contains="failed authentication")
    assert int(response["Retry-After"]) >= 1
    assert_error(anon_api.get("tenant", headers={"Authorization": "Bearer not-even-a-token"}), 429, contains="failed authentication")
    # Valid tokens from the throttled address are served, and get their own answers (a member's
    # admin-only request is 403, not 429).
    assert api.get("tenant").status_code == 200
    assert api.post("api-tokens", {"name": "still-works"}).status_code == 201
    assert_error(member_api.post("instances/cleanup"), 403)
    # Further bad attempts are still refused.
    assert_error(bad(), 429, contains="failed authentication")


def test_failed_authentication_is_counted_per_source(anon_api, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth_failure": "2/m"}
    from orchestrio import tokens

    guess = {"Authorization": f"Bearer {tokens.generate('live').plaintext}"}
    for _ in range(3):
        anon_api.get("tenant", headers=guess)
    assert anon_api.get("tenant", headers=guess).status_code == 429
    other_source = Client(REMOTE_ADDR="198.51.100.7")
    assert other_source.get("/api/v1/tenant", HTTP_AUTHORIZATION=guess["Authorization"]).status_code == 401


def test_requests_without_credentials_are_not_failed_attempts(anon_api, settings):
    """Nothing is guessed without credentials: they get 401 however many there are, and do not
    use up the source's allowance for bad ones."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth_failure": "2/m"}
    from orchestrio import tokens

    for _ in range(5):
        assert anon_api.get("tenant").status_code == 401
    assert anon_api.get("tenant", headers={"Authorization": f"Bearer {tokens.generate('live').plaintext}"}).status_code == 401


# --- Idempotency-Key ---------------------------------------------------------------------------


def test_idempotent_replay(api):
    headers = {"Idempotency-Key": "create-token-1"}
    first = api.post("api-tokens", {"name": "once"}, headers=headers)
    second = api.post("api-tokens", {"name": "once"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert ApiToken.objects.filter(name="once").count() == 1


def test_idempotency_key_with_a_different_body_is_409(api):
    headers = {"Idempotency-Key": "k-1"}
    assert api.post("api-tokens", {"name": "one"}, headers=headers).status_code == 201
    assert_error(api.post("api-tokens", {"name": "two"}, headers=headers), 409, contains="different request")
    assert not ApiToken.objects.filter(name="two").exists()


def test_idempotency_key_in_flight_is_409(api, tenant, token):
    IdempotencyKey.objects.create(
        tenant=tenant, principal=f"token:{token.pk}", key="busy", fingerprint="x" * 64, method="POST", path="/api/v1/api-tokens",
        locked_until=timezone.now() + timedelta(minutes=1),
    )
    # Same fingerprint as the in-flight one: compute it by replaying through the real code path.
    from orchestrio.api import idempotency

    class FakeRequest:
        method = "POST"
        path = "/api/v1/api-tokens"
        data = {"name": "slow"}

    IdempotencyKey.objects.filter(key="busy").update(fingerprint=idempotency._fingerprint(FakeRequest))
    assert_error(api.post("api-tokens", {"name": "slow"}, headers={"Idempotency-Key": "busy"}), 409, contains="still being processed")


def test_stale_in_flight_key_is_taken_over(api, tenant, token):
    from orchestrio.api import idempotency

    class FakeRequest:
        method = "POST"
        path = "/api/v1/api-tokens"
        data = {"name": "retry"}

    IdempotencyKey.objects.create(
        tenant=tenant, principal=f"token:{token.pk}", key="dead", fingerprint=idempotency._fingerprint(FakeRequest), method="POST",
        path="/api/v1/api-tokens", locked_until=timezone.now() - timedelta(seconds=1),
    )
    response = api.post("api-tokens", {"name": "retry"}, headers={"Idempotency-Key": "dead"})
    assert response.status_code == 201
    assert IdempotencyKey.objects.get(key="dead").status == IdempotencyStatus.COMPLETED


def test_idempotency_keys_are_per_tenant(api, other_api):
    headers = {"Idempotency-Key": "shared-key"}
    assert api.post("api-tokens", {"name": "a"}, headers=headers).status_code == 201
    other = other_api.post("api-tokens", {"name": "a"}, headers=headers)
    assert other.status_code == 201 and "Idempotent-Replayed" not in other


def test_expired_idempotency_key_runs_again(api, tenant):
    headers = {"Idempotency-Key": "old"}
    assert api.post("api-tokens", {"name": "a"}, headers=headers).status_code == 201
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    again = api.post("api-tokens", {"name": "a"}, headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert ApiToken.objects.filter(name="a").count() == 2


def test_error_responses_are_replayed_too(api, tenant):
    from orchestrio.models import SubscriptionPlan

    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_tokens=1)
    headers = {"Idempotency-Key": "limited"}
    first = api.post("api-tokens", {"name": "x"}, headers=headers)
    assert first.status_code == 402
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_tokens=10)
    second = api.post("api-tokens", {"name": "x"}, headers=headers)
    assert second.status_code == 402 and second["Idempotent-Replayed"] == "true"


def test_idempotency_key_length_is_validated(api):
    assert_validation_error(api.post("api-tokens", {"name": "x"}, headers={"Idempotency-Key": "k" * 256}), ("header", "Idempotency-Key"))


def test_purge_job_removes_expired_keys(api, tenant):
    from orchestrio.jobs import purge_idempotency_keys

    api.post("api-tokens", {"name": "a"}, headers={"Idempotency-Key": "fresh"})
    api.post("api-tokens", {"name": "b"}, headers={"Idempotency-Key": "stale"})
    IdempotencyKey.objects.filter(key="stale").update(created_at=timezone.now() - timedelta(hours=30))
    assert purge_idempotency_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]


# --- Direct IP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "[::1]:8000"])
def test_deny_direct_ip(api, settings, host):
    settings.DENY_DIRECT_IP = True
    response = api.get("tenant", headers={"Host": host})
    assert_error(response, 403, contains="direct IP access")


def test_direct_ip_allowed_for_hostnames_and_health(api, settings):
    settings.DENY_DIRECT_IP = True
    assert api.get("tenant", headers={"Host": "localhost"}).status_code == 200
    assert api.get("/health", headers={"Host": "127.0.0.1"}).status_code in (200, 503)


def test_direct_ip_allowed_when_setting_off(api, settings):
    settings.DENY_DIRECT_IP = False
    assert api.get("tenant", headers={"Host": "127.0.0.1"}).status_code == 200


def test_api_datetimes_are_written_as_drfs_datetime_fields_write_them():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from django.conf import settings
    from rest_framework.fields import DateTimeField

    from orchestrio.models import API_DATETIME_FORMAT, api_datetime

    assert settings.REST_FRAMEWORK["DATETIME_FORMAT"] == API_DATETIME_FORMAT
    now = timezone.now()
    for value in (
        now, now.replace(microsecond=0), datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 2, 30, 0, 7, tzinfo=ZoneInfo("Europe/Paris")), datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York")),
    ):  # fmt: skip
        assert api_datetime(value) == value.astimezone(UTC).strftime(API_DATETIME_FORMAT) == DateTimeField().to_representation(value), value
    assert api_datetime(None) is None


# --- ratchets on where code goes (STYLE.md) ---------------------------------------------------

_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
# Functions of services.py that other code calls back with the arguments it defines: the hooks
# and registries they are registered with (instances.hooks, orchestrio.hooks) pass positionally.
_CALLED_BACK = {
    "deployments/services.py": {"deployment_reapply_secrets", "deployment_instance_running", "reconcile_deployments"},
    "domains/services.py": {"instance_destroying", "instance_destroyed", "instance_for_host"},
    "addons/services.py": {"addon_env_push_hook", "addons_of_destroyed_instance", "addons_reconcile"},
    "fleet/services.py": {"fleet_create_held_by", "fleet_machine_ready", "fleet_batch_reconcile"},
}


def _app_modules(name: str):
    for path in sorted(_ROOT.glob(f"*/{name}")) + sorted(_ROOT.glob(f"*/*/{name}")):
        relative = path.relative_to(_ROOT)
        if relative.parts[0] not in {".venv", "tests", "bench", "scripts"}:
            yield relative.as_posix(), __import__("ast").parse(path.read_text())


def test_public_services_are_keyword_only():
    """`def x(*, …)`: a service's caller names what it passes. scripts/keyword_only_services.py
    rewrites a new one and its callers."""
    import ast

    offenders = []
    for relative, tree in _app_modules("services.py"):
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                positional = node.args.posonlyargs + node.args.args
                if (positional or node.args.vararg) and node.name not in _CALLED_BACK.get(relative, set()):
                    offenders.append(f"{relative}:{node.lineno} {node.name}({', '.join(a.arg for a in positional)})")
    assert offenders == []


def test_audit_rows_are_written_by_services():
    """The audit row is written by the service that makes the change (services.py; billing's
    alert services live in billing/alerts.py). The one exception is the admin's generic
    add/change/delete of a model (orchestrio.admin.AuditedModelAdmin), which has no service:
    Django's ModelAdmin saves the row."""
    import ast

    offenders = []
    for relative, tree in _app_modules("*.py"):
        if relative.endswith("/services.py") or relative == "billing/alerts.py" or "/migrations/" in relative:
            continue
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
                callee = ast.unparse(call.func)
                if callee.endswith(("activity_record", "activity_record_many", "ActivityEvent.objects.create")):
                    offenders.append((relative, function.name))
    assert offenders == [("orchestrio/admin.py", "_audit")]
