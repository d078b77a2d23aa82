"""SIGKILL the rqworker in the middle of a create, a stop and a task: after the provider call and
before the state is saved (fault points in the jobs). The worker's supervisor starts a new one,
the reconciler sees the dead job's lease expire and enqueues it again, and the re-run finishes the
work: one machine, the task's script run once, no operation left unfinished."""

from __future__ import annotations

import pytest

from instances.models import Instance, Operation
from instances.providers.local import LocalProvider
from tasks.models import Task

pytestmark = [pytest.mark.slow]

FAULTS = "operation.create.after_provider,operation.stop.after_provider,task.after_start"


def _operations(instance_id: str) -> list[Operation]:
    return list(Operation.objects.filter(instance__instance_id=instance_id).order_by("pk"))


def _settled(client, instance_id: str, state: str):
    def check() -> bool:
        record = client.get(f"instances/{instance_id}").json()
        return record["state"] == state and not any(not op.is_finished for op in _operations(instance_id))

    return check


def test_worker_killed_mid_create_stop_and_task_is_finished_by_the_reconciler(stack, client_for, settings):
    s = stack().start(workers=1, worker_env={"ORCHESTRIO_FAULTS": FAULTS})
    client = client_for(s.base)
    provider = LocalProvider(settings.LOCAL_PROVIDER_DIR)

    # create: killed after the machine was launched, before it was recorded
    assert client.post("instances", json={"instance_id": "kill-01"}).status_code == 201
    s.wait_until(_settled(client, "kill-01", "running"), what="the create to finish")
    create = _operations("kill-01")[0]
    assert (create.kind, create.status, create.attempts) == ("create", "succeeded", 2)
    assert s.workers[0].restarts == 1
    machines = [m for m in provider.list_machines("") if m.tags.get("orchestrio:instance_id") == "kill-01"]
    assert len(machines) == 1 and machines[0].state == "running"  # no second machine
    instance = Instance.objects.get(instance_id="kill-01")
    assert instance.health_status == "healthy" and instance.port == machines[0].port

    # stop: killed after the provider stopped it, before the state was saved
    assert client.post("instances/kill-01/stop").status_code == 202
    s.wait_until(_settled(client, "kill-01", "stopped"), what="the stop to finish")
    stop = _operations("kill-01")[-1]
    assert (stop.kind, stop.status, stop.attempts) == ("stop", "succeeded", 2)
    assert s.workers[0].restarts == 2

    assert client.post("instances/kill-01/start").status_code == 202
    s.wait_until(_settled(client, "kill-01", "running"), what="the start")

    # task: killed after the agent started the script, before the command was recorded
    root = instance.provider_data["dir"] + "/root"
    script = f"{root}/opt/openclaw/scripts/count.sh"
    with open(script, "w") as fh:
        fh.write('#!/bin/sh\necho ran >> "$HOME/runs.txt"\necho counted\n')
    import os

    os.chmod(script, 0o755)
    response = client.post("instances/kill-01/tasks", json={"operation_code": "count", "script_path": "/opt/openclaw/scripts/count.sh"})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    s.wait_until(lambda: client.get(f"tasks/{task_id}").json()["status"] == "succeeded", what="the task to finish")
    task = Task.objects.get(task_id=task_id)
    assert task.attempts == 2 and task.stdout.strip() == "counted"
    with open(instance.provider_data["dir"] + "/home/runs.txt") as fh:
        assert fh.read() == "ran\n"  # the script ran once, not once per attempt
    assert s.workers[0].restarts == 3
    assert not Operation.objects.exclude(status__in=("succeeded",)).exists()
