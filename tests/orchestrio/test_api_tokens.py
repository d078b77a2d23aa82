from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrio.models import SubscriptionPlan
from orchestrio.models import ActivityEvent, ApiToken

from ..factories import ApiTokenFactory
from ..helpers import Api, assert_error, assert_validation_error
from ..isolation import TenantIsolationContract


def test_create_returns_plaintext_once(api):
    response = api.post("api-tokens", {"name": "deploy bot", "mode": "test", "expires_in_days": 30})
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("ork_test_")
    assert body["prefix"] == body["token"][:12]
    assert body["mode"] == "test"
    assert body["instance_id"] is None
    expires = body["expires_at"]
    assert expires.endswith("Z")
    # The new token works...
    assert Api(body["token"]).get("tenant").status_code == 200
    # ...and is never shown again: not in the list, not in the detail.
    listed = api.get("api-tokens").json()
    assert listed["count"] == 2
    assert all("token" not in row and "token_hash" not in row for row in listed["results"])
    detail = api.get(f"api-tokens/{body['id']}").json()
    assert "token" not in detail and "token_hash" not in detail


def test_expiry_choices(api):
    for days in (30, 90, 180, 365):
        body = api.post("api-tokens", {"name": f"t{days}", "expires_in_days": days}).json()
        expires = ApiToken.objects.get(pk=body["id"]).expires_at
        assert abs((expires - timezone.now()) - timedelta(days=days)) < timedelta(minutes=1)
    never = api.post("api-tokens", {"name": "forever", "expires_in_days": None}).json()
    assert never["expires_at"] is None


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ("body", "name")),
        ({"name": ""}, ("body", "name")),
        ({"name": "x" * 101}, ("body", "name")),
        ({"name": "a", "mode": "prod"}, ("body", "mode")),
        ({"name": "a", "expires_in_days": 7}, ("body", "expires_in_days")),
        ({"name": "a", "expires_in_days": "soon"}, ("body", "expires_in_days")),
        ({"name": "a", "instance_id": "Bad_Id"}, ("body", "instance_id")),
        ({"name": "a", "instance_id": "no-such-instance"}, ("body", "instance_id")),
    ],
)
def test_create_validation(api, body, loc):
    assert_validation_error(api.post("api-tokens", body), loc)


def test_token_limit_is_402(api, tenant):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_tokens=2)
    assert api.post("api-tokens", {"name": "second"}).status_code == 201
    body = assert_error(api.post("api-tokens", {"name": "third"}), 402, contains="tokens")
    assert body["limit"] == "tokens"
    assert body["plan"] == tenant.plan_id


def test_revoked_and_expired_tokens_do_not_count_against_the_limit(api, tenant, owner):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_tokens=2)
    ApiTokenFactory(tenant=tenant, created_by=owner, revoked_at=timezone.now())
    ApiTokenFactory(tenant=tenant, created_by=owner, expires_at=timezone.now() - timedelta(days=1))
    assert api.post("api-tokens", {"name": "second"}).status_code == 201


def test_member_may_revoke_only_own_tokens(api, member_api, token):
    assert_error(member_api.delete(f"api-tokens/{token.pk}"), 403, contains="needs the owner or admin role; you are member")
    own = member_api.post("api-tokens", {"name": "mine"}).json()
    assert own["role"] == "member"
    assert member_api.delete(f"api-tokens/{own['id']}").status_code == 204


def test_a_token_without_a_creator_is_nobody_s_own(api, member_api, tenant):
    """A token whose creator's account was deleted (created_by NULL) is someone else's token for
    every caller: an API token acting for a deleted user (also NULL) must not count as its owner."""
    orphan = ApiTokenFactory(tenant=tenant, created_by=None, role="admin")
    orphaned_member = Api(ApiTokenFactory(tenant=tenant, created_by=None, role="member").plaintext)
    assert_error(orphaned_member.delete(f"api-tokens/{orphan.pk}"), 403)
    assert_error(member_api.delete(f"api-tokens/{orphan.pk}"), 403)
    assert api.delete(f"api-tokens/{orphan.pk}").status_code == 204


def test_token_inherits_the_creators_role(member_api):
    body = member_api.post("api-tokens", {"name": "m"}).json()
    assert body["role"] == "member"


def test_create_and_revoke_are_audited(api, token):
    created = api.post("api-tokens", {"name": "audited"}).json()
    api.delete(f"api-tokens/{created['id']}")
    events = list(ActivityEvent.objects.filter(object_type="api_token", object_id=str(created["id"])).order_by("id"))
    assert [e.action for e in events] == ["api_token.create", "api_token.revoke"]
    assert events[0].actor_type == "token" and events[0].actor_label == token.prefix
    assert created["token"] not in str(events[0].data)


def test_list_filters_and_pagination(api, tenant, owner):
    for i in range(5):
        ApiTokenFactory(tenant=tenant, created_by=owner, mode="test")
    body = api.get("api-tokens", limit=2, mode="test").json()
    assert body["count"] == 5 and len(body["results"]) == 2
    assert "offset=2" in body["next"] and body["previous"] is None


def test_unknown_token_id_is_404(api):
    assert_error(api.get("api-tokens/999999"), 404)
    assert_error(api.get("api-tokens/not-a-number"), 404)
    assert_error(api.delete("api-tokens/999999"), 404)


class TestApiTokenIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "api-tokens/{id}", None),
        ("DELETE", "api-tokens/{id}", None),
    ]

    def make_object(self, api):
        return {"id": api.post("api-tokens", {"name": "secret"}).json()["id"]}

    def test_other_tenants_list_is_empty_of_ours(self, api, other_api, owned):
        ids = [row["id"] for row in other_api.get("api-tokens").json()["results"]]
        assert owned["id"] not in ids
