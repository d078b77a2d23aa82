"""The add-ons' job: one per operation, queued on commit by the service that accepted it."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from orchestrio.queue import enqueue, lease, singleton

from . import selectors, services


def run_addon_operation(operation_pk: int) -> str:
    # The lease tells the reconciler this run is alive; a killed worker's expires, and the
    # reconciler runs the operation again (services._reconcile_operations).
    with lease(services.addon_operation_lease_name(pk=operation_pk), settings.OPERATION_LEASE_SECONDS):
        operation = services.addon_operation_begin(pk=operation_pk)
        if operation is None:
            return "already finished"
        services.addon_operation_run(operation=operation)
    return f"{operation.kind} of {operation.addon.addon_id} done"


# --- add-ons on AWS: the operation's job runs again while it waits for AWS ------------------

POLL_JOB_TIMEOUT = 300  # seconds: a few AWS calls, each retried by botocore


def poll_due_addon_operations() -> dict:
    """Enqueue the job of each operation waiting for AWS whose next look is due (periodic, every
    ADDONS_AWS_POLL_SECONDS). Each is claimed first (its due time moved past the job's run), so
    two sweeps never enqueue one twice and a lost job is enqueued again when the claim expires."""
    with singleton("addon-poll-sweep", ttl=max(settings.ADDONS_AWS_POLL_SECONDS * 4, 60)) as mine:
        if not mine:
            return {"skipped": "another sweep is running"}
        now = timezone.now()
        until = now + timedelta(seconds=POLL_JOB_TIMEOUT + settings.ADDONS_AWS_POLL_SECONDS)
        enqueued = 0
        for pk, due in selectors.addon_operations_due(now=now):
            claim = f"addon-op-{pk}-poll-{secrets.token_hex(4)}"
            if services.addon_operation_claim_poll(pk=pk, due=due, claim=claim, until=until):
                enqueue("addons.jobs.run_addon_operation", pk, job_id=claim, timeout=POLL_JOB_TIMEOUT)
                enqueued += 1
        return {"enqueued": enqueued}
def backup_sweep() -> dict:
    """Periodic (orchestrio/schedule.py): due automatic backups, retention."""
    return services.backups_sweep()
