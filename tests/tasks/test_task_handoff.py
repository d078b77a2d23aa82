"""Issue 14, finding 10: a long task never holds a worker.

The task job used to follow its task in place until it ended, up to `timeout_seconds` (3600) plus
grace, holding one of the few workers every tenant shares. Now it follows in place for at most
JOB_INLINE_WAIT_SECONDS, then records when the task is next due to be polled and returns; the
task poll sweep (a periodic job) enqueues a short poll job for each due task, fairly across
tenants, and each such job polls once and finishes the task or sets its next due time.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from instances.providers import ProviderError, get_provider
from orchestrio.models import ActivityEvent
from tasks.models import Task

from ..helpers import call_job, run_jobs
from .conftest import host_processes, instance_home, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def short_inline_wait(settings):
    settings.JOB_INLINE_WAIT_SECONDS = 0.3


def _sweep() -> dict:
    from tasks.jobs import poll_due_tasks

    return call_job(poll_due_tasks)


def _queued() -> int:
    return django_rq.get_queue("default").count


def _handed_off(api, task_id: str) -> dict:
    """After the job ran: the task still runs, and no job is queued or running for it."""
    task = api.get(f"tasks/{task_id}").json()
    assert task["status"] == "running", task
    assert _queued() == 0
    return task


def _poll_until_finished(api, task_id: str, timeout: float = 20.0) -> dict:
    """What the scheduler and the workers do: run the sweep, then the poll jobs it enqueued."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _sweep()
        run_jobs()
        task = api.get(f"tasks/{task_id}").json()
        if task["finished_at"]:
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {api.get(f'tasks/{task_id}').json()}")


def test_a_long_task_is_handed_off_and_the_sweep_finishes_it(api, live, dispatch, script):
    live("long-1")
    path = script("long-1", "long.sh", "#!/bin/sh\necho first\nsleep 2\necho second\necho oops >&2\nexit 4\n")
    queued = dispatch("long-1", script_path=path, wait=False)
    assert run_jobs() == 1  # the task job started the script and returned
    _handed_off(api, queued["task_id"])
    assert "polled every" in api.get("instances/long-1/logs").json()["results"][-1]["message"]

    # The output is saved while it runs, by the poll jobs.
    assert wait_for(lambda: (_sweep(), run_jobs(), "first" in api.get(f"tasks/{queued['task_id']}").json()["stdout"])[-1], timeout=10)
    assert api.get(f"tasks/{queued['task_id']}").json()["status"] == "running"

    task = _poll_until_finished(api, queued["task_id"])
    assert task["status"] == "failed" and task["exit_code"] == 4
    assert task["stdout"] == "first\nsecond\n" and task["stderr"] == "oops\n"
    row = Task.objects.get(task_id=queued["task_id"])
    assert row.attempts == 1 and row.next_poll_at is None  # poll jobs are not new attempts
    assert ActivityEvent.objects.filter(action="task.failed", object_id=queued["task_id"]).exists()
    assert _sweep()["enqueued"] == 0


def test_a_short_task_still_finishes_in_its_own_job(api, live, dispatch):
    live("quick-1")
    task = dispatch("quick-1", script_path="/opt/orchestrio/scripts/echo-args.sh", script_args={"n": 1})
    assert task["status"] == "succeeded" and "arg=--n" in task["stdout"]
    assert Task.objects.get(task_id=task["task_id"]).next_poll_at is None


def test_cancel_reaches_a_handed_off_task(api, live, dispatch, script):
    live("cancel-h")
    path = script("cancel-h", "long.sh", "#!/bin/sh\nsleep 303 &\necho $! > \"$HOME/child.pid\"\nwait\n")
    queued = dispatch("cancel-h", script_path=path, timeout_seconds=10, wait=False)
    run_jobs()
    _handed_off(api, queued["task_id"])
    assert wait_for(lambda: os.path.exists(os.path.join(instance_home("cancel-h"), "child.pid")))
    assert api.post(f"tasks/{queued['task_id']}/cancel").status_code == 202
    task = _poll_until_finished(api, queued["task_id"])
    assert task["status"] == "cancelled" and task["error_message"] == "cancelled on request"
    assert wait_for(lambda: not host_processes("sleep", "303"), timeout=10)


def test_the_agents_timeout_ends_a_handed_off_task(api, live, dispatch, script):
    live("timeout-h")
    path = script("timeout-h", "slow.sh", "#!/bin/sh\nsleep 304\n")
    queued = dispatch("timeout-h", script_path=path, timeout_seconds=1, wait=False)
    run_jobs()
    _handed_off(api, queued["task_id"])
    task = _poll_until_finished(api, queued["task_id"])
    assert task["status"] == "timed_out" and "timed out after 1s" in task["error_message"]
    assert wait_for(lambda: not host_processes("sleep", "304"), timeout=10)


