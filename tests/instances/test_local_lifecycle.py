"""The local provider end to end with real processes: create → running → healthy → stop → start →
suspend → resume → resize → destroy, and no process left behind."""

from __future__ import annotations

import os

import django_rq
import httpx
import pytest

from instances.models import Instance, LogLine, Operation, StateChange
from instances.providers.local import is_agent_command, process_state

from ..helpers import assert_error, call_job, instance_http, local_pid, run_jobs

pytestmark = pytest.mark.slow


_pid = local_pid


def _health(record) -> int:
    with instance_http(record["instance_id"]) as client:
        return client.get("/health").status_code


def test_full_lifecycle_with_real_processes(api, live):
    record = live("e2e-01")
    assert record["health_status"] == "healthy"
    # A network namespace of its own: no address on the host's network, reached through its socket.
    assert record["provider_instance_id"].startswith("local-") and record["ip_address"] is None
    pid = _pid("e2e-01")
    assert process_state(pid, None) == "running"
    assert _health(record) == 200
    probe = api.get("instances/e2e-01/health").json()
    assert probe["healthy"] is True and probe["status_code"] == 200 and probe["latency_ms"] >= 0

    # stop: the process is gone
    assert api.post("instances/e2e-01/stop").json()["state"] == "stopping"
    run_jobs()
    assert api.get("instances/e2e-01").json()["state"] == "stopped"
    assert process_state(pid, None) is None
    assert_error(api.get("instances/e2e-01/health"), 400, contains="only a running instance")

    # start: a new process, healthy again
    api.post("instances/e2e-01/start")
    run_jobs()
    record = api.get("instances/e2e-01").json()
    assert record["state"] == "running" and record["health_status"] == "healthy"
    pid = _pid("e2e-01")
    assert _health(record) == 200

    # suspend: SIGSTOP, the health endpoint stops answering; resume: SIGCONT
    api.post("instances/e2e-01/suspend")
    run_jobs()
    assert api.get("instances/e2e-01").json()["state"] == "suspended"
    assert process_state(pid, None) == "suspended"
    with pytest.raises(httpx.TimeoutException), instance_http("e2e-01", timeout=0.5) as client:
        client.get("/health")
    api.post("instances/e2e-01/resume")
    run_jobs()
    assert api.get("instances/e2e-01").json()["state"] == "running"
    assert process_state(pid, None) == "running"

    # restart: one operation, a new process
    api.post("instances/e2e-01/restart")
    run_jobs()
    assert api.get("instances/e2e-01").json()["state"] == "running"
    assert process_state(pid, None) is None
    pid = _pid("e2e-01")
    states = list(StateChange.objects.filter(instance__instance_id="e2e-01").values_list("to_state", flat=True))
    assert states[-4:] == ["stopping", "stopped", "starting", "running"]
    assert Operation.objects.filter(instance__instance_id="e2e-01", kind="restart").count() == 1

    # resize while running: new size recorded, running again
    api.put("instances/e2e-01/resize", {"plan_id": "openclaw-pro"})
    run_jobs()
    record = api.get("instances/e2e-01").json()
    assert record["state"] == "running" and record["plan_id"] == "openclaw-pro" and record["instance_type"] == "t3.large"

    # resize while stopped: stays stopped
    api.post("instances/e2e-01/stop")
    run_jobs()
    api.put("instances/e2e-01/resize", {"plan_id": "openclaw-basic"})
    run_jobs()
    record = api.get("instances/e2e-01").json()
    assert record["state"] == "stopped" and record["instance_type"] == "t3.small"

    # destroy: gone from lists, its directory removed, the id free again
    directory = Instance.objects.get(instance_id="e2e-01").provider_data["dir"]
    assert api.delete("instances/e2e-01").status_code == 202
    run_jobs()
    assert_error(api.get("instances/e2e-01"), 404)
    assert api.get("instances").json()["count"] == 0
    assert not os.path.exists(directory)
    assert Instance.objects.get(instance_id="e2e-01").state == "destroyed"
    assert api.delete("instances/e2e-01").json()["already_deleted"] is True
    assert all(op.status == "succeeded" for op in Operation.objects.all())
    seqs = list(LogLine.objects.filter(instance__instance_id="e2e-01").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


def test_create_job_run_twice_launches_one_process(api, make_instance):
    from instances.jobs import run_operation

    api.post("instances", {"instance_id": "twice-01"})
    op = Operation.objects.get()
    assert run_operation(op.pk) == "done"
    pid = _pid("twice-01")
    assert run_operation(op.pk) == "nothing to do"
    assert _pid("twice-01") == pid
    from instances.providers.local import LocalProvider

    assert len([m for m in LocalProvider().list_machines("") if m.state == "running"]) == 1


def test_worker_dying_after_the_provider_call_is_recovered(api, monkeypatch):
    """The worker dies after the machine is launched but before the state is saved; the
    reconciler runs the operation again and it finishes with the one machine."""
    from instances import services
    from instances.jobs import run_operation
    from instances.providers.local import LocalProvider
    from orchestrio.queue import LEASE_PREFIX
    from orchestrio.redis import get_redis

    class WorkerKilled(BaseException):
        pass

    real = services.instance_record_machine

    def die(**kwargs):
        raise WorkerKilled()

    api.post("instances", {"instance_id": "phoenix"})
    op = Operation.objects.get()
    monkeypatch.setattr(services, "instance_record_machine", die)
    django_rq.get_queue("default").empty()  # the worker had taken the job off the queue
    with pytest.raises(WorkerKilled):
        run_operation(op.pk)
    monkeypatch.setattr(services, "instance_record_machine", real)

    op.refresh_from_db()
    assert op.status == "running"
    machines = [m for m in LocalProvider().list_machines("") if m.state == "running"]
    assert len(machines) == 1  # launched, but nobody recorded it
    instance = Instance.objects.get(instance_id="phoenix")
    assert instance.state == "provisioning" and instance.provider_instance_id == ""

    # The dead worker's lease expires; the reconciler notices and enqueues the operation again.
    get_redis().delete(LEASE_PREFIX + f"operation:{op.pk}")
    Operation.objects.filter(pk=op.pk).update(started_at=op.started_at.replace(year=2020))
    from instances.jobs import reconcile

    summary = call_job(reconcile)
    assert summary["requeued"] == 1
    run_jobs()
    op.refresh_from_db()
    instance.refresh_from_db()
    assert op.status == "succeeded" and op.attempts == 2
    assert instance.state == "running" and instance.provider_instance_id == f"local-{instance.pk}"
    assert len([m for m in LocalProvider().list_machines("") if m.state == "running"]) == 1
    assert any("running it again" in line.message for line in LogLine.objects.filter(instance=instance))


@pytest.mark.parametrize("victim", ["agent", "sandbox"])
def test_a_process_that_dies_is_marked_by_the_reconciler(api, live, victim):
    """The instance's program crashes (its agent dies), or someone kills the sandbox's own
    process: either way the instance is gone, and nothing of it is left running unseen."""
    import time

    import psutil

    live("crashy")
    pid = _pid("crashy")
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    target = [p for p in tree if is_agent_command(p.cmdline())][0] if victim == "agent" else tree[0]
    target.kill()
    if victim == "sandbox":
        # Killing bwrap alone leaves its init holding the instance: the provider still sees it.
        assert api.get("instances/crashy").json()["state"] == "running"
        from instances.providers import get_provider, spec_for

        instance = Instance.objects.get(instance_id="crashy", destroyed_at__isnull=True)
        assert get_provider("local").describe(spec_for(instance)).state == "running"
        get_provider("local").stop(spec_for(instance))  # stopping it takes the whole tree, init included
    for _ in range(100):
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree):
            break
        time.sleep(0.05)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree), [(p.pid, p.name(), p.status()) for p in tree if p.is_running()]
    from instances.jobs import reconcile

    summary = call_job(reconcile)
    assert summary["machines_lost"] == 1
    record = api.get("instances/crashy").json()
    assert record["state"] == "error" and "outside Orchestrio" in record["error_message"]
    # recover with start
    api.post("instances/crashy/start")
    run_jobs()
    assert api.get("instances/crashy").json()["state"] == "running"


