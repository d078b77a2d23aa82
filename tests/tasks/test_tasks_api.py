"""Dispatch rules, validation, idempotency and isolation (no real processes needed)."""

from __future__ import annotations

import pytest

from orchestrio.models import SubscriptionPlan
from instances.models import Blueprint
from tasks.models import Task

from ..factories import InstanceFactory
from ..helpers import Api, assert_error, assert_validation_error
from ..isolation import TenantIsolationContract

GOOD = {"operation_code": "backup_db", "script_path": "/opt/openclaw/scripts/backup.sh", "script_args": {"compress": True}, "timeout_seconds": 300}


def test_dispatch_answers_202_with_a_queued_task(api, running):
    response = api.post("instances/web-01/tasks", GOOD)
    assert response.status_code == 202
    body = response.json()
    assert body["task_id"].startswith("tsk_") and body["status"] == "queued" and body["instance_id"] == "web-01"
    assert body["operation_code"] == "backup_db" and body["timeout_seconds"] == 300
    assert set(body) == {
        "task_id", "instance_id", "operation_code", "script_path", "timeout_seconds", "idempotency_key", "status",
        "exit_code", "stdout", "stderr", "error_message", "requested_by", "created_at", "started_at", "finished_at",
    }  # fmt: skip
    assert "script_args" not in body  # values may be secrets


def test_second_task_while_one_is_active_is_409(api, running):
    first = api.post("instances/web-01/tasks", GOOD).json()
    body = assert_error(api.post("instances/web-01/tasks", {**GOOD, "operation_code": "other"}), 409, contains="one runs at a time")
    assert body["operation"]["task_id"] == first["task_id"]


def test_idempotency_key_returns_the_existing_task(api, running):
    first = api.post("instances/web-01/tasks", {**GOOD, "idempotency_key": "backup-2026-11-22"})
    again = api.post("instances/web-01/tasks", {**GOOD, "idempotency_key": "backup-2026-11-22"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"]
    assert Task.objects.count() == 1


def test_idempotency_key_is_per_instance(api, running, make_instance):
    make_instance(instance_id="web-02", state="running")
    assert api.post("instances/web-01/tasks", {**GOOD, "idempotency_key": "k"}).status_code == 202
    assert api.post("instances/web-02/tasks", {**GOOD, "idempotency_key": "k"}).status_code == 202


@pytest.mark.parametrize("state", ["stopped", "suspended", "pending", "error", "starting"])
def test_not_running_is_400(api, make_instance, state):
    make_instance(instance_id="idle-1", state=state)
    assert_error(api.post("instances/idle-1/tasks", GOOD), 400, contains=f"it is {state}, not running")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({**GOOD, "operation_code": ""}, ("body", "operation_code")),
        ({**GOOD, "operation_code": "has spaces"}, ("body", "operation_code")),
        ({k: v for k, v in GOOD.items() if k != "script_path"}, ("body", "script_path")),
        ({**GOOD, "script_path": "relative/script.sh"}, ("body", "script_path")),
        ({**GOOD, "script_path": "/opt/openclaw/scripts/../../etc/shadow"}, ("body", "script_path")),
        ({**GOOD, "script_path": "/opt/openclaw//scripts/backup.sh"}, ("body", "script_path")),
        ({**GOOD, "script_path": "/opt/openclaw/scripts/./backup.sh"}, ("body", "script_path")),
        ({**GOOD, "script_path": "/opt/openclaw/scripts/x\u0000.sh"}, ("body", "script_path")),
        ({**GOOD, "script_path": "/etc/passwd"}, ("body", "script_path")),  # outside the blueprint's task roots
        ({**GOOD, "script_args": ["a"]}, ("body", "script_args")),
        ({**GOOD, "script_args": {"bad key": 1}}, ("body", "script_args", "bad key")),
        ({**GOOD, "script_args": {"--flag": 1}}, ("body", "script_args", "--flag")),
        ({**GOOD, "script_args": {"big": "x" * 20000}}, ("body", "script_args")),
        ({**GOOD, "timeout_seconds": 0}, ("body", "timeout_seconds")),
        ({**GOOD, "timeout_seconds": 3601}, ("body", "timeout_seconds")),
        ({**GOOD, "timeout_seconds": "soon"}, ("body", "timeout_seconds")),
        ({**GOOD, "idempotency_key": ""}, ("body", "idempotency_key")),
    ],
)
def test_validation(api, running, body, loc):
    assert_validation_error(api.post("instances/web-01/tasks", body), loc)
    assert not Task.objects.exists()


