"""Fleet requests (issue 18, item 6): many instances created or returned in one call."""

from __future__ import annotations

import pytest

from fleet.models import FleetRequest
from instances.models import Blueprint, Instance, Operation

from ..factories import ApiTokenFactory, InstanceFactory
from ..helpers import Api, assert_error, assert_validation_error, run_jobs


def _statuses(api, **query):
    return [(r["request_id"], r["status"]) for r in api.get("requests", **query).json()["results"]]


def test_acquire_creates_count_instances_each_with_its_operation(api, tenant):
    response = api.post("requests", {"blueprint_name": "OpenClaw", "count": 3, "instance_id_prefix": "batch", "labels": {"team": "ml"}})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["request_id"].startswith("req-") and body["kind"] == "acquire" and body["status"] == "pending"
    assert body["count"] == 3 and body["succeeded"] == 0 and body["failed"] == 0
    assert [i["instance_id"] for i in body["instances"]] == ["batch-1", "batch-2", "batch-3"]
    assert all(i["operation"]["kind"] == "create" and i["operation"]["status"] == "queued" for i in body["instances"])
    instances = Instance.objects.filter(tenant=tenant, instance_id__startswith="batch-")
    assert instances.count() == 3
    assert all(i.labels == {"team": "ml", "fleet-request": body["request_id"]} for i in instances)
    listed = api.get("instances", label=f"fleet-request:{body['request_id']}").json()
    assert listed["count"] == 3
    assert api.get(f"requests/{body['request_id']}").json() == body
    assert body["fleet_call"] is None  # a RunInstances blueprint: each instance launches on its own
    assert api.get("activity", action="fleet.request").status_code == 200


def test_the_default_prefix_is_the_request_id(api):
    body = api.post("requests", {"count": 1}).json()
    assert body["instances"][0]["instance_id"] == f"{body['request_id']}-1" and body["blueprint_name"] == "OpenClaw"


@pytest.mark.parametrize("count", [0, -1, 101, "3", True, None, 2.5])
def test_count_is_bounded_and_typed(api, count):
    assert_validation_error(api.post("requests", {"count": count}), ("body", "count"))
    assert not Instance.objects.exists() and not FleetRequest.objects.exists()


def test_bad_input_is_422_naming_the_field(api):
    assert_validation_error(api.post("requests", {"count": 2, "instance_id_prefix": "Bad_Prefix"}), ("body", "instance_id_prefix"))
    assert_validation_error(api.post("requests", {"count": 2, "instance_id_prefix": "x" * 60}), ("body", "instance_id_prefix"))
    assert_validation_error(api.post("requests", {"count": 2, "blueprint_name": "NoSuchBlueprint"}), ("body", "blueprint_name"))
    assert not Instance.objects.exists() and not FleetRequest.objects.exists()


def test_a_request_beyond_the_plan_is_402_before_anything_is_created(api, tenant):
    InstanceFactory(tenant=tenant, instance_id="already-1")  # running: 9 of the pro plan's 10 left
    body = assert_error(api.post("requests", {"count": 10}), 402, contains="this request needs 10 and 9 are left")
    assert body["limit"] == "running_instances" and body["plan"] == "pro"
    for n in range(9):
        InstanceFactory(tenant=tenant, instance_id=f"idle-{n}", state="stopped")  # 10 of 20 live
    body = assert_error(api.post("requests", {"count": 11}), 402)
    assert body["limit"] in {"instances", "running_instances"}
    assert Instance.objects.filter(tenant=tenant).count() == 10 and not FleetRequest.objects.exists()
    assert not Operation.objects.exists()


def test_a_taken_id_refuses_the_whole_request(api, other_api):
    InstanceFactory(tenant=other_api.tenant, instance_id="shared-2")
    assert_error(api.post("requests", {"count": 3, "instance_id_prefix": "shared"}), 409, contains="shared-2")
    assert not Instance.objects.filter(instance_id__in=["shared-1", "shared-3"]).exists() and not FleetRequest.objects.exists()


def test_status_is_derived_from_the_operations(api):
    body = api.post("requests", {"count": 3, "instance_id_prefix": "st"}).json()
    rid = body["request_id"]
    ops = [Operation.objects.get(instance__instance_id=f"st-{n}") for n in (1, 2, 3)]
    Operation.objects.filter(pk=ops[0].pk).update(status="running")
    assert api.get(f"requests/{rid}").json()["status"] == "in_progress"
    Operation.objects.filter(pk=ops[0].pk).update(status="succeeded")
    Operation.objects.filter(pk=ops[1].pk).update(status="failed", error_code="provider_capacity", error_message="no t3.small capacity")
    assert api.get(f"requests/{rid}").json()["status"] == "in_progress"
    Operation.objects.filter(pk=ops[2].pk).update(status="succeeded")
    detail = api.get(f"requests/{rid}").json()
    assert (detail["status"], detail["succeeded"], detail["failed"]) == ("partial", 2, 1)
    assert [i["reason"] for i in detail["instances"]] == [None, "provider_capacity: no t3.small capacity", None]
    assert _statuses(api, status="partial") == [(rid, "partial")]
    assert _statuses(api, status="complete") == []
    assert_validation_error(api.get("requests", status="done"), ("query", "status"))


def test_a_failing_blueprint_fails_every_instance_with_its_reason(api, tenant):
    Blueprint.objects.create(tenant=tenant, name="Broken", command=["/bin/sh", "-c", "echo boom >&2; exit 7"])
    rid = api.post("requests", {"blueprint_name": "Broken", "count": 2, "instance_id_prefix": "broken"}).json()["request_id"]
    run_jobs()
    detail = api.get(f"requests/{rid}").json()
    assert detail["status"] == "failed" and detail["failed"] == 2
    assert all(i["state"] == "error" and "exited at start (code 7)" in i["reason"] for i in detail["instances"])


