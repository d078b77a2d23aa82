"""The task job: starts a task on its instance through the provider, then follows it to its end,
updating the output as it goes. Re-run after a worker died, it finds the command an earlier
attempt started (providers' `find_task`) instead of running the script a second time."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from instances.providers import ProviderError, TaskRequest, get_provider, spec_for
from orchestrio.faults import fault_point
from orchestrio.queue import lease

from . import services
from .choices import TaskStatus
from .models import Task

logger = logging.getLogger(__name__)
MAX_CONSECUTIVE_ERRORS = 5


def task_lease_name(task_pk: int) -> str:
    return f"task:{task_pk}"


def run_task(task_pk: int) -> str:
    task = Task.objects.filter(pk=task_pk).first()
    if task is None or task.is_finished:
        return "nothing to do"
    with lease(task_lease_name(task_pk), settings.OPERATION_LEASE_SECONDS):
        task = services.task_begin(task)
        if task is None:
            return "nothing to do"
        provider = get_provider(task.instance.provider)
        spec = spec_for(task.instance)
        request = TaskRequest(task_id=task.task_id, script_path=task.script_path, args=task.script_args, timeout_seconds=task.timeout_seconds)
        try:
            command = task.provider_command_id or provider.find_task(spec, request)
            if not command:
                if services.task_cancel_requested(task):
                    services.task_finish(task, TaskStatus.CANCELLED, error_message="cancelled before it started")
                    return "cancelled"
                command = provider.run_task(spec, request)
                fault_point("task.after_start")
            services.task_record_command(task, command)
        except ProviderError as exc:
            services.task_finish(task, TaskStatus.FAILED, error_message=f"could not start the task: {exc.message}")
            return "failed"
        return follow(task, provider, spec, request, command)


def follow(task: Task, provider, spec, request: TaskRequest, command: str) -> str:
    deadline = (task.started_at or timezone.now()).timestamp() + task.timeout_seconds + settings.TASK_FOLLOW_GRACE_SECONDS
    errors = 0
    cancel_sent = False
    last_output = (task.stdout, task.stderr)
    while True:
        if not cancel_sent and services.task_cancel_requested(task):
            try:
                provider.cancel_task(spec, request, command)
            except ProviderError as exc:
                logger.warning("could not cancel task %s: %s", task.task_id, exc.message)
            cancel_sent = True
        try:
            result = provider.task_status(spec, request, command)
            errors = 0
        except ProviderError as exc:
            errors += 1
            if not exc.retryable or errors >= MAX_CONSECUTIVE_ERRORS:
                services.task_finish(task, TaskStatus.FAILED, error_message=f"lost contact with the instance while the task ran: {exc.message}")
                return "failed"
            time.sleep(settings.TASK_POLL_SECONDS)
            continue
        if result.finished:
            status = result.status if result.status in TaskStatus.values else TaskStatus.FAILED
            reason = "cancelled on request" if status == TaskStatus.CANCELLED else ""
            if status == TaskStatus.TIMED_OUT:
                reason = f"timed out after {task.timeout_seconds}s; its processes were killed"
            services.task_finish(task, status, exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr, error_message=reason)
            return status
        output = (result.stdout, result.stderr)
        if output != last_output:
            services.task_update_output(task, stdout=result.stdout, stderr=result.stderr)
            last_output = output
        if time.time() > deadline:
            if not cancel_sent:
                try:
                    provider.cancel_task(spec, request, command)
                except ProviderError:
                    pass
            services.task_finish(
                task, TaskStatus.TIMED_OUT, stdout=result.stdout, stderr=result.stderr,
                error_message=f"the instance did not report the end of the task within {task.timeout_seconds}s (+{settings.TASK_FOLLOW_GRACE_SECONDS}s grace)",
            )  # fmt: skip
            return "timed_out"
        time.sleep(settings.TASK_POLL_SECONDS)