def test_start_failure_is_a_typed_error(api, tenant):
    from instances.models import Blueprint

    Blueprint.objects.create(tenant=tenant, name="Broken", command=["/bin/sh", "-c", "echo boom >&2; exit 7"])
    api.post("instances", {"instance_id": "broken-1", "blueprint_name": "Broken"})
    run_jobs()
    record = api.get("instances/broken-1").json()
    assert record["state"] == "error"
    op = api.get("instances/broken-1/operations").json()["results"][0]
    assert op["status"] == "failed" and op["error_code"] == "provider_error"
    assert "exited at start (code 7)" in op["error_message"] and "boom" in op["error_message"]


def test_unhealthy_start_fails_with_health_check_failed(api, tenant, settings):
    from instances.models import Blueprint

    settings.INSTANCE_READY_TIMEOUT_SECONDS = 1
    Blueprint.objects.create(tenant=tenant, name="WrongHealth", health_path="/does-not-exist")
    api.post("instances", {"instance_id": "sick-1", "blueprint_name": "WrongHealth"})
    run_jobs()
    op = api.get("instances/sick-1/operations").json()["results"][0]
    assert op["error_code"] == "health_check_failed"
    assert "/does-not-exist" in op["error_message"]
    api.delete("instances/sick-1")
    run_jobs()
