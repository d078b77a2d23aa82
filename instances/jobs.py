"""Background jobs of the instances app (django-rq).

`run_operation` is the one runner for every lifecycle operation (the NetBox Job pattern): it owns
the operation's status, holds a lease while it works, and calls a handler per kind. Handlers are
idempotent and may be re-run from the middle: after a worker dies, the reconciler enqueues the
operation again, the handler finds the machine the first attempt launched (providers are
idempotent too), and finishes the job. Nothing here assigns `Instance.state` directly.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from orchestrio.faults import fault_point
from orchestrio.metrics import record_health_sweep
from orchestrio.queue import lease, singleton

from . import hooks, services
from .choices import ErrorCode, InstanceState, OperationKind, OperationReason, OperationStatus
from .health import probe_many, probe_until
from .models import Instance, Operation
from .providers import MachineState, ProviderError, get_provider, spec_for
from .reconciler import reconcile_all

logger = logging.getLogger(__name__)


def run_operation(operation_id: int) -> str:
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None or operation.is_finished:
        return "nothing to do"
    with lease(services.operation_lease_name(operation_id=operation_id), settings.OPERATION_LEASE_SECONDS):
        operation = services.operation_begin(operation=operation)
        if operation is None:
            return "nothing to do"
        try:
            HANDLERS[operation.kind](operation)
        except ProviderError as exc:
            logger.info("operation %s (%s) failed: %s: %s", operation.pk, operation.kind, exc.code, exc.message)
            services.operation_fail(operation=operation, code=exc.code, message=exc.message)
            return f"failed: {exc.code}"
        except Exception as exc:
            logger.exception("operation %s (%s) crashed", operation.pk, operation.kind)
            services.operation_fail(
                operation=operation,
                code=ErrorCode.INTERNAL,
                message=f"an internal error stopped the {operation.kind} ({type(exc).__name__}); support has the details",
            )
            return "failed: internal"
    return "done"


# --- helpers -----------------------------------------------------------------------------------


def _provider(operation: Operation):
    return get_provider(operation.instance.provider)


def _describe_machine(machine) -> str:
    where = f" at {machine.ip_address}:{machine.port}" if machine.ip_address and machine.port else " (reached through its agent's unix socket)" if machine.socket_path else ""
    return f"{machine.provider_instance_id or 'machine'} is {machine.state}{where}"


def _not_ready_message(instance: Instance, detail: str) -> str:
    return f"the instance did not answer {instance.blueprint.health_path} within {settings.INSTANCE_READY_TIMEOUT_SECONDS}s (last: {detail})"


def _await_ready(operation: Operation, message: str) -> None:
    """Finish the operation as running once the instance answers its health path. Probed here
    for up to JOB_INLINE_WAIT_SECONDS (most instances are ready by then); a slower one is handed
    to the readiness sweep, so no worker waits on one tenant's instance while others queue."""
    if not settings.INSTANCE_READY_CHECK:
        _running_and_healthy(operation, message)
        return
    instance = Instance.objects.select_related("blueprint").get(pk=operation.instance_id)
    timeout = settings.INSTANCE_READY_TIMEOUT_SECONDS
    inline = min(timeout, settings.JOB_INLINE_WAIT_SECONDS)
    ready = probe_until(instance, deadline=time.monotonic() + inline, interval=0.2, timeout=2.0)
    detail = ready.detail
    if ready.ok:
        _running_and_healthy(operation, message)
    elif inline >= timeout:
        raise ProviderError(ErrorCode.HEALTH_CHECK_FAILED, _not_ready_message(instance, detail))
    else:
        services.operation_await_ready(operation=operation, deadline=timezone.now() + timedelta(seconds=timeout - inline), message=message, detail=detail)


def _running_and_healthy(operation: Operation, message: str) -> None:
    """Finish as running (the readiness probe just passed, so health starts out healthy), then
    tell the apps that wait for the instance to run. First the apps that must make the agent the
    instance's own (a fleet batch's machine) do so: a ProviderError there fails the operation."""
    for note in hooks.machine_ready(operation.instance):
        services.log_append(instance=operation.instance, stage="provider", message=note, operation=operation)
    if not services.operation_succeed(operation=operation, to_state=InstanceState.RUNNING, message=message):
        return
    instance = operation.instance
    if settings.INSTANCE_READY_CHECK:
        services.health_record(results=[{"pk": instance.pk, "ok": True, "status": "unknown", "failures": 0, "detail": "ready after " + operation.kind}])
    for note in hooks.instance_running(instance):
        services.log_append(instance=instance, stage="done", message=note, operation=operation)


def _launched(operation: Operation, machine, message: str, *, instance_type: str | None = None) -> None:
    """Record a machine that was just launched and tell the apps that keep state in it."""
    instance = services.instance_record_machine(operation=operation, machine=machine, message=message, instance_type=instance_type)
    for note in hooks.machine_started(instance):
        services.log_append(instance=instance, stage="provider", message=note, operation=operation)


