"""State changes for tasks. At most one queued or running task per instance: dispatch locks the
instance row, and a partial unique index backs that up in the database."""

from __future__ import annotations

import json
import logging
import posixpath
import re
import secrets
import string

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from instances.choices import InstanceState, LogLevel
from instances.models import Instance
from instances.services import log_append
from orchestrio.errors import Conflict, InvalidState, ValidationFailed
from orchestrio.hooks import tenant_event
from orchestrio.quotas import execution_quota_check
from orchestrio.queue import enqueue_on_commit
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor

from .choices import ACTIVE_TASK_STATUSES, TaskStatus
from .models import OUTPUT_LIMIT, Task

logger = logging.getLogger(__name__)

ARG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
OPERATION_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_ARGS_BYTES = 16 * 1024
TIMEOUT_RANGE = (1, 3600)
OPERATION_CODE_MESSAGE = "the operation code is 1–64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
TIMEOUT_MESSAGE = "the timeout must be from 1 to 3600 seconds"
_ALPHABET = string.ascii_letters + string.digits


def new_task_id() -> str:
    return "tsk_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def _script_path_error(path, roots: list[str] | None) -> tuple[str, str] | None:
    if not isinstance(path, str) or not path:
        return "the script path is required", "value_error"
    if len(path) > 1024 or "\x00" in path or any(ch in path for ch in "\r\n"):
        return "the script path must be at most 1024 characters, on one line", "value_error"
    if not path.startswith("/"):
        return "the script path must be absolute: start it with /", "value_error"
    if ".." in path.split("/"):
        return "the script path must not contain '..'", "path_traversal"
    if posixpath.normpath(path) != path:
        return f"the script path has '//', './' or a trailing '/': write it as {posixpath.normpath(path)}", "value_error"
    if roots and not any(path.startswith(root.rstrip("/") + "/") for root in roots):
        return f"the script must be under one of this blueprint's task folders: {', '.join(roots)}", "path_not_allowed"
    return None


def _script_args_errors(args) -> list[dict]:
    if args is None:
        return []
    if not isinstance(args, dict):
        return [{"loc": ["body", "script_args"], "msg": "the arguments must be a JSON object, like {\"name\": \"value\"}", "type": "value_error"}]
    bad = [key for key in args if not ARG_KEY_RE.match(key)]
    if bad:
        return [
            {"loc": ["body", "script_args", key], "msg": f"argument name {key!r} must start with a letter or '_' and use only letters, digits, '_' or '-' (at most 64)", "type": "value_error"}
            for key in bad
        ]
    if len(json.dumps(args)) > MAX_ARGS_BYTES:
        return [{"loc": ["body", "script_args"], "msg": f"the arguments must be at most {MAX_ARGS_BYTES // 1024} KiB as JSON", "type": "value_error"}]
    return []


def task_request_errors(*, roots: list[str] | None, fields: dict) -> list[dict]:
    """Every rule a task request breaks, all at once (the API's 422 and the console form list them
    together). Only the fields given are checked: the console leaves out those its form already
    refused."""
    errors: list[dict] = []
    if "operation_code" in fields and not OPERATION_CODE_RE.match(fields["operation_code"] or ""):
        errors.append({"loc": ["body", "operation_code"], "msg": OPERATION_CODE_MESSAGE, "type": "value_error"})
    if "script_path" in fields and (problem := _script_path_error(fields["script_path"], roots)):
        errors.append({"loc": ["body", "script_path"], "msg": problem[0], "type": problem[1]})
    if "script_args" in fields:
        errors.extend(_script_args_errors(fields["script_args"]))
    if "timeout_seconds" in fields:
        timeout = fields["timeout_seconds"]
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not TIMEOUT_RANGE[0] <= timeout <= TIMEOUT_RANGE[1]:
            errors.append({"loc": ["body", "timeout_seconds"], "msg": TIMEOUT_MESSAGE, "type": "value_error"})
    return errors


def clean_output(*, text: str | None) -> str:
    """Text safe for any database (no NUL), at most the last 64 KiB of UTF-8."""
    if not text:
        return ""
    text = text.replace("\x00", "\ufffd")
    data = text.encode("utf-8", errors="replace")
    if len(data) > OUTPUT_LIMIT:
        data = data[-OUTPUT_LIMIT:]
        return data.decode("utf-8", errors="replace")
    return text