@pytest.mark.slow
def test_acquire_then_return_with_real_instances(api):
    rid = api.post("requests", {"count": 2, "instance_id_prefix": "real"}).json()["request_id"]
    run_jobs()
    detail = api.get(f"requests/{rid}").json()
    assert detail["status"] == "complete", detail
    assert [i["state"] for i in detail["instances"]] == ["running", "running"]

    returned = api.post(f"requests/{rid}/return")
    assert returned.status_code == 202, returned.content
    back = returned.json()
    assert back["kind"] == "return" and back["returns"] == rid and back["status"] == "pending"
    assert [i["operation"]["kind"] for i in back["instances"]] == ["destroy", "destroy"]
    run_jobs()
    assert api.get(f"requests/{back['request_id']}").json()["status"] == "complete"
    assert not Instance.objects.filter(instance_id__startswith="real-", destroyed_at__isnull=True).exists()
    assert _statuses(api, kind="return") == [(back["request_id"], "complete")]
    # Nothing left to return: a clear 422, no empty request.
    assert_validation_error(api.post(f"requests/{rid}/return"), ("body", "instance_ids"))


def test_return_named_instances(api, tenant):
    InstanceFactory(tenant=tenant, instance_id="keep-1")
    InstanceFactory(tenant=tenant, instance_id="drop-1")
    InstanceFactory(tenant=tenant, instance_id="drop-2", state="stopped")
    response = api.post("requests/return", {"instance_ids": ["drop-1", "drop-2"]})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["kind"] == "return" and body["returns"] is None and body["count"] == 2
    assert [(i["instance_id"], i["state"]) for i in body["instances"]] == [("drop-1", "destroying"), ("drop-2", "destroying")]
    assert Instance.objects.get(instance_id="keep-1").state == "running"
    # Again: each is already being destroyed, nothing new to do, recorded as such.
    again = api.post("requests/return", {"instance_ids": ["drop-1"]}).json()
    assert again["instances"][0]["operation"] is None and again["instances"][0]["reason"] == "already destroying"
    assert again["status"] == "complete"


def test_return_refuses_unknown_duplicate_and_busy_instances_doing_nothing(api, tenant):
    InstanceFactory(tenant=tenant, instance_id="ok-1")
    busy = InstanceFactory(tenant=tenant, instance_id="busy-1")
    Operation.objects.create(instance=busy, tenant=tenant, kind="restart", status="running", requested_by="x", requested_by_type="user")
    assert_error(api.post("requests/return", {"instance_ids": ["ok-1", "ghost"]}), 404, contains="ghost")
    assert_validation_error(api.post("requests/return", {"instance_ids": ["ok-1", "ok-1"]}), ("body", "instance_ids"))
    assert_validation_error(api.post("requests/return", {"instance_ids": []}), ("body", "instance_ids"))
    assert_error(api.post("requests/return", {"instance_ids": ["ok-1", "busy-1"]}), 409, contains="restart")
    assert Instance.objects.get(instance_id="ok-1").state == "running" and not FleetRequest.objects.exists()


def test_another_tenant_gets_404_and_changes_nothing(api, other_api, tenant):
    rid = api.post("requests", {"count": 1, "instance_id_prefix": "mine"}).json()["request_id"]
    assert other_api.get(f"requests/{rid}").status_code == 404
    assert other_api.post(f"requests/{rid}/return").status_code == 404
    assert_error(other_api.post("requests/return", {"instance_ids": ["mine-1"]}), 404, contains="mine-1")
    assert other_api.get("requests").json()["count"] == 0
    assert Instance.objects.get(instance_id="mine-1").state == "pending"


def test_roles_and_scoped_tokens(api, tenant, owner, member_api):
    rid = api.post("requests", {"count": 1, "instance_id_prefix": "rl"}).json()["request_id"]
    assert member_api.get(f"requests/{rid}").status_code == 200
    assert member_api.post(f"requests/{rid}/return").status_code == 403  # returning destroys: the destroy capability
    scoped = Api(ApiTokenFactory(tenant=tenant, created_by=owner, role="owner", instance_id="rl-1").plaintext, tenant=tenant)
    assert scoped.post("requests", {"count": 1}).status_code == 403


def test_idempotent_retry_makes_one_request(api):
    first = api.post("requests", {"count": 2, "instance_id_prefix": "idem"}, headers={"Idempotency-Key": "batch-7"})
    second = api.post("requests", {"count": 2, "instance_id_prefix": "idem"}, headers={"Idempotency-Key": "batch-7"})
    assert first.json()["request_id"] == second.json()["request_id"]
    assert FleetRequest.objects.count() == 1 and Instance.objects.filter(instance_id__startswith="idem-").count() == 2


def test_the_list_and_a_request_read_in_constant_queries(api, django_assert_max_num_queries):
    api.post("requests", {"count": 2})
    with django_assert_max_num_queries(8) as few:
        api.get("requests")
    baseline = len(few.captured_queries)  # now: each request the test client makes resets the log
    for _ in range(4):
        api.post("requests", {"count": 1})
    with django_assert_max_num_queries(baseline):
        assert api.get("requests").json()["count"] == 5
    rid = api.post("requests", {"count": 1}).json()["request_id"]
    with django_assert_max_num_queries(8) as one:
        api.get(f"requests/{rid}")
    baseline = len(one.captured_queries)
    big = api.post("requests", {"count": 3}).json()["request_id"]  # 10 running: the pro plan's all
    with django_assert_max_num_queries(baseline):
        assert len(api.get(f"requests/{big}").json()["instances"]) == 3
