from __future__ import annotations

from datetime import timedelta
from datetime import timezone as dt_timezone

from django.db.models import Avg, Count, F, FilteredRelation, Max, OuterRef, Q, Subquery
from django.db.models.functions import TruncHour
from django.utils import timezone

from .choices import UNFINISHED_OPERATION_STATUSES, InstanceState, OperationStatus, StatResolution
from .models import Blueprint, Instance, InstanceStatSample, LogLine

# States that hold a running machine (or are about to), for the plan's running-instance limit.
# Suspended and stopped instances count against the instance limit only.
RUNNING_STATES = (
    InstanceState.PENDING,
    InstanceState.PROVISIONING,
    InstanceState.RUNNING,
    InstanceState.STARTING,
    InstanceState.RESUMING,
    InstanceState.WAKING,
    InstanceState.STOPPING,
    InstanceState.SUSPENDING,
    InstanceState.SLEEPING,
    InstanceState.RESIZING,
)


def live_instances(*, tenant):
    """A QuerySet of the tenant's live (not destroyed) instances."""
    return Instance.objects.filter(tenant=tenant, destroyed_at__isnull=True)


def listed_instances(*, tenant, instance_scope: str | None = None):
    """A QuerySet of the live instances a principal lists (a token scoped to one instance sees
    only it), in the list's order (the model's; the `instance_tenant_live_page` index)."""
    queryset = live_instances(tenant=tenant)
    return queryset if instance_scope is None else queryset.filter(instance_id=instance_scope)


def instance_exists(*, tenant, instance_id: str) -> bool:
    return live_instances(tenant=tenant).filter(instance_id=instance_id).exists()


def counted_instances(*, tenant):
    """The live instances the plan's instance limits count: the tenant's own, not those a
    capability manages for it (its function instance: `managed_by`)."""
    return live_instances(tenant=tenant).filter(managed_by="")


def instance_counts(*, tenant) -> dict[str, int]:
    counts = counted_instances(tenant=tenant).aggregate(
        instances=Count("id"), running_instances=Count("id", filter=Q(state__in=RUNNING_STATES))
    )
    return {"instances": counts["instances"], "running_instances": counts["running_instances"]}


def blueprint_visible(*, tenant, queryset=None):
    """The tenant's own blueprints and the built-in ones (not deleted), of `queryset` (default:
    all blueprints)."""
    queryset = Blueprint.objects.all() if queryset is None else queryset
    return queryset.filter(Q(tenant__isnull=True) | Q(tenant=tenant), deleted_at__isnull=True)


def with_record(queryset):
    """`queryset` with what an instance's API record shows beside its own row, in the same query:
    its blueprint, its unfinished operation (`unfinished_operation`, joined when
    `unfinished_operation_pk` is not None) and its live custom domain's name (`live_domain_name`),
    as LEFT JOINs: an instance has at most one of each (unique constraints in the database)."""
    return queryset.annotate(
        unfinished_operation=FilteredRelation("operations", condition=Q(operations__status__in=UNFINISHED_OPERATION_STATUSES)),
        unfinished_operation_pk=F("unfinished_operation__id"),
        live_domain=FilteredRelation("custom_domains", condition=Q(custom_domains__removed_at__isnull=True)),
        live_domain_name=F("live_domain__domain"),
    ).select_related("blueprint", "unfinished_operation")


def live_instance_with_record(*, tenant, instance_id: str) -> Instance | None:
    """The tenant's live instance with this id, whole, with its record's relations
    (`with_record`), else None."""
    return with_record(live_instances(tenant=tenant).filter(instance_id=instance_id)).first()


def instances_with_record_in_order(*, tenant, instance_ids) -> list[Instance]:
    """The tenant's live instances with these ids, in that order, each with its record's relations
    (`with_record`): a page of the list, whose ids came from the page index."""
    instance_ids = list(instance_ids)
    if not instance_ids:
        return []
    tenant_id = getattr(tenant, "pk", tenant)
    # By instance_id alone (unique among live instances, so its index answers each id), the tenant
    # checked on each row: with the tenant in the WHERE clause too, SQLite (no statistics) walks
    # the tenant's whole index instead of looking the ids up.
    rows = with_record(Instance.objects.filter(instance_id__in=instance_ids, destroyed_at__isnull=True)).order_by()
    found = {instance.instance_id: instance for instance in rows if instance.tenant_id == tenant_id}
    return [found[instance_id] for instance_id in instance_ids if instance_id in found]


def instance_by_idempotency_key(*, principal, key: str):
    """The newest instance this principal created with this Idempotency-Key (keys are per
    principal), or one created before keys had principals, else None."""
    return (
        Instance.objects.filter(tenant=principal.tenant, idempotency_key=key, idempotency_principal__in=(principal.key, ""))
        .order_by("-created_at")
        .first()
    )


def live_or_last_destroyed_instance(*, instances, instance_id: str) -> Instance | None:
    """Among `instances` (a tenant's), the live one with this id, else the most recently destroyed
    one (DELETE, wait), else None."""
    rows = instances.filter(instance_id=instance_id).select_related("blueprint", "tenant")
    return rows.filter(destroyed_at__isnull=True).first() or rows.order_by("-destroyed_at", "-id").first()


