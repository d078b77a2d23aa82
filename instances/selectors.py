from __future__ import annotations

from django.db.models import Count, Q

from .choices import InstanceState
from .models import Instance

# States that hold a running machine (or are about to), for the plan's running-instance limit.
# Suspended and stopped instances count against the instance limit only.
RUNNING_STATES = (
    InstanceState.PENDING,
    InstanceState.PROVISIONING,
    InstanceState.RUNNING,
    InstanceState.STARTING,
    InstanceState.RESUMING,
    InstanceState.STOPPING,
    InstanceState.SUSPENDING,
    InstanceState.RESIZING,
)


def instance_live(*, tenant):
    return Instance.objects.filter(tenant=tenant, destroyed_at__isnull=True)


def instance_exists(*, tenant, instance_id: str) -> bool:
    return instance_live(tenant=tenant).filter(instance_id=instance_id).exists()


def instance_counts(*, tenant) -> dict[str, int]:
    counts = instance_live(tenant=tenant).aggregate(
        instances=Count("id"), running_instances=Count("id", filter=Q(state__in=RUNNING_STATES))
    )
    return {"instances": counts["instances"], "running_instances": counts["running_instances"]}


def blueprint_visible(*, tenant):
    """The tenant's own blueprints and the built-in ones (not deleted)."""
    from .models import Blueprint

    return Blueprint.objects.filter(Q(tenant__isnull=True) | Q(tenant=tenant), deleted_at__isnull=True)


def agent_client_for(instance, *, timeout: float = 10.0):
    from orchestrio.crypto import decrypt

    from .agent_client import AgentClient

    return AgentClient(instance.ip_address or "127.0.0.1", instance.port or instance.blueprint.agent_port, decrypt(instance.agent_key_encrypted), timeout=timeout)


def instance_queryset():
    """Live instances with what their API record needs, in a constant number of queries."""
    from django.db.models import Prefetch

    from .choices import UNFINISHED_OPERATION_STATUSES
    from .models import CustomDomain, Operation

    return (
        Instance.objects.filter(destroyed_at__isnull=True)
        .select_related("blueprint")
        .prefetch_related(
            Prefetch(
                "operations",
                queryset=Operation.objects.filter(status__in=UNFINISHED_OPERATION_STATUSES).order_by("-created_at"),
                to_attr="unfinished_operations",
            ),
            Prefetch("custom_domains", queryset=CustomDomain.objects.filter(removed_at__isnull=True), to_attr="current_domains"),
        )
    )


def instance_latest(*, tenant, instance_id: str):
    """The live instance with this id, else the most recently destroyed one (DELETE, wait)."""
    rows = Instance.objects.filter(tenant=tenant, instance_id=instance_id).select_related("blueprint", "tenant")
    return rows.filter(destroyed_at__isnull=True).first() or rows.order_by("-destroyed_at", "-id").first()


def instance_runtime(instance) -> dict:
    """The agent's /api/status merged with the control plane's view, meaningful in every state."""
    from .agent_client import AgentError, AgentTimeout, AgentUnreachable
    from .choices import OperationStatus
    from .models import LogLine

    unfinished = instance.operations.filter(status__in=("queued", "running")).order_by("-created_at").first()
    last_failed = instance.operations.filter(status=OperationStatus.FAILED).order_by("-finished_at").first()
    recent = list(LogLine.objects.filter(instance=instance).order_by("-seq")[:10])[::-1]
    stage = recent[-1].stage if recent else None
    agent: dict = {"reachable": False}
    state = instance.state
    if state == InstanceState.RUNNING:
        try:
            agent = {"reachable": True, "status": agent_client_for(instance, timeout=3).status()}
        except (AgentUnreachable, AgentTimeout, AgentError) as exc:
            agent = {"reachable": False, "error": str(exc)}
        message = "running" + (" and healthy" if instance.health_status == "healthy" else f"; health is {instance.health_status}")
        if not agent["reachable"]:
            message = f"running, but its agent did not answer: {agent['error']}"
    else:
        explanations = {
            InstanceState.PENDING: "waiting for a worker to start provisioning",
            InstanceState.PROVISIONING: "the machine is being launched",
            InstanceState.STARTING: "the machine is starting",
            InstanceState.STOPPING: "the machine is stopping",
            InstanceState.STOPPED: "stopped; start it to reach its agent",
            InstanceState.SUSPENDING: "the machine is being suspended",
            InstanceState.SUSPENDED: "suspended; resume it to reach its agent",
            InstanceState.RESUMING: "the machine is resuming",
            InstanceState.RESIZING: "the machine is being resized",
            InstanceState.DESTROYING: "the machine is being destroyed",
            InstanceState.DESTROYED: "destroyed",
            InstanceState.ERROR: f"in error: {instance.error_message or 'the last operation failed'}",
        }
        message = explanations.get(state, state)
        if unfinished is not None:
            message += f" ({unfinished.kind} {unfinished.status}, stage {stage})"
        agent = {"reachable": False, "reason": f"the agent is only contacted while the instance is running (it is {state})"}
    return {
        "instance_id": instance.instance_id,
        "state": state,
        "health_status": instance.health_status,
        "health_failures": instance.health_failures,
        "last_health_check": instance.last_health_check,
        "provisioning_stage": stage,
        "operation": unfinished,
        "last_error": (
            {"operation": last_failed.pk, "kind": last_failed.kind, "error_code": last_failed.error_code, "error_message": last_failed.error_message}
            if last_failed is not None else None
        ),
        "message": message,
        "agent": agent,
        "recent_logs": recent,
    }
