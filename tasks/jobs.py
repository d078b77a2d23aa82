"""The task jobs. `run_task` starts a task on its instance through the provider and follows it in
place for at most JOB_INLINE_WAIT_SECONDS (most tasks end by then); a longer task is handed off:
its next poll is a due time on the row, and no worker waits on a script a tenant controls. The
task poll sweep (a periodic job) enqueues a short `poll_task` job for each due task, fairly
across tenants; each polls once, saves the output, and finishes the task or sets its next due
time. Re-run after a worker died, `run_task` finds the command an earlier attempt started
(providers' `find_task`) instead of running the script a second time.

One lease, `task:<pk>`, is held by whichever job is looking at the task: the reconciler reads it
for tasks followed in place (a dead worker's lease expires), the sweep for tasks it handed a poll
job (a slow poll from a lost one).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from instances.providers import ProviderError, TaskRequest, get_provider, spec_for
from orchestrio.faults import fault_point
from orchestrio.queue import enqueue, job_is_waiting, lease, lease_alive, singleton

from . import services
from .choices import TaskStatus
from .models import Task

logger = logging.getLogger(__name__)
MAX_CONSECUTIVE_ERRORS = 5
POLL_JOB_TIMEOUT = 120  # seconds: one or two provider calls, each with its own timeout


def task_lease_name(task_pk: int) -> str:
    return f"task:{task_pk}"


def _target(task: Task):
    provider = get_provider(task.instance.provider)
    request = TaskRequest(task_id=task.task_id, script_path=task.script_path, args=task.script_args, timeout_seconds=task.timeout_seconds)
    return provider, spec_for(task.instance), request


def run_task(task_pk: int) -> str:
    task = Task.objects.filter(pk=task_pk).first()
    if task is None or task.is_finished:
        return "nothing to do"
    if task.next_poll_at is not None:
        return "followed by the task poll sweep"
    with lease(task_lease_name(task_pk), settings.OPERATION_LEASE_SECONDS):
        task = services.task_begin(task=task)
        if task is None:
            return "nothing to do"
        provider, spec, request = _target(task)
        try:
            command = task.provider_command_id or provider.find_task(spec, request)
            if not command:
                if services.task_cancel_requested(task=task):
                    services.task_finish(task=task, status=TaskStatus.CANCELLED, error_message="cancelled before it started")
                    return "cancelled"
                command = provider.run_task(spec, request)
                fault_point("task.after_start")
            services.task_record_command(task=task, command_id=command)
        except ProviderError as exc:
            services.task_finish(task=task, status=TaskStatus.FAILED, error_message=f"could not start the task: {exc.message}")
            return "failed"
        return follow(task, provider, spec, request, command, until=time.monotonic() + settings.JOB_INLINE_WAIT_SECONDS)


def poll_task(task_pk: int, claim: str) -> str:
    """Look at a handed-off task once (enqueued by `poll_due_tasks` as `claim`)."""
    task = Task.objects.filter(pk=task_pk).first()
    if task is None or task.is_finished:
        return "nothing to do"
    if task.poll_job_id != claim:
        return "superseded"  # the sweep took this job for lost and enqueued another
    with lease(task_lease_name(task_pk), settings.OPERATION_LEASE_SECONDS):
        task = services.task_for_job(pk=task_pk)
        provider, spec, request = _target(task)
        return follow(task, provider, spec, request, task.provider_command_id, until=time.monotonic(), claim=claim)


@dataclass
class _Seen:
    """What following a task remembers between polls; kept on the row across hand-offs."""

    errors: int
    cancel_sent: bool
    output: tuple[str, str]


def follow(task: Task, provider, spec, request: TaskRequest, command: str, *, until: float, claim: str = "") -> str:
    """Poll the task every TASK_POLL_SECONDS until it ends or `until` (monotonic) passes; then
    hand it to the task poll sweep and return "handed off"."""
    seen = _Seen(errors=task.poll_errors, cancel_sent=task.cancel_sent_at is not None, output=(task.stdout, task.stderr))
    while True:
        outcome = _poll(task, provider, spec, request, command, seen)
        if outcome is not None:
            return outcome
        if time.monotonic() + settings.TASK_POLL_SECONDS > until:
            due = timezone.now() + timedelta(seconds=settings.TASK_POLL_SECONDS)
            services.task_await_poll(task=task, due=due, errors=seen.errors, claim=claim)
            return "handed off"
        time.sleep(settings.TASK_POLL_SECONDS)


def _poll(task: Task, provider, spec, request: TaskRequest, command: str, seen: _Seen) -> str | None:
    """One look at the task: its outcome once it ended (finishing it), else None."""
    deadline = (task.started_at or timezone.now()).timestamp() + task.timeout_seconds + settings.TASK_FOLLOW_GRACE_SECONDS
    if not seen.cancel_sent and services.task_cancel_requested(task=task):
        try:
            provider.cancel_task(spec, request, command)
        except ProviderError as exc:
            logger.warning("could not cancel task %s: %s", task.task_id, exc.message)
        seen.cancel_sent = True
        services.task_cancel_sent(task=task)
    try:
        result = provider.task_status(spec, request, command)
        seen.errors = 0
    except ProviderError as exc:
        seen.errors += 1
        if not exc.retryable or seen.errors >= MAX_CONSECUTIVE_ERRORS:
            services.task_finish(task=task, status=TaskStatus.FAILED, error_message=f"lost contact with the instance while the task ran: {exc.message}")
            return "failed"
        return None
    if result.finished:
        status = result.status if result.status in TaskStatus.values else TaskStatus.FAILED
        reason = "cancelled on request" if status == TaskStatus.CANCELLED else ""
        if status == TaskStatus.TIMED_OUT:
            reason = f"timed out after {task.timeout_seconds}s; its processes were killed"
        services.task_finish(task=task, status=status, exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr, error_message=reason)
        return status
    output = (services.clean_output(text=result.stdout), services.clean_output(text=result.stderr))
    if output != seen.output:
        services.task_update_output(task=task, stdout=result.stdout, stderr=result.stderr)
        seen.output = output
    if time.time() > deadline:
        if not seen.cancel_sent:
            try:
                provider.cancel_task(spec, request, command)
            except ProviderError:
                pass
        services.task_finish(
            task=task, status=TaskStatus.TIMED_OUT, stdout=result.stdout, stderr=result.stderr,
            error_message=f"the instance did not report the end of the task within {task.timeout_seconds}s (+{settings.TASK_FOLLOW_GRACE_SECONDS}s grace)",
        )  # fmt: skip
        return "timed_out"
    return None


# --- periodic ----------------------------------------------------------------------------------


def _poll_in_flight(pk: int, job_id: str) -> bool:
    """Whether the poll job enqueued for a task may still do its work: it holds the task's lease
    (polling now), or waits in the queue. A started job without the lease died with its worker.
    When Redis cannot say, True: nothing could be enqueued anyway."""
    holding = lease_alive(task_lease_name(pk))
    if holding is not False:
        return True
    return job_is_waiting(job_id) is not False


def _past_deadline(row: dict, now) -> bool:
    started = row["started_at"] or now
    return now > started + timedelta(seconds=row["timeout_seconds"] + settings.TASK_FOLLOW_GRACE_SECONDS)


def poll_due_tasks() -> dict:
    """Enqueue a poll job for each handed-off task whose next poll is due.

    Fair across tenants: each tenant has at most TASK_POLLS_PER_TENANT poll jobs queued or running
    at once (so its instances, however slow to answer, hold at most that many workers), and the
    jobs of one sweep are interleaved tenant by tenant (the tenant due longest first), so one
    tenant's many tasks never queue ahead of another's few. What is left waits for the next sweep,
    first in line by its due time. A task is marked as enqueued (`poll_job_id`, its due time moved
    to the claim's expiry); a claim that expired with its job neither polling nor queued (Redis
    lost it, or its worker died) is enqueued again: the due time is in the database.
    """
    with singleton("task-poll-sweep", ttl=max(settings.TASK_POLL_SWEEP_SECONDS * 10, 60)) as mine:
        if not mine:
            return {"skipped": "another sweep is running"}
        now = timezone.now()
        summary = {"enqueued": 0, "deferred": 0, "lost": 0, "busy": 0}
        awaiting = Task.objects.filter(status=TaskStatus.RUNNING, next_poll_at__isnull=False)
        outstanding = Counter(awaiting.exclude(poll_job_id="").values_list("tenant_id", flat=True))
        by_tenant: dict[str, list[dict]] = {}  # in order of each tenant's longest-due task
        due = awaiting.filter(next_poll_at__lte=now).order_by("next_poll_at", "pk")
        for row in due.values("pk", "task_id", "tenant_id", "poll_job_id", "started_at", "timeout_seconds"):
            if row["poll_job_id"]:
                if _poll_in_flight(row["pk"], row["poll_job_id"]):
                    summary["busy"] += 1
                    continue
                outstanding[row["tenant_id"]] -= 1
                if _past_deadline(row, now):
                    # Its poll jobs keep dying (a poll that answers enforces the deadline itself).
                    summary["lost"] += 1
                    task = Task.objects.get(pk=row["pk"])
                    services.task_finish(task=task, status=TaskStatus.FAILED, error_message=f"its poll job was lost past the task's deadline ({row['timeout_seconds']}s +{settings.TASK_FOLLOW_GRACE_SECONDS}s grace); gave up (worker_lost)")
                    continue
            by_tenant.setdefault(row["tenant_id"], []).append(row)
        allowed = {tenant: max(0, settings.TASK_POLLS_PER_TENANT - outstanding[tenant]) for tenant in by_tenant}
        picks = []
        for rank in range(max(allowed.values(), default=0)):
            picks.extend(rows[rank] for tenant, rows in by_tenant.items() if rank < min(allowed[tenant], len(rows)))
        summary["deferred"] = sum(len(rows) for rows in by_tenant.values()) - len(picks)
        until = now + timedelta(seconds=2 * settings.OPERATION_LEASE_SECONDS)
        for row in picks:
            claim = f"{row['task_id']}-poll-{secrets.token_hex(4)}"
            if not services.task_claim_poll(pk=row["pk"], previous=row["poll_job_id"], claim=claim, until=until):
                continue
            if row["poll_job_id"]:
                logger.warning("task %s: its poll job %s was lost; enqueued %s", row["task_id"], row["poll_job_id"], claim)
                summary["lost"] += 1
            enqueue("tasks.jobs.poll_task", row["pk"], claim, job_id=claim, timeout=POLL_JOB_TIMEOUT)
            summary["enqueued"] += 1
        return summary
