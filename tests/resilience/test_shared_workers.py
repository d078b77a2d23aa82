"""Issue 14, finding 10, deployed as the Procfile deploys it: one rqworker and the scheduler. A
tenant's long tasks are handed to the task poll sweep after JOB_INLINE_WAIT_SECONDS, so the one
worker stays free for another tenant's task, and the sweep (run by that same worker) still
follows the long ones to their end."""

from __future__ import annotations

import os

import pytest

from instances.models import Instance
from tasks.models import Task

pytestmark = [pytest.mark.slow]


def _script(instance_id: str, name: str, body: str) -> str:
    instance = Instance.objects.get(instance_id=instance_id, destroyed_at__isnull=True)
    path = f"/opt/orchestrio/scripts/{name}"
    full = os.path.join(instance.provider_data["dir"], "root", path.lstrip("/"))
    with open(full, "w") as fh:
        fh.write(body)
    os.chmod(full, 0o755)
    return path


def test_one_worker_serves_another_tenant_while_long_tasks_run(stack, client_for):
    s = stack(JOB_INLINE_WAIT_SECONDS="1", TASK_POLL_SWEEP_SECONDS="1").start(workers=1)
    a = client_for(s.base, "tenant-a")
    b = client_for(s.base, "tenant-b")
    for client, instance_id in ((a, "share-a1"), (a, "share-a2"), (b, "share-b1")):
        assert client.post("instances", json={"instance_id": instance_id}).status_code == 201
    for client, instance_id in ((a, "share-a1"), (a, "share-a2"), (b, "share-b1")):
        s.wait_until(lambda: client.get(f"instances/{instance_id}").json()["state"] == "running", what=f"{instance_id} to run")

    long_ids = []
    for instance_id in ("share-a1", "share-a2"):
        path = _script(instance_id, "long.sh", "#!/bin/sh\necho begun\nsleep 8\necho ended\n")
        response = a.post(f"instances/{instance_id}/tasks", json={"operation_code": "long", "script_path": path, "timeout_seconds": 60})
        assert response.status_code == 202, response.text
        long_ids.append(response.json()["task_id"])
    response = b.post("instances/share-b1/tasks", json={"operation_code": "echo", "script_path": "/opt/orchestrio/scripts/echo-args.sh", "script_args": {"who": "b"}})
    assert response.status_code == 202, response.text
    b_id = response.json()["task_id"]

    s.wait_until(lambda: b.get(f"tasks/{b_id}").json()["status"] == "succeeded", timeout=30, what="tenant B's task")
    # B's task ended while A's were still running: the only worker was not waiting on them.
    assert [Task.objects.get(task_id=task_id).status for task_id in long_ids] == ["running", "running"]
    assert all(Task.objects.get(task_id=task_id).next_poll_at is not None for task_id in long_ids)

    for task_id in long_ids:
        s.wait_until(lambda: a.get(f"tasks/{task_id}").json()["finished_at"] is not None, timeout=60, what=f"task {task_id}")
        task = a.get(f"tasks/{task_id}").json()
        assert task["status"] == "succeeded" and task["stdout"] == "begun\nended\n", task
        assert Task.objects.get(task_id=task_id).attempts == 1