@transaction.atomic
def task_dispatch(
    *,
    instance: Instance,
    actor: Actor,
    operation_code: str,
    script_path: str,
    script_args: dict | None = None,
    timeout_seconds: int = 600,
    idempotency_key: str | None = None,
) -> tuple[Task, bool]:
    """Queue a task; returns (task, created). An idempotency key already used on this instance
    returns the task it created instead of a second run."""
    locked = Instance.objects.select_for_update(of=("self",)).select_related("blueprint", "tenant__plan").get(pk=instance.pk)
    if idempotency_key:
        existing = Task.objects.filter(instance=locked, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    fields = {"operation_code": operation_code, "script_path": script_path, "script_args": script_args, "timeout_seconds": timeout_seconds}
    errors = task_request_errors(roots=locked.blueprint.task_roots, fields=fields)
    if errors:
        raise ValidationFailed(errors)
    script_args = script_args or {}
    if locked.destroyed_at is not None or locked.state != InstanceState.RUNNING:
        raise InvalidState(f"cannot run a task on {locked.instance_id}: it is {locked.state}, not running")
    active = Task.objects.filter(instance=locked, status__in=ACTIVE_TASK_STATUSES).first()
    if active is not None:
        raise Conflict(
            f"a task is already {active.status} on {locked.instance_id} ({active.task_id}, {active.operation_code}); one runs at a time",
            operation=active.summary(),
        )
    execution_quota_check(tenant_id=locked.tenant_id, plan=locked.tenant.plan)
    task = Task(
        task_id=new_task_id(),
        instance=locked,
        tenant_id=locked.tenant_id,
        operation_code=operation_code,
        script_path=script_path,
        script_args=script_args,
        timeout_seconds=timeout_seconds,
        idempotency_key=idempotency_key or None,
        requested_by=actor.label[:254],
        requested_by_type=actor.type,
    )
    task.rq_job_id = f"{task.task_id}-1"
    try:
        with transaction.atomic():
            task.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"a task is already queued or running on {locked.instance_id}") from exc
    log_append(instance=locked, stage="task", message=f"task {task.task_id} ({operation_code}) queued: {script_path} by {actor.label}")
    activity_record(
        actor=actor,
        action="task.dispatch",
        tenant=locked.tenant_id,
        object_type="task",
        object_id=task.task_id,
        # The argument names only: values may be secrets and never reach a log.
        data={"instance_id": locked.instance_id, "operation_code": operation_code, "script_path": script_path, "arg_names": sorted(script_args)},
    )
    enqueue_on_commit("tasks.jobs.run_task", task.pk, job_id=task.rq_job_id)
    return task, True


@transaction.atomic
def task_cancel(*, task: Task, actor: Actor) -> Task:
    locked = Task.objects.select_for_update(of=("self",)).get(pk=task.pk)
    if locked.is_finished:
        raise InvalidState(f"task {locked.task_id} already finished ({locked.status}); there is nothing to cancel")
    now = timezone.now()
    if locked.cancel_requested_at is None:
        locked.cancel_requested_at = now
        locked.save(update_fields=["cancel_requested_at"])
    if locked.status == TaskStatus.QUEUED:
        # Not started yet: nothing runs on the machine, so it is cancelled right away.
        _finish(locked, TaskStatus.CANCELLED, error_message=f"cancelled by {actor.label} before it started")
    activity_record(actor=actor, action="task.cancel", tenant=locked.tenant_id, object_type="task", object_id=locked.task_id)
    return locked


# --- called by the task job --------------------------------------------------------------------


def task_for_job(*, pk: int) -> Task:
    return Task.objects.select_related("instance__blueprint", "instance__region", "instance__plan", "instance__tenant__plan").get(pk=pk)


def task_begin(*, task: Task) -> Task | None:
    """Mark the task running (counting the attempt). None when it finished already, or when the
    task poll sweep follows it (a task job never follows a handed-off task a second time)."""
    with transaction.atomic():
        locked = Task.objects.select_for_update(of=("self",)).filter(pk=task.pk).first()
        if locked is None or locked.is_finished or locked.next_poll_at is not None:
            return None
        locked.status = TaskStatus.RUNNING
        locked.attempts += 1
        if locked.started_at is None:
            locked.started_at = timezone.now()
        locked.save(update_fields=["status", "attempts", "started_at"])
    return task_for_job(pk=locked.pk)


def task_record_command(*, task: Task, command_id: str) -> None:
    Task.objects.filter(pk=task.pk).update(provider_command_id=command_id)
    task.provider_command_id = command_id


def task_update_output(*, task: Task, stdout: str, stderr: str) -> None:
    Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING).update(stdout=clean_output(text=stdout), stderr=clean_output(text=stderr))


def task_cancel_requested(*, task: Task) -> bool:
    return Task.objects.filter(pk=task.pk, cancel_requested_at__isnull=False).exists()