def test_the_control_planes_deadline_ends_a_task_the_instance_never_reports(api, live, dispatch, script, monkeypatch, settings):
    from instances.providers.base import TaskResult

    live("silent-h")
    path = script("silent-h", "slow.sh", "#!/bin/sh\nsleep 305\n")
    queued = dispatch("silent-h", script_path=path, timeout_seconds=10, wait=False)
    run_jobs()
    _handed_off(api, queued["task_id"])
    provider = get_provider("local")
    cancelled = []
    real_cancel = provider.cancel_task
    monkeypatch.setattr(provider, "task_status", lambda spec, request, command: TaskResult(status="running", command_id=command, stdout="still going\n"))
    monkeypatch.setattr(provider, "cancel_task", lambda *a: (cancelled.append(a), real_cancel(*a)))
    _sweep()
    run_jobs()
    assert api.get(f"tasks/{queued['task_id']}").json()["status"] == "running"
    Task.objects.filter(task_id=queued["task_id"]).update(started_at=timezone.now() - timedelta(seconds=10 + settings.TASK_FOLLOW_GRACE_SECONDS + 1))
    task = _poll_until_finished(api, queued["task_id"])
    assert task["status"] == "timed_out" and "did not report the end of the task within 10s" in task["error_message"]
    assert task["stdout"] == "still going\n" and len(cancelled) == 1
    assert wait_for(lambda: not host_processes("sleep", "305"), timeout=10)


def test_consecutive_errors_count_across_hand_offs(api, live, dispatch, script, monkeypatch):
    from tasks.jobs import MAX_CONSECUTIVE_ERRORS

    live("flaky-h")
    path = script("flaky-h", "slow.sh", "#!/bin/sh\nsleep 306\n")
    queued = dispatch("flaky-h", script_path=path, timeout_seconds=10, wait=False)
    run_jobs()
    _handed_off(api, queued["task_id"])
    provider = get_provider("local")

    def unreachable(spec, request, command):
        raise ProviderError("provider_error", "the agent did not answer", retryable=True)

    monkeypatch.setattr(provider, "task_status", unreachable)
    for _ in range(MAX_CONSECUTIVE_ERRORS - 1):
        Task.objects.filter(task_id=queued["task_id"]).update(next_poll_at=timezone.now())
        assert _sweep()["enqueued"] == 1
        run_jobs()
        assert api.get(f"tasks/{queued['task_id']}").json()["status"] == "running"
    Task.objects.filter(task_id=queued["task_id"]).update(next_poll_at=timezone.now())
    _sweep()
    run_jobs()
    task = api.get(f"tasks/{queued['task_id']}").json()
    assert task["status"] == "failed" and "lost contact with the instance" in task["error_message"]
    monkeypatch.undo()
    get_provider("local").cancel_task(*_request_for(queued["task_id"]))


def _request_for(task_id: str):
    from instances.providers import TaskRequest, spec_for

    task = Task.objects.select_related("instance").get(task_id=task_id)
    request = TaskRequest(task_id=task.task_id, script_path=task.script_path, args=task.script_args, timeout_seconds=task.timeout_seconds)
    return spec_for(task.instance), request, task.provider_command_id


def test_one_tenants_long_tasks_never_delay_another_tenants_task(api, other_api, live, dispatch, script):
    for name in ("a-long-1", "a-long-2", "a-long-3"):
        live(name)
    assert other_api.post("instances", {"instance_id": "b-short"}).status_code == 201
    run_jobs()
    long_ids = []
    for name in ("a-long-1", "a-long-2", "a-long-3"):
        path = script(name, "long.sh", "#!/bin/sh\nsleep 307\n")
        long_ids.append(dispatch(name, script_path=path, timeout_seconds=10, wait=False)["task_id"])
    response = other_api.post("instances/b-short/tasks", {"operation_code": "echo", "script_path": "/opt/orchestrio/scripts/echo-args.sh", "script_args": {"who": "b"}})
    assert response.status_code == 202
    # One worker, in order: A's three task jobs first, then B's. Each of A's hands off after
    # JOB_INLINE_WAIT_SECONDS, so B's task ends in the same pass.
    assert run_jobs() == 4
    b_task = other_api.get(f"tasks/{response.json()['task_id']}").json()
    assert b_task["status"] == "succeeded" and "arg=b" in b_task["stdout"]
    assert [api.get(f"tasks/{task_id}").json()["status"] for task_id in long_ids] == ["running"] * 3
    assert _queued() == 0
    for task_id in long_ids:
        api.post(f"tasks/{task_id}/cancel")
    for task_id in long_ids:
        assert _poll_until_finished(api, task_id)["status"] == "cancelled"


