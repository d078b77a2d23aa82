"""Redis is the queue, not the record. Work accepted while Redis is down is recorded in the
database (the outbox) and the reconciler enqueues it once Redis answers again; a Redis restart
in the middle of a burst loses queued jobs, and every operation still ends."""

from __future__ import annotations

import time

import pytest

from instances.models import Operation
from tasks.models import Task

pytestmark = [pytest.mark.slow]


def _all_finished() -> bool:
    return not Operation.objects.filter(status__in=("queued", "running")).exists()


def test_work_accepted_while_redis_is_down_runs_once_it_is_back(stack, client_for, redis_server):
    s = stack().start(workers=1)
    client = client_for(s.base)
    assert client.post("instances", json={"instance_id": "outbox-01"}).status_code == 201
    s.wait_until(lambda: client.get("instances/outbox-01").json()["state"] == "running" and _all_finished(), what="the first instance")

    redis_server.stop()
    created = client.post("instances", json={"instance_id": "outbox-02"})
    task = client.post("instances/outbox-01/tasks", json={"operation_code": "backup", "script_path": "/opt/orchestrio/scripts/backup.sh"})
    # Accepted and recorded: the API does not need Redis to take work.
    assert created.status_code == 201, created.text
    assert task.status_code == 202, task.text
    assert created.json()["state"] == "pending"
    time.sleep(3)  # workers and the scheduler retry against a dead Redis meanwhile
    assert Operation.objects.get(instance__instance_id="outbox-02").status == "queued"
    assert Task.objects.get(task_id=task.json()["task_id"]).status == "queued"

    redis_server.start()  # empty: whatever was queued before is gone too
    s.wait_until(
        lambda: client.get("instances/outbox-02").json()["state"] == "running" and _all_finished(),
        timeout=90, what="the create accepted during the outage",
    )
    task_url = f"tasks/{task.json()['task_id']}"
    s.wait_until(lambda: client.get(task_url).json()["finished_at"] is not None, timeout=60, what="the task")
    assert client.get(task_url).json()["status"] == "succeeded", client.get(task_url).json()
    # The scheduler rides the outage out; an rqworker busy with a job when Redis vanished exits
    # (RQ's design) and its supervisor starts it again: the deployment docs require one.
    assert s.scheduler.restarts == 0, s.scheduler.log()[-3000:]
    op = Operation.objects.get(instance__instance_id="outbox-02")
    assert op.status == "succeeded" and op.attempts == 1


def test_redis_restart_during_a_burst_every_operation_ends(stack, client_for, redis_server):
    s = stack().start(workers=2)
    client = client_for(s.base)
    ids = [f"burst-{n:02d}" for n in range(8)]
    for instance_id in ids[:4]:
        assert client.post("instances", json={"instance_id": instance_id}).status_code == 201
    redis_server.stop()  # mid-burst: queued and running jobs lose Redis
    time.sleep(0.5)
    for instance_id in ids[4:]:
        assert client.post("instances", json={"instance_id": instance_id}).status_code == 201
    redis_server.start()
    s.wait_until(_all_finished, timeout=120, what="every operation to end")
    states = {r["instance_id"]: r["state"] for r in client.get("instances", params={"limit": 50}).json()["results"]}
    assert states == {instance_id: "running" for instance_id in ids}
    assert set(Operation.objects.values_list("status", flat=True)) == {"succeeded"}