def _start_machine(operation: Operation, provider, *, verb: str) -> None:
    machine = provider.start(spec_for(operation.instance, operation=operation))
    _launched(operation, machine, f"{verb}: {_describe_machine(machine)}")


# --- handlers, one per operation kind ----------------------------------------------------------


def _create(operation: Operation) -> None:
    held_by = hooks.create_held_by(operation)
    if held_by:  # a batch launches this instance's machine with others'; it runs the create again
        services.operation_hold(operation=operation, job_id=held_by)
        return
    provider = _provider(operation)
    if operation.instance.state == InstanceState.PENDING:
        services.instance_advance(operation=operation, to_state=InstanceState.PROVISIONING, stage="provisioning", message=f"provisioning on {provider.name}")
    machine = provider.create(spec_for(operation.instance, operation=operation))
    fault_point("operation.create.after_provider")
    # A fleet picks one of the blueprint's machine types: the instance is what was launched.
    _launched(operation, machine, f"launched: {_describe_machine(machine)}", instance_type=machine.instance_type or None)
    _await_ready(operation, "running and healthy")


def _start(operation: Operation) -> None:
    provider = _provider(operation)
    if operation.instance.provider_instance_id:
        _start_machine(operation, provider, verb="started")
    else:
        # Retrying a create that failed before any machine was recorded: launch it now (the
        # provider finds a machine the failed attempt did launch instead of a second one).
        machine = provider.create(spec_for(operation.instance, operation=operation))
        _launched(operation, machine, f"launched: {_describe_machine(machine)}")
    _await_ready(operation, "running and healthy")


def _stop(operation: Operation) -> None:
    machine = _provider(operation).stop(spec_for(operation.instance, operation=operation))
    fault_point("operation.stop.after_provider")
    services.instance_record_machine(operation=operation, machine=machine, message=f"stopped: {_describe_machine(machine)}")
    services.operation_succeed(operation=operation, to_state=InstanceState.STOPPED, message="stopped")


def _restart(operation: Operation) -> None:
    provider = _provider(operation)
    if operation.instance.state == InstanceState.STOPPING:
        machine = provider.stop(spec_for(operation.instance, operation=operation))
        services.instance_record_machine(operation=operation, machine=machine)
        services.instance_advance(operation=operation, to_state=InstanceState.STOPPED, stage="restart", message="stopped; starting again")
    if operation.instance.state == InstanceState.STOPPED:
        services.instance_advance(operation=operation, to_state=InstanceState.STARTING, stage="restart", message="starting")
    _start_machine(operation, provider, verb="restarted")
    _await_ready(operation, "restarted, running and healthy")


def _suspend(operation: Operation) -> None:
    machine = _provider(operation).suspend(spec_for(operation.instance, operation=operation))
    how = "hibernated (memory saved to disk)" if machine.provider_data.get("hibernated") else "suspended"
    services.instance_record_machine(operation=operation, machine=machine, message=f"{how}: {_describe_machine(machine)}")
    services.operation_succeed(operation=operation, to_state=InstanceState.SUSPENDED, message=how)


def _resume(operation: Operation) -> None:
    machine = _provider(operation).resume(spec_for(operation.instance, operation=operation))
    services.instance_record_machine(operation=operation, machine=machine, message=f"resumed: {_describe_machine(machine)}")
    _await_ready(operation, "resumed, running and healthy")


def _sleep(operation: Operation) -> None:
    """Suspended as `_suspend` is (hibernated on AWS where the plan allows it, else stopped), into
    `asleep`: the next request to it wakes it (docs/lifecycle.md, "Sleep and wake")."""
    machine = _provider(operation).suspend(spec_for(operation.instance, operation=operation))
    how = "hibernated (memory saved to disk)" if machine.provider_data.get("hibernated") else "suspended"
    why = " after no traffic for its idle timeout" if operation.reason == OperationReason.IDLE else ""
    services.instance_record_machine(operation=operation, machine=machine, message=f"asleep{why}, {how}: {_describe_machine(machine)}")
    services.operation_succeed(operation=operation, to_state=InstanceState.ASLEEP, message=f"asleep ({how}); the next request wakes it")


def _wake(operation: Operation) -> None:
    machine = _provider(operation).resume(spec_for(operation.instance, operation=operation))
    why = " by a request" if operation.reason == OperationReason.REQUEST else ""
    services.instance_record_machine(operation=operation, machine=machine, message=f"woken{why}: {_describe_machine(machine)}")
    _await_ready(operation, "awake, running and healthy")


def _resize(operation: Operation) -> None:
    params = operation.params
    previous = params.get("previous_state", InstanceState.STOPPED)
    target_type = params["instance_type"]
    machine = _provider(operation).resize(
        spec_for(operation.instance, operation=operation), instance_type=target_type, restart=previous == InstanceState.RUNNING
    )
    instance = services.instance_record_machine(
        operation=operation,
        machine=machine,
        instance_type=target_type,
        plan_id=params.get("plan_id"),
        message=f"resized to {target_type}: {_describe_machine(machine)}",
    )
    if previous == InstanceState.RUNNING:
        for note in hooks.machine_started(instance):
            services.log_append(instance=instance, stage="provider", message=note, operation=operation)
        _await_ready(operation, f"resized to {target_type}; running and healthy")
    else:
        services.operation_succeed(operation=operation, to_state=previous, message=f"resized to {target_type}; {previous}")


