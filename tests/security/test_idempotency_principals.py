"""Issue 14, finding 5: an `Idempotency-Key` belongs to the principal that sent it (the API token,
or the console user), as Stripe scopes keys per API key. Another principal of the same tenant
sending the same key and body makes a fresh request: it never gets the first one's response
(an admin's new plaintext token, say) replayed to it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from orchestrio.models import ApiToken, IdempotencyKey

from ..factories import ApiTokenFactory, MembershipFactory, UserFactory
from ..helpers import Api, assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(tenant):
    user = UserFactory(username="admin@example.com")
    MembershipFactory(user=user, tenant=tenant, role="admin")
    return Api(ApiTokenFactory(tenant=tenant, created_by=user, role="admin").plaintext, tenant=tenant, user=user)


def test_a_member_replaying_an_admins_token_create_gets_a_fresh_request(admin_api, member_api):
    headers = {"Idempotency-Key": "deploy-token-1"}
    first = admin_api.post("api-tokens", {"name": "deploy"}, headers=headers)
    assert first.status_code == 201

    replay = member_api.post("api-tokens", {"name": "deploy"}, headers=headers)
    assert replay.status_code == 201
    assert "Idempotent-Replayed" not in replay
    assert replay.json()["token"] != first.json()["token"], "the admin's plaintext token leaked to a member"
    assert replay.json()["id"] != first.json()["id"]
    assert ApiToken.objects.get(pk=replay.json()["id"]).role == "member"
    assert ApiToken.objects.filter(name="deploy").count() == 2

    # The admin still gets its own response replayed, and so does the member.
    again = admin_api.post("api-tokens", {"name": "deploy"}, headers=headers)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    member_again = member_api.post("api-tokens", {"name": "deploy"}, headers=headers)
    assert member_again["Idempotent-Replayed"] == "true" and member_again.json() == replay.json()
    assert ApiToken.objects.filter(name="deploy").count() == 2


def test_a_member_replaying_an_admins_instance_create_gets_a_fresh_request(admin_api, member_api):
    headers = {"Idempotency-Key": "create-web-1"}
    first = admin_api.post("instances", {"instance_id": "idem-web-1"}, headers=headers)
    assert first.status_code == 201

    # A fresh request: the instance id is taken now (409), nothing is replayed.
    replay = member_api.post("instances", {"instance_id": "idem-web-1"}, headers=headers)
    assert_error(replay, 409, contains="taken")
    assert "Idempotent-Replayed" not in replay

    again = admin_api.post("instances", {"instance_id": "idem-web-1"}, headers=headers)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true" and again.json() == first.json()


def test_a_different_body_with_another_principals_key_is_not_a_conflict(admin_api, member_api):
    headers = {"Idempotency-Key": "k-shared"}
    assert admin_api.post("api-tokens", {"name": "one"}, headers=headers).status_code == 201
    # Stripe: keys are per API key, so another principal's key is simply unknown here.
    assert member_api.post("api-tokens", {"name": "two"}, headers=headers).status_code == 201


def test_two_tokens_of_the_same_user_are_two_principals(tenant, owner, api):
    second = Api(ApiTokenFactory(tenant=tenant, created_by=owner, role="owner").plaintext)
    headers = {"Idempotency-Key": "per-token"}
    first = api.post("api-tokens", {"name": "x"}, headers=headers)
    other = second.post("api-tokens", {"name": "x"}, headers=headers)
    assert first.status_code == other.status_code == 201
    assert "Idempotent-Replayed" not in other and other.json()["token"] != first.json()["token"]


def test_the_console_user_and_its_token_are_two_principals(tenant, owner, api):
    """A session (the console user) is its own principal: a key its token used is unknown to it."""
    session = APIClient()
    session.force_login(owner)
    headers = {"HTTP_IDEMPOTENCY_KEY": "console-key"}
    first = api.post("api-tokens", {"name": "c"}, headers={"Idempotency-Key": "console-key"})
    from_console = session.post("/api/v1/api-tokens", {"name": "c"}, format="json", **headers)
    assert first.status_code == from_console.status_code == 201
    assert "Idempotent-Replayed" not in from_console and from_console.json()["token"] != first.json()["token"]
    replayed = session.post("/api/v1/api-tokens", {"name": "c"}, format="json", **headers)
    assert replayed["Idempotent-Replayed"] == "true" and replayed.json() == from_console.json()


def test_by_idempotency_key_finds_only_the_callers_own_create(admin_api, member_api):
    headers = {"Idempotency-Key": "lookup-key"}
    assert admin_api.post("instances", {"instance_id": "idem-look-1"}, headers=headers).status_code == 201

    mine = admin_api.get("instances/by-idempotency-key/lookup-key").json()
    assert mine["found"] is True and mine["instance_id"] == "idem-look-1"
    theirs = member_api.get("instances/by-idempotency-key/lookup-key").json()
    assert theirs == {"found": False, "instance_id": None, "state": None, "provisioning_stage": None, "logs": []}

    # The member's own create with the same key (a fresh request) is the one it finds.
    assert member_api.post("instances", {"instance_id": "idem-look-2"}, headers=headers).status_code == 201
    assert member_api.get("instances/by-idempotency-key/lookup-key").json()["instance_id"] == "idem-look-2"
    assert admin_api.get("instances/by-idempotency-key/lookup-key").json()["instance_id"] == "idem-look-1"


def test_a_key_recorded_before_keys_had_principals_is_replayed_to_nobody(api, member_api, tenant):
    """Rows from before the migration have no principal: their response (perhaps a plaintext
    token) is replayed to no one, and the key cannot be reused until it expires (409), so a
    retry across the upgrade does not run twice either."""
    IdempotencyKey.objects.create(
        tenant=tenant, principal="", key="legacy", fingerprint="0" * 64, method="POST", path="/api/v1/api-tokens",
        status="completed", response_status=201, response_body={"token": "ork_live_leaked"},
    )  # fmt: skip
    for caller in (api, member_api):
        response = caller.post("api-tokens", {"name": "legacy"}, headers={"Idempotency-Key": "legacy"})
        body = assert_error(response, 409, contains="before")
        assert "ork_live_leaked" not in str(body)
    assert not ApiToken.objects.filter(name="legacy").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_of_two_principals_with_one_key(live_server):
    """Racing requests (real server, real threads): each principal's key makes exactly one token,
    the rest of its requests are replays or 409 (still in flight), and neither sees the other's."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from ..factories import TenantFactory

    tenant = TenantFactory(id="race-idem")
    plaintexts = {}
    for role in ("admin", "member"):
        user = UserFactory(username=f"{role}@race.example")
        MembershipFactory(user=user, tenant=tenant, role=role)
        plaintexts[role] = ApiTokenFactory(tenant=tenant, created_by=user, role=role).plaintext

    def post(role):
        return role, httpx.post(
            f"{live_server.url}/api/v1/api-tokens", json={"name": "raced"}, timeout=30,
            headers={"Authorization": f"Bearer {plaintexts[role]}", "Idempotency-Key": "same-key"},
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(post, ["admin", "member"] * 4))
    by_role = {role: [r for who, r in results if who == role] for role in plaintexts}
    for role, responses in by_role.items():
        assert {r.status_code for r in responses} <= {201, 409}, [(r.status_code, r.text) for r in responses]
        created = {r.json()["token"] for r in responses if r.status_code == 201}
        assert len(created) == 1, (role, created)
    assert not ({r.json()["token"] for r in by_role["admin"] if r.status_code == 201} & {r.json()["token"] for r in by_role["member"] if r.status_code == 201})
    assert list(ApiToken.objects.filter(name="raced").order_by("role").values_list("role", flat=True)) == ["admin", "member"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_existing_keys_safe(tenant, member_api):
    """Rows recorded before the migration (a completed token create, plaintext and all) become
    principal "" with their response dropped: their key is answered 409, replayed to nobody."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("orchestrio", "0001_initial")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_model = executor.loader.project_state(before).apps.get_model("orchestrio", "IdempotencyKey")
        old_model.objects.create(
            tenant_id=tenant.pk, key="pre-upgrade", fingerprint="0" * 64, method="POST", path="/api/v1/api-tokens",
            status="completed", response_status=201, response_body={"token": "ork_live_plaintext"},
        )  # fmt: skip
    finally:
        # Forward to every app's latest migration, not just `after`: going back to 0001 also
        # unapplied the later migrations that depend on it, and every later test needs them.
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    row = IdempotencyKey.objects.get(key="pre-upgrade")
    assert (row.principal, row.response_body, row.response_body_encrypted) == ("", None, "")
    response = member_api.post("api-tokens", {"name": "x"}, headers={"Idempotency-Key": "pre-upgrade"})
    assert_error(response, 409, contains="before keys were scoped")
