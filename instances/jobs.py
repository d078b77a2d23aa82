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

import httpx
from django.conf import settings
from django.db.models import F

from orchestrio.faults import fault_point
from orchestrio.queue import lease, singleton

from . import hooks, services
from .agent_client import endpoint_for
from .choices import ErrorCode, InstanceState, OperationKind
from .health import probe_many
from .models import Instance, Operation
from .providers import MachineState, ProviderError, get_provider, spec_for

logger = logging.getLogger(__name__)


def operation_lease_name(operation_id: int) -> str:
    return f"operation:{operation_id}"


def run_operation(operation_id: int) -> str:
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None or operation.is_finished:
        return "nothing to do"
    with lease(operation_lease_name(operation_id), settings.OPERATION_LEASE_SECONDS):
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


def wait_ready(operation: Operation) -> None:
    """Wait until the instance's health endpoint answers 2xx, or fail with health_check_failed."""
    instance = Instance.objects.select_related("blueprint").get(pk=operation.instance_id)
    if not settings.INSTANCE_READY_CHECK:
        return
    endpoint = endpoint_for(instance)
    if endpoint is None:
        raise ProviderError(ErrorCode.HEALTH_CHECK_FAILED, "the provider reported no address for the instance")
    timeout = settings.INSTANCE_READY_TIMEOUT_SECONDS
    deadline = time.monotonic() + timeout
    path = instance.blueprint.health_path
    last = "no answer"
    with endpoint.client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not services.operation_is_current(operation):
                raise ProviderError(ErrorCode.SUPERSEDED, "the operation was finished elsewhere while waiting")
            try:
                response = client.get(path)
                if 200 <= response.status_code < 300:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
    raise ProviderError(ErrorCode.HEALTH_CHECK_FAILED, f"the instance did not answer {path} within {timeout}s (last: {last})")


def _running_and_healthy(operation: Operation, message: str) -> None:
    """Finish as running; the readiness probe just passed, so health starts out healthy."""
    if services.operation_succeed(operation=operation, to_state=InstanceState.RUNNING, message=message) and settings.INSTANCE_READY_CHECK:
        instance = operation.instance
        services.health_record([{"pk": instance.pk, "ok": True, "status": "unknown", "failures": 0, "detail": "ready after " + operation.kind}])


def _launched(operation: Operation, machine, message: str) -> None:
    """Record a machine that was just launched, tell the apps that keep state in it, then wait
    until it is ready."""
    instance = services.instance_record_machine(operation=operation, machine=machine, message=message)
    for note in hooks.machine_started(instance):
        services.log_append(instance, "provider", note, operation=operation)
    wait_ready(operation)


def _start_machine(operation: Operation, provider, *, verb: str) -> None:
    machine = provider.start(spec_for(operation.instance, operation=operation))
    _launched(operation, machine, f"{verb}: {_describe_machine(machine)}")


# --- handlers, one per operation kind ----------------------------------------------------------


def _create(operation: Operation) -> None:
    provider = _provider(operation)
    if operation.instance.state == InstanceState.PENDING:
        services.instance_advance(operation=operation, to_state=InstanceState.PROVISIONING, stage="provisioning", message=f"provisioning on {provider.name}")
    machine = provider.create(spec_for(operation.instance, operation=operation))
    fault_point("operation.create.after_provider")
    _launched(operation, machine, f"launched: {_describe_machine(machine)}")
    _running_and_healthy(operation, "running and healthy")


def _start(operation: Operation) -> None:
    provider = _provider(operation)
    if operation.instance.provider_instance_id:
        _start_machine(operation, provider, verb="started")
    else:
        # Retrying a create that failed before any machine was recorded: launch it now (the
        # provider finds a machine the failed attempt did launch instead of a second one).
        machine = provider.create(spec_for(operation.instance, operation=operation))
        _launched(operation, machine, f"launched: {_describe_machine(machine)}")
    _running_and_healthy(operation, "running and healthy")


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
    _running_and_healthy(operation, "restarted, running and healthy")


def _suspend(operation: Operation) -> None:
    machine = _provider(operation).suspend(spec_for(operation.instance, operation=operation))
    how = "hibernated (memory saved to disk)" if machine.provider_data.get("hibernated") else "suspended"
    services.instance_record_machine(operation=operation, machine=machine, message=f"{how}: {_describe_machine(machine)}")
    services.operation_succeed(operation=operation, to_state=InstanceState.SUSPENDED, message=how)


def _resume(operation: Operation) -> None:
    machine = _provider(operation).resume(spec_for(operation.instance, operation=operation))
    services.instance_record_machine(operation=operation, machine=machine, message=f"resumed: {_describe_machine(machine)}")
    wait_ready(operation)
    _running_and_healthy(operation, "resumed, running and healthy")


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
            services.log_append(instance, "provider", note, operation=operation)
        wait_ready(operation)
        _running_and_healthy(operation, f"resized to {target_type}; running and healthy")
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
    OperationKind.RESIZE: _resize,
    OperationKind.DESTROY: _destroy,
}


# --- periodic ----------------------------------------------------------------------------------


def health_sweep() -> dict:
    """Probe every running instance's health endpoint (bounded concurrency, short timeouts)."""
    from orchestrio.metrics import record_health_sweep

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
        summary = services.health_record(results)
        summary["instances"] = len(rows)
        summary["seconds"] = round(time.perf_counter() - started, 3)
        record_health_sweep(seconds=summary["seconds"], instances=len(rows))
        logger.info("health sweep: %s", summary)
        return summary


def reconcile() -> dict:
    from .reconciler import reconcile_all

    return reconcile_all()


def check_custom_domains() -> int:
    from .domains import check_due_domains

    return check_due_domains()


def remove_custom_domain(domain_pk: int) -> None:
    from .domains import domain_finish_removal

    domain_finish_removal(domain_pk)


def run_deployment(deployment_pk: str, number: int) -> str:
    from .deployments import run_deployment as apply_revision

    return apply_revision(deployment_pk, number)
