"""Tasks whose job died are followed again (their command is found, never re-run), or failed as
lost after too many attempts; tasks whose queued job vanished are enqueued again. A task handed
to the task poll sweep (`next_poll_at` set) is followed by no worker by design, and is left to the
sweep, which enqueues its poll again from the database if that job is lost."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from orchestrio.queue import job_is_alive, lease_alive
from orchestrio.tenancy import Actor

from . import services
from .choices import ACTIVE_TASK_STATUSES, TaskStatus
from .jobs import task_lease_name
from .models import Task

ACTOR = Actor.system("reconciler")


def reconcile_tasks(summary: dict) -> None:
    summary.setdefault("tasks_requeued", 0)
    summary.setdefault("tasks_lost", 0)
    now = timezone.now()
    for task in Task.objects.filter(status__in=ACTIVE_TASK_STATUSES).select_related("instance"):
        if task.status == TaskStatus.QUEUED:
            if now - task.created_at < timedelta(seconds=settings.RECONCILER_QUEUE_GRACE_SECONDS):
                continue
            if job_is_alive(task.rq_job_id) is not False:
                continue
            reason = "its queued job is gone"
        elif task.next_poll_at is not None:
            continue  # no worker holds it by design: the task poll sweep follows it
        else:
            if now - (task.started_at or task.created_at) < timedelta(seconds=settings.OPERATION_LEASE_SECONDS):
                continue
            if lease_alive(task_lease_name(task.pk)) is not False:
                continue
            reason = "its worker stopped while following it"
        if task.attempts >= settings.OPERATION_MAX_ATTEMPTS:
            if services.task_finish(task=task, status=TaskStatus.FAILED, error_message=f"{reason}; gave up after {task.attempts} attempts (worker_lost)"):
                summary["tasks_lost"] += 1
        elif services.task_requeue(task=task, actor=ACTOR, reason=reason):
            summary["tasks_requeued"] += 1
