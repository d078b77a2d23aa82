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
