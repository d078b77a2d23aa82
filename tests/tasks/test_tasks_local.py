"""Tasks on the local provider, run by the instance agent as real processes."""

from __future__ import annotations

import json
import os

import pytest

from tasks.models import Task

from ..helpers import assert_error, run_jobs
from .conftest import host_processes, instance_home, wait_for

pytestmark = pytest.mark.slow


def test_success_with_args_as_data(live, dispatch):
    live("tasker")
    task = dispatch("tasker", operation_code="echo", script_path="/opt/orchestrio/scripts/echo-args.sh", script_args={"name": "world", "count": 3, "flag": True})
    assert task["status"] == "succeeded" and task["exit_code"] == 0
    argv = [line[4:] for line in task["stdout"].splitlines() if line.startswith("arg=")]
    # --key value pairs (their order is not kept: PostgreSQL's jsonb normalises object keys)
    assert dict(zip(argv[::2], argv[1::2])) == {"--name": "world", "--count": "3", "--flag": "true"}
    stdin = task["stdout"].split("stdin=", 1)[1].strip()
    assert json.loads(stdin) == {"name": "world", "count": 3, "flag": True}
    assert task["started_at"] and task["finished_at"] and task["instance_id"] == "tasker"


def test_shell_metacharacters_arrive_literally(live, dispatch, script):
    live("literal")
    marker = "$HOME/pwned"  # a path the script could write, if an argument were ever run
    hostile = {
        "semicolon": f"; touch {marker}",
        "subshell": f"$(touch {marker})",
        "backticks": f"`touch {marker}`",
        "newline": f"line1\ntouch {marker}",
        "quotes": "it's \"quoted\" & | > <",
    }
    task = dispatch("literal", script_path="/opt/orchestrio/scripts/echo-args.sh", script_args=hostile)
    assert task["status"] == "succeeded"
    for value in hostile.values():
        first_line = value.split("\n")[0]
        assert f"arg={first_line}" in task["stdout"]
    assert json.loads(task["stdout"].split("stdin=", 1)[1].strip()) == hostile
    assert not os.path.exists(os.path.join(instance_home("literal"), "pwned"))


def test_non_zero_exit_is_failed(live, dispatch):
    live("failing")
    task = dispatch("failing", script_path="/opt/orchestrio/scripts/fail.sh", script_args={"code": 3})
    assert task["status"] == "failed" and task["exit_code"] == 3
    assert "failing with exit code 3" in task["stderr"]


def test_timeout_kills_the_whole_process_group(live, dispatch, script):
    live("slowpoke")
    path = script("slowpoke", "spawn.sh", "#!/bin/sh\nsleep 301 &\necho $! > \"$HOME/child.pid\"\necho started\nwait\n")
    task = dispatch("slowpoke", script_path=path, timeout_seconds=1)
    assert task["status"] == "timed_out"
    assert "timed out after 1s" in task["error_message"]
    assert os.path.exists(os.path.join(instance_home("slowpoke"), "child.pid"))
    assert wait_for(lambda: not host_processes("sleep", "301"), timeout=10), "the script's child survived the timeout"


def test_cancel_while_running(api, live, dispatch, script, monkeypatch):
    from instances.providers import get_provider
    from orchestrio.tenancy import Actor
    from tasks import services

    live("cancelme")
    home = instance_home("cancelme")
    path = script("cancelme", "long.sh", "#!/bin/sh\nsleep 302 &\necho $! > \"$HOME/child.pid\"\nwait\n")
    queued = dispatch("cancelme", script_path=path, wait=False)
    provider = get_provider("local")
    real_status = provider.task_status

    def status_then_cancel(spec, request, command):
        # A cancel request arrives (as from the API) once the script is running.
        result = real_status(spec, request, command)
        task = Task.objects.get(task_id=queued["task_id"])
        if result.status == "running" and os.path.exists(os.path.join(home, "child.pid")) and task.cancel_requested_at is None:
            services.task_cancel(task=task, actor=Actor.system("test"))
        return result

    monkeypatch.setattr(provider, "task_status", status_then_cancel)
    run_jobs()
    task = api.get(f"tasks/{queued['task_id']}").json()
    assert task["status"] == "cancelled" and task["error_message"] == "cancelled on request"
    assert wait_for(lambda: not host_processes("sleep", "302"), timeout=10)
    assert_error(api.post(f"tasks/{queued['task_id']}/cancel"), 400, contains="already finished")


def test_output_keeps_the_last_64_kib(live, dispatch, script):
    live("chatty")
    path = script("chatty", "chatty.sh", "#!/bin/sh\ni=0\nwhile [ $i -lt 5000 ]; do echo \"line $i padded to make the output long enough to overflow\"; i=$((i+1)); done\necho THE-END\n")
    task = dispatch("chatty", script_path=path)
    assert task["status"] == "succeeded"
    assert len(task["stdout"].encode()) <= 64 * 1024
    assert task["stdout"].rstrip().endswith("THE-END")
    assert "line 0 " not in task["stdout"]


def test_invalid_utf8_output_is_replaced(live, dispatch, script):
    live("binary")
    path = script("binary", "bin.sh", "#!/bin/sh\nprintf 'ok \\377\\376 bytes\\000nul\\n'\n")
    task = dispatch("binary", script_path=path)
    assert task["status"] == "succeeded"
    assert task["stdout"].startswith("ok \ufffd\ufffd bytes")
    assert "\x00" not in task["stdout"]


def test_missing_script_fails_clearly(live, dispatch):
    live("noscript")
    task = dispatch("noscript", script_path="/opt/orchestrio/scripts/does-not-exist.sh")
    assert task["status"] == "failed" and task["exit_code"] == 127
    assert "cannot execute" in task["stderr"]


def test_worker_death_is_recovered_without_running_twice(api, live, dispatch, script, monkeypatch):
    """The worker dies after the agent started the script but before the command id was saved;
    the reconciler has the task followed again, which finds it instead of starting it again."""
    import django_rq
    from datetime import timedelta

    from django.utils import timezone

    from instances.jobs import reconcile
    from orchestrio.queue import LEASE_PREFIX
    from orchestrio.redis import get_redis
    from tasks import jobs, services

    from ..helpers import call_job

    live("phoenix-task")
    path = script("phoenix-task", "count.sh", "#!/bin/sh\necho run >> \"$HOME/runs.txt\"\nsleep 1\necho done\n")
    queued = dispatch("phoenix-task", script_path=path, wait=False)
    django_rq.get_queue("default").empty()

    class Killed(BaseException):
        pass

    monkeypatch.setattr(services, "task_record_command", lambda **_: (_ for _ in ()).throw(Killed()))
    task = Task.objects.get(task_id=queued["task_id"])
    with pytest.raises(Killed):
        jobs.run_task(task.pk)
    monkeypatch.undo()

    get_redis().delete(LEASE_PREFIX + f"task:{task.pk}")
    Task.objects.filter(pk=task.pk).update(started_at=timezone.now() - timedelta(minutes=1))
    assert call_job(reconcile)["tasks_requeued"] == 1
    run_jobs()
    task.refresh_from_db()
    assert task.status == "succeeded" and task.attempts == 2
    runs = open(os.path.join(instance_home("phoenix-task"), "runs.txt")).read().splitlines()
    assert runs == ["run"]