def _destroy(operation: Operation) -> None:
    instance = operation.instance
    provider = _provider(operation)
    spec = spec_for(instance, operation=operation)
    provider.destroy(spec)
    remaining = provider.describe(spec)
    if remaining.state not in (MachineState.MISSING, MachineState.TERMINATED):
        raise ProviderError(ErrorCode.PROVIDER_ERROR, f"the machine is still {remaining.state} after destroy; retry")
    services.operation_succeed(operation=operation, to_state=InstanceState.DESTROYED, message="destroyed; the instance id is free again")


HANDLERS = {
    OperationKind.CREATE: _create,
    OperationKind.START: _start,
    OperationKind.STOP: _stop,
    OperationKind.RESTART: _restart,
    OperationKind.SUSPEND: _suspend,
    OperationKind.RESUME: _resume,
    OperationKind.SLEEP: _sleep,
    OperationKind.WAKE: _wake,
    OperationKind.RESIZE: _resize,
    OperationKind.DESTROY: _destroy,
}


# --- periodic ----------------------------------------------------------------------------------


def health_sweep() -> dict:
    """Probe every running instance's health endpoint (bounded concurrency, short timeouts)."""
    with singleton("health-sweep", ttl=max(settings.HEALTH_CHECK_INTERVAL_SECONDS * 2, 60)) as mine:
        if not mine:
            return {"skipped": "another sweep is running"}
        started = time.perf_counter()
        rows = list(
            Instance.objects.filter(state=InstanceState.RUNNING, destroyed_at__isnull=True).values(
                "pk", "ip_address", "port", "socket_path", "health_status", "health_failures",
                health_path=F("blueprint__health_path"),
            )
        )
        results = probe_many(rows)
        summary = services.health_record(results=results)
        summary["instances"] = len(rows)
        summary["seconds"] = round(time.perf_counter() - started, 3)
        record_health_sweep(seconds=summary["seconds"], instances=len(rows))
        logger.info("health sweep: %s", summary)
        return summary


def sample_stats() -> dict:
    """Every running instance's stats point for this minute (docs/observability.md "Stats")."""
    with singleton("stats-sample", ttl=max(settings.STATS_SAMPLE_SECONDS * 2, 60)) as mine:
        if not mine:
            return {"skipped": "another sampling is running"}
        started = time.perf_counter()
        summary = services.instance_stats_sample()
        summary["seconds"] = round(time.perf_counter() - started, 3)
        logger.info("stats sample: %s instances, %s sampled, %s failed", summary["instances"], summary["sampled"], len(summary["failed"]))
        return summary


def readiness_sweep() -> dict:
    """Finish the operations whose machine is up and waits for its health path (handed over by
    `_await_ready`): every such instance is probed at once, with the health sweep's bounded
    concurrency and timeouts; the ready ones finish as running, the ones past their deadline fail
    with health_check_failed."""
    with singleton("readiness-sweep", ttl=max(settings.READINESS_SWEEP_SECONDS * 10, 60)) as mine:
        if not mine:
            return {"skipped": "another sweep is running"}
        waiting = list(
            Operation.objects.filter(status=OperationStatus.RUNNING, ready_deadline__isnull=False).select_related(
                "instance__blueprint", "instance__plan", "instance__region", "instance__tenant__plan"
            )
        )
        rows = [
            {"pk": op.instance.pk, "ip_address": op.instance.ip_address, "port": op.instance.port, "socket_path": op.instance.socket_path,
             "health_path": op.instance.blueprint.health_path, "health_status": op.instance.health_status, "health_failures": 0}
            for op in waiting
        ]  # fmt: skip
        results = {result["pk"]: result for result in probe_many(rows)} if rows else {}
        summary = {"ready": 0, "failed": 0, "waiting": 0}
        now = timezone.now()
        for op in waiting:
            result = results.get(op.instance.pk, {"ok": False, "detail": "not probed"})
            if result["ok"]:
                try:
                    _running_and_healthy(op, op.params.get("ready_message") or "running and healthy")
                except ProviderError as exc:
                    services.operation_fail(operation=op, code=exc.code, message=exc.message)
                    summary["failed"] += 1
                    continue
                summary["ready"] += 1
            elif now >= op.ready_deadline:
                services.operation_fail(operation=op, code=ErrorCode.HEALTH_CHECK_FAILED, message=_not_ready_message(op.instance, result["detail"]))
                summary["failed"] += 1
            else:
                summary["waiting"] += 1
        return summary


def reconcile() -> dict:
    return reconcile_all()
