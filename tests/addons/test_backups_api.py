"""The backups' API rules with no server started (the jobs are not run): the plan gate (402),
the daily quota (402), one operation at a time (409), roles, validation."""

from __future__ import annotations

import pytest

from addons import engines
from addons.models import AddOn, AddOnOperation
from orchestrio.models import SubscriptionPlan, Tenant

from ..helpers import assert_error, assert_validation_error

pytestmark = pytest.mark.skipif(engines.postgres_bin() is None, reason="needs the host's PostgreSQL binaries (apt-get install postgresql)")


@pytest.fixture
def addon_id(api, running):
    created = api.post("instances/web-01/addons", {"engine": "postgres"})
    assert created.status_code == 201, created.content
    AddOn.objects.update(status="available")
    AddOnOperation.objects.update(status="succeeded")
    return created.json()["addon_id"]


def test_a_plan_without_backups_answers_402(api, addon_id):
    Tenant.objects.update(plan=SubscriptionPlan.objects.get(pk="starter"))  # a downgrade: the add-on stays
    body = assert_error(api.post(f"addons/{addon_id}/backups"), 402, contains="add-on backups")
    assert body["limit"] == "addon_backups_feature" and body["plan"] == "starter"
    assert assert_error(api.post(f"addons/{addon_id}/auto-backup", {"enabled": True}), 402)["limit"] == "addon_backups_feature"
    info = api.get(f"addons/{addon_id}/backup-info").json()
    assert info["retention_days"] == 0 and info["daily_quota"] == 0


def test_the_daily_quota_answers_402_and_one_operation_runs_at_a_time(api, addon_id):
    SubscriptionPlan.objects.filter(pk="pro").update(addon_backups_per_day=1)
    first = api.post(f"addons/{addon_id}/backups")
    assert first.status_code == 202, first.content
    # The first is still queued: 409 for a second backup, a restore, a destroy.
    busy = assert_error(api.post(f"addons/{addon_id}/backups"), 409, contains="one runs at a time")
    assert busy["operation"]["kind"] == "backup"
    assert_error(api.post(f"addons/{addon_id}/restore", {"backup_id": first.json()["backup_id"]}), 409)
    assert_error(api.delete(f"addons/{addon_id}/backups/{first.json()['backup_id']}"), 409, contains="in use")
    AddOnOperation.objects.update(status="succeeded")
    AddOn.objects.update(status="available")  # as the job ends it
    body = assert_error(api.post(f"addons/{addon_id}/backups"), 402, contains="a day")
    assert body["limit"] == "addon_backups" and body["plan"] == "pro"
    # A pending (never finished) backup cannot be restored or downloaded.
    assert_error(api.post(f"addons/{addon_id}/restore", {"backup_id": first.json()["backup_id"]}), 400, contains="pending")
    assert_error(api.get(f"addons/{addon_id}/backups/{first.json()['backup_id']}/download"), 400, contains="pending")
    assert_error(api.post(f"addons/{addon_id}/restore", {"backup_id": "bak_nope"}), 404)


def test_validation_and_roles(api, addon_id, member_api):
    assert_validation_error(api.post(f"addons/{addon_id}/restore", {}), ("body", "backup_id"))
    assert_validation_error(api.post(f"addons/{addon_id}/auto-backup", {"enabled": "maybe"}), ("body", "enabled"))
    backup_id = api.post(f"addons/{addon_id}/backups").json()["backup_id"]
    AddOnOperation.objects.update(status="succeeded")
    AddOn.objects.update(status="available")  # as the job ends it
    # Members read and take backups; restoring, deleting and downloading are admins'.
    assert member_api.get(f"addons/{addon_id}/backups").status_code == 200
    assert_error(member_api.post(f"addons/{addon_id}/restore", {"backup_id": backup_id}), 403)
    assert_error(member_api.delete(f"addons/{addon_id}/backups/{backup_id}"), 403)
    assert_error(member_api.get(f"addons/{addon_id}/backups/{backup_id}/download"), 403)


def test_an_idempotency_key_replays_the_backup_not_a_second_one(api, addon_id):
    from addons.models import AddOnBackup

    first = api.post(f"addons/{addon_id}/backups", headers={"Idempotency-Key": "nightly-1"})
    again = api.post(f"addons/{addon_id}/backups", headers={"Idempotency-Key": "nightly-1"})
    assert first.status_code == again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and AddOnBackup.objects.count() == 1