def instance_runtime(instance, *, agent: dict | None) -> dict:
    """The control plane's view of the instance merged with `agent`, what its agent answered just
    now (`agent_client.agent_status`; None when it was not asked: it is only asked while the
    instance is running). Reads the database only: meaningful in every state."""

    unfinished = instance.operations.filter(status__in=("queued", "running")).order_by("-created_at").first()
    last_failed = instance.operations.filter(status=OperationStatus.FAILED).order_by("-finished_at").first()
    recent = list(LogLine.objects.filter(instance=instance).order_by("-seq")[:10])[::-1]
    stage = recent[-1].stage if recent else None
    state = instance.state
    if state == InstanceState.RUNNING:
        if agent is None:
            raise ValueError("a running instance's runtime includes its agent's answer: pass agent_status(instance)")
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
            InstanceState.SLEEPING: "the machine is being put to sleep",
            InstanceState.ASLEEP: "asleep (scaled to zero); the next request to it wakes it, or wake it",
            InstanceState.WAKING: "the machine is waking up",
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


# --- stats (docs/observability.md "Stats") ------------------------------------------------------

STAT_FIGURES = (
    "cpu_percent", "rss_bytes", "memory_limit_bytes", "net_rx_bytes_per_second", "net_tx_bytes_per_second",
    "disk_read_bytes_per_second", "disk_write_bytes_per_second", "uptime_seconds", "restarts",
)  # fmt: skip
# What an hour point keeps of its minutes: the mean of rates and memory, the last of counters.
STAT_HOURLY = {
    "cpu_percent": Avg, "rss_bytes": Avg, "memory_limit_bytes": Max, "net_rx_bytes_per_second": Avg,
    "net_tx_bytes_per_second": Avg, "disk_read_bytes_per_second": Avg, "disk_write_bytes_per_second": Avg,
    "uptime_seconds": Max, "restarts": Max,
}  # fmt: skip
# window → (how far back, which points)
STAT_WINDOWS = {
    "1h": (timedelta(hours=1), StatResolution.MINUTE),
    "24h": (timedelta(hours=24), StatResolution.MINUTE),
    "30d": (timedelta(days=30), StatResolution.HOUR),
}


def stats_targets(*, instance_pks=None):
    """The running instances to sample, each with the counters of its latest minute point
    (`previous_raw`), in one query."""
    latest = InstanceStatSample.objects.filter(instance=OuterRef("pk"), resolution=StatResolution.MINUTE).order_by("-bucket")
    queryset = (
        Instance.objects.filter(state=InstanceState.RUNNING, destroyed_at__isnull=True)
        .select_related("blueprint")
        .only("pk", "instance_id", "ip_address", "port", "socket_path", "agent_key_encrypted", "blueprint__agent_port")
        .annotate(previous_raw=Subquery(latest.values("raw")[:1]))
        .order_by("pk")
    )
    return queryset if instance_pks is None else queryset.filter(pk__in=instance_pks)


def stat_hours(samples) -> list[dict]:
    """Minute points grouped into hours (UTC): `{"instance_id", "hour", "samples", figure…}`."""
    hours = samples.annotate(hour=TruncHour("bucket", tzinfo=dt_timezone.utc)).values("instance_id", "hour")
    return list(hours.annotate(n=Count("id"), **{name: agg(name) for name, agg in STAT_HOURLY.items()}).order_by("instance_id", "hour"))


def _point(row) -> dict:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    point = {"t": get("bucket"), "samples": get("samples")}
    for name in STAT_FIGURES:
        value = get(name)
        point[name] = round(value) if value is not None and name in ("rss_bytes", "memory_limit_bytes", "restarts") else value
    return point


def instance_stats(*, instance: Instance, window: str, now=None) -> dict:
    """The instance's stats points over `window` (`1h`, `24h`: minute points; `30d`: hour points,
    the last day's minutes averaged by the hour as they will be), oldest first, and its latest
    minute point as `current`. Three queries at most."""
    now = now or timezone.now()
    span, resolution = STAT_WINDOWS[window]
    points = InstanceStatSample.objects.filter(instance=instance, bucket__gte=now - span).order_by("bucket")
    if resolution == StatResolution.MINUTE:
        series = [_point(row) for row in points.filter(resolution=StatResolution.MINUTE)]
    else:
        by_hour = {row["hour"]: {**row, "bucket": row["hour"], "samples": row["n"]} for row in stat_hours(points.filter(resolution=StatResolution.MINUTE))}
        by_hour.update({row.bucket: row for row in points.filter(resolution=StatResolution.HOUR)})  # rolled hours win
        series = [_point(by_hour[hour]) for hour in sorted(by_hour)]
    latest = InstanceStatSample.objects.filter(instance=instance, resolution=StatResolution.MINUTE).order_by("-bucket").first()
    return {
        "instance_id": instance.instance_id, "window": window, "resolution": resolution,
        "points": series, "current": _point(latest) if latest is not None else None,
    }  # fmt: skip
