from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from orchestrio.models import ActivityEvent

from ..helpers import assert_validation_error


def test_activity_lists_the_tenants_audit_log(api, other_api):
    api.post("api-tokens", {"name": "one"})
    other_api.post("api-tokens", {"name": "theirs"})
    body = api.get("activity").json()
    actions = [row["action"] for row in body["results"]]
    assert "api_token.create" in actions
    assert all("theirs" not in str(row["data"]) for row in body["results"])
    row = body["results"][0]
    assert set(row) == {"id", "actor", "action", "object_type", "object_id", "ip", "data", "created_at"}
    assert row["actor"]["type"] == "token" and row["ip"] == "127.0.0.1"


def test_activity_filters(api):
    created = api.post("api-tokens", {"name": "one"}).json()
    api.delete(f"api-tokens/{created['id']}")
    body = api.get("activity", action="api_token.revoke").json()
    assert body["count"] == 1 and body["results"][0]["object_id"] == str(created["id"])
    assert_validation_error(api.get("activity", actor_type="robot"), ("query", "actor_type"))
    assert_validation_error(api.get("activity", since="yesterday"), ("query", "since"))


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_superuser("support@orchestrio.example", "support@orchestrio.example", "pw-for-staff-123")
    client.force_login(user)
    return client


def test_admin_token_pages_never_show_the_hash(staff_client, token):
    page = staff_client.get(f"/admin/orchestrio/apitoken/{token.pk}/change/")
    assert page.status_code == 200
    assert token.token_hash.encode() not in page.content
    assert b"token_hash" not in page.content
    assert staff_client.get("/admin/orchestrio/apitoken/add/").status_code == 403


def test_admin_revoke_action_goes_through_the_service_and_is_audited(staff_client, token):
    response = staff_client.post(
        "/admin/orchestrio/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]}, follow=True
    )
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    event = ActivityEvent.objects.get(action="api_token.revoke", object_id=str(token.pk))
    assert event.actor_type == "staff" and event.actor_label == "support@orchestrio.example"


def test_admin_changes_are_audited_as_staff(staff_client, tenant):
    response = staff_client.post(
        f"/admin/orchestrio/tenant/{tenant.pk}/change/",
        {
            "name": "Acme Renamed",
            "plan": "team",  # read-only on the change form: the plan changes through its action
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    tenant.refresh_from_db()
    assert tenant.name == "Acme Renamed" and tenant.plan_id == "pro"
    event = ActivityEvent.objects.get(action="admin.tenant.change", object_id=tenant.pk)
    assert event.actor_type == "staff"
    assert event.data["fields"] == ["name"]


def test_admin_lists_with_search_and_filters(staff_client, tenant, token):
    for url in (
        "/admin/orchestrio/tenant/?q=acme",
        "/admin/orchestrio/apitoken/?q=" + token.prefix,
        "/admin/orchestrio/activityevent/?actor_type=staff",
        "/admin/orchestrio/subscriptionplan/",
        "/admin/instances/region/?provider=aws",
        "/admin/instances/instanceplan/",
        "/admin/auth/user/?q=example",
    ):
        assert staff_client.get(url).status_code == 200, url


def test_activity_is_read_only_in_admin(staff_client, api):
    api.post("api-tokens", {"name": "x"})
    event = ActivityEvent.objects.first()
    assert staff_client.get(f"/admin/orchestrio/activityevent/{event.pk}/delete/").status_code == 403
    assert staff_client.get("/admin/orchestrio/activityevent/add/").status_code == 403


def test_non_staff_cannot_use_admin(client, tenant, owner):
    client.force_login(owner)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login" in response["Location"]
