"""The add-ons' API rules with no server started (the job is not run): plan gate, roles,
confirmation, one operation at a time, the URL shown once, cross-tenant 404."""

from __future__ import annotations

import pytest

from addons import engines
from addons.models import AddOn, AddOnOperation
from orchestrio.models import ActivityEvent

from ..helpers import assert_error, assert_validation_error

pytestmark = pytest.mark.skipif(engines.postgres_bin() is None, reason="needs the host's PostgreSQL binaries (apt-get install postgresql)")

RECORD = {
    "addon_id", "instance_id", "engine", "version", "plan", "status", "provider", "host", "port", "username", "database",
    "env_name", "error_message", "credentials_rotated_at", "created_at", "updated_at",
}  # fmt: skip


def create(api, instance_id="web-01", **body):
    return api.post(f"instances/{instance_id}/addons", {"engine": "postgres", **body})


def test_create_answers_201_with_the_url_once(api, running):
    response = create(api)
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == RECORD | {"connection_url"}
    assert body["addon_id"].startswith("addon_") and body["status"] == "provisioning" and body["env_name"] == "DATABASE_URL"
    assert body["connection_url"].startswith("postgres://app:") and body["connection_url"].endswith(f"@127.0.0.1:{body['port']}/app")
    addon = AddOn.objects.get(addon_id=body["addon_id"])
    password = body["connection_url"].split(":")[2].split("@")[0]
    assert password not in addon.password_encrypted and addon.operations.get().kind == "create"
    # Never again in a read, nor in the audit log.
    assert set(api.get(f"addons/{body['addon_id']}").json()) == RECORD
    listed = api.get("instances/web-01/addons").json()
    assert [a["addon_id"] for a in listed["results"]] == [body["addon_id"]] and "connection_url" not in listed["results"][0]
    assert password not in str(list(ActivityEvent.objects.values_list("data", flat=True)))


def test_reveal_is_audited_and_for_admins(api, member_api, running):
    addon_id = create(api).json()["addon_id"]
    revealed = api.post(f"addons/{addon_id}/reveal")
    assert revealed.status_code == 200 and revealed["Cache-Control"] == "no-store"
    assert revealed.json()["connection_url"].startswith("postgres://app:")
    event = ActivityEvent.objects.get(action="addon.reveal")
    assert event.object_id == addon_id and "postgres://" not in str(event.data)
    assert_error(member_api.post(f"addons/{addon_id}/reveal"), 403, contains="admin")
    assert_error(member_api.post(f"addons/{addon_id}/rotate-credentials"), 403)
    assert_error(member_api.delete(f"addons/{addon_id}?confirm={addon_id}"), 403)


def test_a_member_creates_but_does_not_see_the_url(member_api, running):
    response = create(member_api)
    assert response.status_code == 201 and response.json()["connection_url"] is None
    assert "no-store" not in response.get("Cache-Control", "")


def test_starter_plan_is_402(api, tenant, running):
    tenant.plan_id = "starter"
    tenant.save(update_fields=["plan_id"])
    body = assert_error(create(api), 402, contains="add-ons")
    assert body["limit"] == "addons_feature" and body["plan"] == "starter"


def test_the_plan_counts_live_addons(api, tenant, running):
    from orchestrio.models import SubscriptionPlan

    SubscriptionPlan.objects.filter(pk="pro").update(max_addons=1)
    assert create(api).status_code == 201
    body = assert_error(create(api, engine="redis"), 402)
    assert body["limit"] == "addons" and body["plan"] == "pro"


def test_one_operation_at_a_time_is_409(api, running):
    addon_id = create(api).json()["addon_id"]
    body = assert_error(api.delete(f"addons/{addon_id}?confirm={addon_id}"), 409, contains="one runs at a time")
    assert body["operation"]["kind"] == "create" and body["operation"]["status"] == "queued"
    AddOn.objects.filter(addon_id=addon_id).update(status="available")
    AddOnOperation.objects.update(status="succeeded")
    assert api.post(f"addons/{addon_id}/rotate-credentials").status_code == 202
    assert_error(api.post(f"addons/{addon_id}/rotate-credentials"), 409, contains="rotate_credentials")


def test_destroy_needs_the_id_repeated(api, running):
    addon_id = create(api).json()["addon_id"]
    AddOnOperation.objects.update(status="succeeded")
    assert_error(api.delete(f"addons/{addon_id}"), 400, contains=f"?confirm={addon_id}")
    assert_error(api.delete(f"addons/{addon_id}?confirm=nope"), 400)
    response = api.delete(f"addons/{addon_id}?confirm={addon_id}")
    assert response.status_code == 202 and response.json()["status"] == "deleting"


def test_rotate_needs_an_available_addon(api, running):
    addon_id = create(api).json()["addon_id"]
    AddOnOperation.objects.update(status="failed")
    AddOn.objects.update(status="error")
    assert_error(api.post(f"addons/{addon_id}/rotate-credentials"), 400, contains="not available")


@pytest.mark.parametrize(("body", "loc"), [({"engine": "mysql"}, ("body", "engine")), ({"engine": "postgres", "plan": "huge"}, ("body", "plan")), ({"engine": "postgres", "version": "9"}, ("body", "version"))])
def test_validation(api, running, body, loc):
    assert_validation_error(api.post("instances/web-01/addons", body), loc)


def test_not_on_a_destroying_instance(api, make_instance):
    make_instance(instance_id="going-1", state="destroying")
    assert_error(create(api, "going-1"), 400, contains="destroying")


def test_missing_binaries_are_503_with_what_to_install(api, running, settings):
    settings.ADDONS_POSTGRES_BIN = "/nonexistent"
    assert_error(create(api), 503, contains="apt-get install postgresql")


def test_another_tenant_gets_404(api, other_api, running):
    addon_id = create(api).json()["addon_id"]
    for response in (
        other_api.get(f"addons/{addon_id}"), other_api.post(f"addons/{addon_id}/reveal"), other_api.post(f"addons/{addon_id}/rotate-credentials"),
        other_api.delete(f"addons/{addon_id}?confirm={addon_id}"), other_api.get("instances/web-01/addons"), create(other_api),
    ):  # fmt: skip
        assert_error(response, 404)


def test_destroying_the_instance_destroys_its_addons(api, running):
    addon_id = create(api).json()["addon_id"]
    AddOnOperation.objects.update(status="succeeded")
    AddOn.objects.update(status="available")
    assert api.delete("instances/web-01").status_code == 202
    addon = AddOn.objects.get(addon_id=addon_id)
    assert addon.status == "deleting" and addon.operations.filter(kind="destroy", status="queued").exists()


def test_the_reconciler_destroys_addons_left_on_a_destroyed_instance(api, running):
    from django.utils import timezone

    from addons.services import addons_reconcile

    addon_id = create(api).json()["addon_id"]
    AddOnOperation.objects.update(status="failed")
    AddOn.objects.update(status="error")
    type(running).objects.filter(pk=running.pk).update(destroyed_at=timezone.now(), state="destroyed")
    addons_reconcile({})
    addon = AddOn.objects.get(addon_id=addon_id)
    assert addon.status == "deleting" and addon.operations.filter(kind="destroy", status="queued").exists()