def test_every_broken_rule_is_reported_in_one_422(api, running):
    body = {**GOOD, "script_path": "/etc/passwd", "script_args": {"bad key": 1, "ok": 2, "--flag": 3}}
    detail = assert_validation_error(
        api.post("instances/web-01/tasks", body), ("body", "script_path"), ("body", "script_args", "bad key"), ("body", "script_args", "--flag")
    )
    assert len(detail) == 3 and not Task.objects.exists()


def test_path_traversal_is_refused_even_without_task_roots(api, tenant, make_instance):
    Blueprint.objects.create(tenant=tenant, name="Open", task_roots=[])
    make_instance(instance_id="open-1", state="running", blueprint=Blueprint.objects.get(name="Open"))
    detail = assert_validation_error(api.post("instances/open-1/tasks", {**GOOD, "script_path": "/srv/../etc/passwd"}), ("body", "script_path"))
    assert detail[0]["type"] == "path_traversal"
    assert api.post("instances/open-1/tasks", {**GOOD, "script_path": "/srv/any/where.sh"}).status_code == 202


def test_execution_quota_is_402(api, tenant, running):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(executions_per_month=1)
    api.post("instances/web-01/tasks", GOOD)
    Task.objects.update(status="succeeded")
    body = assert_error(api.post("instances/web-01/tasks", GOOD), 402, contains="executions")
    assert body["limit"] == "executions"


def test_list_filters_and_get(api, running):
    for code in ("a", "b", "a"):
        api.post("instances/web-01/tasks", {**GOOD, "operation_code": code})
        Task.objects.filter(status="queued").update(status="succeeded")
    assert api.get("instances/web-01/tasks").json()["count"] == 3
    assert api.get("instances/web-01/tasks", operation_code="a").json()["count"] == 2
    assert api.get("instances/web-01/tasks", status="failed").json()["count"] == 0
    assert api.get("instances/web-01/tasks", limit=1).json()["next"]
    assert_validation_error(api.get("instances/web-01/tasks", status="done"), ("query", "status"))
    task_id = api.get("instances/web-01/tasks").json()["results"][0]["task_id"]
    assert api.get(f"tasks/{task_id}").json()["task_id"] == task_id
    assert_error(api.get("tasks/tsk_nope"), 404)
    assert_error(api.get("instances/nope-1/tasks"), 404)


def test_cancel_a_queued_task_is_immediate(api, running):
    task = api.post("instances/web-01/tasks", GOOD).json()
    response = api.post(f"tasks/{task['task_id']}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert_error(api.post(f"tasks/{task['task_id']}/cancel"), 400)
    assert api.post("instances/web-01/tasks", GOOD).status_code == 202  # the instance is free again


def test_args_values_never_reach_the_audit_log(api, running):
    from orchestrio.models import ActivityEvent

    api.post("instances/web-01/tasks", {**GOOD, "script_args": {"password": "hunter2-secret"}})
    event = ActivityEvent.objects.get(action="task.dispatch")
    assert event.data["arg_names"] == ["password"]
    assert "hunter2-secret" not in str(ActivityEvent.objects.values_list("data", flat=True))
    from instances.models import LogLine

    assert "hunter2-secret" not in " ".join(LogLine.objects.values_list("message", flat=True))


def test_scoped_token_sees_only_its_instance_tasks(api, make_instance):
    make_instance(instance_id="mine-1", state="running")
    make_instance(instance_id="else-1", state="running")
    other = api.post("instances/else-1/tasks", GOOD).json()
    scoped = Api(api.post("api-tokens", {"name": "s", "instance_id": "mine-1"}).json()["token"])
    assert scoped.post("instances/mine-1/tasks", GOOD).status_code == 202
    assert_error(scoped.get(f"tasks/{other['task_id']}"), 404)
    assert_error(scoped.post("instances/else-1/tasks", GOOD), 404)


class TestTaskIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "tasks/{task_id}", None),
        ("POST", "tasks/{task_id}/cancel", None),
        ("GET", "instances/{instance_id}/tasks", None),
        ("POST", "instances/{instance_id}/tasks", GOOD),
    ]

    def make_object(self, api):
        InstanceFactory(instance_id="secret-host", tenant=api.tenant, state="running")
        task = api.post("instances/secret-host/tasks", GOOD).json()
        return {"task_id": task["task_id"], "instance_id": "secret-host"}