def test_the_sweep_is_fair_across_tenants_and_never_enqueues_a_task_twice(api, other_api, tenant, settings):
    """Tenant A has many tasks due, tenant B one: B's poll is enqueued among A's first ones, and
    each tenant has at most TASK_POLLS_PER_TENANT polls queued or running at once."""
    from ..factories import InstanceFactory

    settings.TASK_POLLS_PER_TENANT = 2
    now = timezone.now()
    a_tasks = []
    for n in range(4):
        instance = InstanceFactory(tenant=tenant, instance_id=f"fair-a-{n}", state="running")
        a_tasks.append(Task.objects.create(task_id=f"tsk_a{n}", instance=instance, tenant=tenant, operation_code="x", script_path="/x", status="running", started_at=now, next_poll_at=now - timedelta(seconds=10 - n), requested_by="t", requested_by_type="user"))
    b_instance = InstanceFactory(tenant=other_api.tenant, instance_id="fair-b-0", state="running")
    b_task = Task.objects.create(task_id="tsk_b0", instance=b_instance, tenant=other_api.tenant, operation_code="x", script_path="/x", status="running", started_at=now, next_poll_at=now - timedelta(seconds=1), requested_by="t", requested_by_type="user")

    summary = _sweep()
    assert summary["enqueued"] == 3 and summary["deferred"] == 2
    order = [job.args[0] for job in django_rq.get_queue("default").jobs]
    assert order == [a_tasks[0].pk, b_task.pk, a_tasks[1].pk]  # round robin, the longest due first
    # Enqueued ones are marked: the next sweep enqueues none of them again, and A is at its cap.
    assert _sweep()["enqueued"] == 0
    assert _queued() == 3


def test_a_lost_poll_job_is_enqueued_again_from_the_database(api, live, dispatch, script, settings):
    """Redis restarted (or the worker died) after the sweep enqueued a poll: the due time is in
    the database, so a later sweep enqueues it again once the claim has expired."""
    from instances.jobs import reconcile

    live("lost-h")
    path = script("lost-h", "long.sh", "#!/bin/sh\necho hello\nsleep 1\n")
    queued = dispatch("lost-h", script_path=path, wait=False)
    run_jobs()
    _handed_off(api, queued["task_id"])
    time.sleep(0.1)
    assert _sweep()["enqueued"] == 1
    django_rq.get_queue("default").empty()  # the poll job is lost
    assert _sweep()["enqueued"] == 0  # its claim has not expired yet
    # The reconciler leaves a handed-off task to the sweep: no worker holds it, by design.
    Task.objects.filter(task_id=queued["task_id"]).update(started_at=timezone.now() - timedelta(minutes=5))
    summary = call_job(reconcile)
    assert summary["tasks_requeued"] == 0 and summary["tasks_lost"] == 0
    Task.objects.filter(task_id=queued["task_id"]).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert _sweep() == {**_sweep_shape(), "enqueued": 1, "lost": 1}
    task = _poll_until_finished(api, queued["task_id"])
    assert task["status"] == "succeeded" and task["stdout"] == "hello\n"
    assert Task.objects.get(task_id=queued["task_id"]).attempts == 1


def _sweep_shape() -> dict:
    return {"enqueued": 0, "deferred": 0, "lost": 0, "busy": 0}


def test_a_task_whose_poll_jobs_keep_dying_fails_at_its_deadline(api, tenant, settings):
    """A poll that answers enforces the task's deadline itself; one whose jobs never get to
    answer (they crash, their workers die) must not be enqueued again forever."""
    from ..factories import InstanceFactory

    instance = InstanceFactory(tenant=tenant, instance_id="doomed-1", state="running")
    started = timezone.now() - timedelta(seconds=60 + settings.TASK_FOLLOW_GRACE_SECONDS + 1)
    task = Task.objects.create(
        task_id="tsk_doomed", instance=instance, tenant=tenant, operation_code="x", script_path="/x", timeout_seconds=60, status="running",
        started_at=started, next_poll_at=timezone.now() - timedelta(seconds=1), poll_job_id="tsk_doomed-poll-gone", requested_by="t", requested_by_type="user",
    )  # fmt: skip
    assert _sweep() == {**_sweep_shape(), "lost": 1}
    task.refresh_from_db()
    assert task.status == "failed" and "worker_lost" in task.error_message and task.next_poll_at is None
    assert _queued() == 0
