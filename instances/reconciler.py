"""The reconciler: keeps the database honest about what is really running.

It runs periodically (and may run twice at once harmlessly: it takes a lock and every correction
re-checks its row under a lock). For operations it finishes what a dead worker left behind
(re-running the idempotent job, or failing it as `worker_lost` after too many attempts) and fails
wedged ones (over OPERATION_WEDGED_SECONDS in a transitional state, as Fly does after five
minutes). For machines it compares, per provider and region, the instances in the database with
the machines the provider reports by tag: it marks instances whose machine vanished, and reports
tagged machines that no live instance owns (orphans), terminating them only when
RECONCILER_TERMINATE_ORPHANS is on. Every correction is logged on the instance and audited.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from orchestrio.metrics import record_reconcile
from orchestrio.queue import job_is_alive, lease_alive, singleton
from orchestrio.tenancy import Actor

from . import hooks, services
from .choices import UNFINISHED_OPERATION_STATUSES, ErrorCode, InstanceState, OperationStatus
from .lifecycle import TRANSITIONAL_STATES
from .models import Instance, Operation, Region
from .providers import MachineState, ProviderError, get_provider

logger = logging.getLogger(__name__)
ACTOR = Actor.system("reconciler")
SETTLED_STATES = (InstanceState.RUNNING, InstanceState.STOPPED, InstanceState.SUSPENDED, InstanceState.ASLEEP)


def reconcile_all() -> dict:
    with singleton("reconciler", ttl=max(settings.RECONCILER_INTERVAL_SECONDS * 3, 120)) as mine:
        if not mine:
            return {"skipped": "another reconciler is running"}
        summary = {"requeued": 0, "worker_lost": 0, "wedged": 0, "machines_lost": 0, "orphans": [], "orphans_terminated": 0, "errors": []}
        reconcile_operations(summary)
        reconcile_machines(summary)
        hooks.reconcile(summary)  # tasks, deployments: whatever the apps built on instances keep honest
        record_reconcile(summary)
        if any(summary[key] for key in ("requeued", "worker_lost", "wedged", "machines_lost", "orphans", "errors", "tasks_requeued", "tasks_lost")):
            logger.warning("reconciler corrections: %s", summary)
        return summary


def reconcile_operations(summary: dict) -> None:
    now = timezone.now()
    wedged_before = now - timedelta(seconds=settings.OPERATION_WEDGED_SECONDS)
    lease_grace = timedelta(seconds=settings.OPERATION_LEASE_SECONDS)
    unfinished = Operation.objects.filter(status__in=UNFINISHED_OPERATION_STATUSES).select_related("instance")
    for op in unfinished:
        instance = op.instance
        if (
            instance.state in TRANSITIONAL_STATES
            and instance.state_changed_at < wedged_before
            and op.created_at < wedged_before
        ):
            minutes = settings.OPERATION_WEDGED_SECONDS / 60
            message = f"wedged: over {minutes:g} minutes in {instance.state}; the {op.kind} was given up"
            if services.operation_fail(operation=op, code=ErrorCode.TIMEOUT, message=message, actor=ACTOR):
                summary["wedged"] += 1
            continue

        if op.status == OperationStatus.QUEUED:
            if now - op.created_at < timedelta(seconds=settings.RECONCILER_QUEUE_GRACE_SECONDS):
                continue
            alive = job_is_alive(op.rq_job_id) if op.rq_job_id else False
            if alive is False:
                _requeue_or_fail(op, "its queued job is gone (Redis restarted or was unreachable)", summary)
        elif op.ready_deadline is not None:
            continue  # no worker holds it by design: the readiness sweep finishes or fails it
        else:  # running
            started = op.started_at or op.created_at
            if now - started < lease_grace:
                continue
            alive = lease_alive(services.operation_lease_name(operation_id=op.pk))
            if alive is False:
                _requeue_or_fail(op, "its worker stopped while running it", summary)


def _requeue_or_fail(op: Operation, reason: str, summary: dict) -> None:
    if op.attempts >= settings.OPERATION_MAX_ATTEMPTS:
        message = f"{reason}; gave up after {op.attempts} attempts"
        if services.operation_fail(operation=op, code=ErrorCode.WORKER_LOST, message=message, actor=ACTOR):
            summary["worker_lost"] += 1
    elif services.operation_requeue(operation=op, actor=ACTOR, reason=reason):
        summary["requeued"] += 1


def _provider_regions():
    """(provider name, provider region) pairs to inspect: each enabled provider's regions."""
    pairs = set()
    for region in Region.objects.filter(provider__in=settings.ENABLED_PROVIDERS):
        pairs.add((region.provider, region.provider_region))
    for provider, provider_region in Instance.objects.filter(destroyed_at__isnull=True).values_list("provider", "region__provider_region").distinct():
        if provider in settings.ENABLED_PROVIDERS:
            pairs.add((provider, provider_region))
    return sorted(pairs)


def reconcile_machines(summary: dict) -> None:
    for provider_name, provider_region in _provider_regions():
        provider = get_provider(provider_name)
        try:
            machines = provider.list_machines(provider_region)
        except ProviderError as exc:
            summary["errors"].append(f"{provider_name}/{provider_region or 'local'}: {exc.message}")
            continue
        by_pk = {m.instance_pk: m for m in machines if m.instance_pk is not None}
        instances = Instance.objects.filter(provider=provider_name, region__provider_region=provider_region, destroyed_at__isnull=True)
        live_pks = set()
        for instance in instances:
            live_pks.add(instance.pk)
            if instance.state not in SETTLED_STATES:
                continue
            machine = by_pk.get(instance.pk)
            state = machine.state if machine else MachineState.MISSING
            message = None
            if state in (MachineState.MISSING, MachineState.TERMINATED):
                message = f"the machine vanished: {provider_name} reports no machine for this instance (was {instance.state})"
            elif instance.state == InstanceState.RUNNING and state == MachineState.STOPPED:
                message = "the machine stopped outside Orchestrio (the process exited or was stopped); start it again"
            if message and services.instance_mark_machine_lost(instance=instance, code=ErrorCode.MACHINE_VANISHED, message=message, actor=ACTOR):
                summary["machines_lost"] += 1

        for machine in machines:
            if machine.instance_pk in live_pks or machine.state in (MachineState.MISSING, MachineState.TERMINATED):
                continue
            _handle_orphan(provider, provider_name, provider_region, machine, summary)


def _handle_orphan(provider, provider_name: str, provider_region: str, machine, summary: dict) -> None:
    instance_id = machine.tags.get("orchestrio:instance_id", "?")
    terminate = settings.RECONCILER_TERMINATE_ORPHANS
    summary["orphans"].append(
        {"provider": provider_name, "region": provider_region, "machine": machine.provider_instance_id, "instance_id": instance_id, "state": machine.state}
    )
    owner = Instance.objects.filter(pk=machine.instance_pk).first() if machine.instance_pk else None
    action = "terminated" if terminate else "reported"
    if terminate:
        try:
            provider.destroy_orphan(machine, provider_region)
            summary["orphans_terminated"] += 1
        except (ProviderError, NotImplementedError, ValueError) as exc:
            action = f"could not be terminated ({exc})"
    message = services.machine_orphan_record(
        machine=machine, provider_name=provider_name, provider_region=provider_region, owner=owner, action=action, actor=ACTOR
    )
    logger.warning("reconciler: %s", message)