def task_cancel_sent(*, task: Task) -> None:
    """The provider has the cancel request: later polls do not send it again."""
    Task.objects.filter(pk=task.pk, cancel_sent_at__isnull=True).update(cancel_sent_at=timezone.now())


def task_await_poll(*, task: Task, due, errors: int, claim: str = "") -> bool:
    """The task still runs and no job follows it now: the task poll sweep polls it at `due`.
    `claim` is the poll job handing it back (blank for the task job's first hand-off); a claim
    the sweep has since replaced changes nothing. Returns whether it was recorded."""
    first = not claim
    updated = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, poll_job_id=claim).update(next_poll_at=due, poll_job_id="", poll_errors=errors)
    if updated and first:
        log_append(
            instance=task.instance, stage="task",
            message=f"task {task.task_id} ({task.operation_code}) still running after {settings.JOB_INLINE_WAIT_SECONDS:g}s; "
            f"polled every {max(settings.TASK_POLL_SECONDS, settings.TASK_POLL_SWEEP_SECONDS):g}s from now on, with no worker waiting on it",
        )  # fmt: skip
    return bool(updated)


def task_claim_poll(*, pk: int, previous: str, claim: str, until) -> bool:
    """Mark a due task as having poll job `claim` enqueued (replacing `previous`, a lost one), so
    that no other sweep enqueues it again before `until`. False when someone else got there."""
    return bool(
        Task.objects.filter(pk=pk, status=TaskStatus.RUNNING, poll_job_id=previous, next_poll_at__isnull=False).update(poll_job_id=claim, next_poll_at=until)
    )


def _finish(task: Task, status: str, *, exit_code=None, stdout=None, stderr=None, error_message: str = "") -> None:
    task.status = status
    task.finished_at = timezone.now()
    task.exit_code = exit_code
    task.next_poll_at, task.poll_job_id = None, ""
    fields = ["status", "finished_at", "exit_code", "error_message", "next_poll_at", "poll_job_id"]
    task.error_message = error_message
    if stdout is not None:
        task.stdout = clean_output(text=stdout)
        fields.append("stdout")
    if stderr is not None:
        task.stderr = clean_output(text=stderr)
        fields.append("stderr")
    task.save(update_fields=fields)
    level = LogLevel.INFO if status == TaskStatus.SUCCEEDED else LogLevel.WARNING
    exit_text = f", exit code {exit_code}" if exit_code is not None else ""
    reason = f": {error_message}" if error_message else ""
    log_append(instance=task.instance, stage="task", message=f"task {task.task_id} ({task.operation_code}) {status}{exit_text}{reason}", level=level)


@transaction.atomic
def task_finish(*, task: Task, status: str, exit_code=None, stdout=None, stderr=None, error_message: str = "") -> bool:
    locked = Task.objects.select_for_update(of=("self",)).select_related("instance").get(pk=task.pk)
    if locked.is_finished:
        return False
    _finish(locked, status, exit_code=exit_code, stdout=stdout, stderr=stderr, error_message=error_message)
    if status in (TaskStatus.FAILED, TaskStatus.TIMED_OUT):
        tenant_event(locked.tenant_id, "task.failed", {"task_id": locked.task_id, "instance_id": locked.instance.instance_id, "operation_code": locked.operation_code, "status": status, "exit_code": exit_code, "reason": error_message[:300]})
    if status != TaskStatus.SUCCEEDED:
        activity_record(
            actor=Actor.system("tasks"), action=f"task.{status}", tenant=locked.tenant_id, object_type="task", object_id=locked.task_id,
            data={"instance_id": locked.instance.instance_id, "operation_code": locked.operation_code, "exit_code": exit_code, "reason": error_message[:200]},
        )  # fmt: skip
    return True


def task_requeue(*, task: Task, actor: Actor, reason: str) -> bool:
    with transaction.atomic():
        locked = Task.objects.select_for_update(of=("self",)).get(pk=task.pk)
        if locked.is_finished or locked.next_poll_at is not None:
            return False  # finished, or followed by the task poll sweep (no worker holds it by design)
        locked.rq_job_id = f"{locked.task_id}-{locked.attempts + 1}-{secrets.token_hex(3)}"
        locked.save(update_fields=["rq_job_id"])
        log_append(instance=locked.instance, stage="reconciler", message=f"task {locked.task_id}: {reason}; following it again", level=LogLevel.WARNING)
        activity_record(actor=actor, action="task.requeued", tenant=locked.tenant_id, object_type="task", object_id=locked.task_id, data={"reason": reason})
        enqueue_on_commit("tasks.jobs.run_task", locked.pk, job_id=locked.rq_job_id)
    return True
