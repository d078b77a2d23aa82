from __future__ import annotations

from django.db.models import Count, FilteredRelation, Q

from orchestrio.crypto import decrypt
from orchestrio.db import CompiledQuery, model_fields, model_loader

from .choices import UNFINISHED_OPERATION_STATUSES, InstanceState
from .models import Blueprint, Instance, Operation

# The record shows the instance's live custom domain: the domains app's rows, read through the
# reverse relation its model declares on Instance (`custom_domains`), as Django reads any reverse
# relation, without this app importing the domains app (docs/architecture.md).
CustomDomain = Instance.custom_domains.rel.related_model

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


def instance_listed(*, tenant, instance_scope: str | None = None):
    """The live instances a principal lists (a token scoped to one instance sees only it), in
    the list's order (the model's)."""
    queryset = instance_live(tenant=tenant)
    return queryset if instance_scope is None else queryset.filter(instance_id=instance_scope)


# The unfiltered list's count and page of ids, compiled: building and compiling the two queries
# cost Django more than running them (0.37 ms of a page's 0.45 on SQLite).
_LISTED_IDS = CompiledQuery(Instance, lambda tenant_id, instance_scope: instance_listed(tenant=tenant_id, instance_scope=instance_scope).values("instance_id"))


class ListedInstanceIds:
    """The ids `instance_listed` orders, as the paginator takes them from a queryset (`count()`
    and a slice), by compiled queries."""

    def __init__(self, *, tenant_id: str, instance_scope: str | None = None) -> None:
        self.params = {"tenant_id": tenant_id, "instance_scope": instance_scope}

    def count(self) -> int:
        return _LISTED_IDS.count(**self.params)

    def __getitem__(self, page: slice) -> list[str]:
        if not isinstance(page, slice) or page.step is not None or page.start is None or page.stop is None:
            raise TypeError("only [offset:offset + limit] slices")
        return [row["instance_id"] for row in _LISTED_IDS.page(max(0, page.stop - page.start), page.start, **self.params)]


def instance_exists(*, tenant, instance_id: str) -> bool:
    return instance_live(tenant=tenant).filter(instance_id=instance_id).exists()


def instance_counts(*, tenant) -> dict[str, int]:
    counts = instance_live(tenant=tenant).aggregate(
        instances=Count("id"), running_instances=Count("id", filter=Q(state__in=RUNNING_STATES))
    )
    return {"instances": counts["instances"], "running_instances": counts["running_instances"]}


def blueprint_visible(*, tenant):
    """The tenant's own blueprints and the built-in ones (not deleted)."""
    return Blueprint.objects.filter(Q(tenant__isnull=True) | Q(tenant=tenant), deleted_at__isnull=True)


def agent_client_for(instance, *, timeout: float = 10.0):
    from .agent_client import AgentClient, Endpoint, endpoint_for

    endpoint = endpoint_for(instance) or Endpoint(host=instance.ip_address or "127.0.0.1", port=instance.port or instance.blueprint.agent_port)
    return AgentClient(endpoint, decrypt(instance.agent_key_encrypted), timeout=timeout)


class _RecordRead:
    """How instances are read with what their API record shows: the instance's row and its
    blueprint, and its unfinished operation and live custom domain as LEFT JOINs (an instance has
    at most one of each: unique constraints in the database), in one `values()` query, built into
    models with `unfinished_operations` and `current_domains` lists (empty or of one).
    Fields not read are deferred."""

    def __init__(self, instance: tuple[str, ...], blueprint: tuple[str, ...], operation: tuple[str, ...], domain: tuple[str, ...]) -> None:
        self.fields = {Instance: instance, Blueprint: blueprint, Operation: operation, CustomDomain: domain}
        self.load_instance = model_loader(Instance, "", instance)
        self.load_blueprint = model_loader(Blueprint, "blueprint__", blueprint)
        self.load_operation = model_loader(Operation, "unfinished__", operation)
        self.load_domain = model_loader(CustomDomain, "live_domain__", domain)

    def values(self, queryset):
        return queryset.annotate(
            unfinished=FilteredRelation("operations", condition=Q(operations__status__in=UNFINISHED_OPERATION_STATUSES)),
            live_domain=FilteredRelation("custom_domains", condition=Q(custom_domains__removed_at__isnull=True)),
        ).values(
            *self.fields[Instance], *(f"blueprint__{name}" for name in self.fields[Blueprint]),
            *(f"unfinished__{name}" for name in self.fields[Operation]), *(f"live_domain__{name}" for name in self.fields[CustomDomain]),
        )  # fmt: skip

    def build(self, row: dict, blueprints: dict | None = None) -> Instance:
        """`blueprints`: the ones built so far, by id (a page's instances share a few)."""
        instance = self.load_instance(row)
        blueprints = {} if blueprints is None else blueprints
        blueprint = blueprints.get(row["blueprint__id"])
        if blueprint is None:
            blueprint = blueprints[row["blueprint__id"]] = self.load_blueprint(row)
        instance.blueprint = blueprint
        instance.unfinished_operations = [self.load_operation(row)] if row["unfinished__id"] is not None else []
        instance.current_domains = [self.load_domain(row)] if row["live_domain__id"] is not None else []
        return instance


# Every API request that names an instance reads it whole (its actions may need any field), in one
# query compiled once per connection (orchestrio/db.py): building and compiling the prefetching
# queryset cost more than half of an API GET.
_WHOLE = _RecordRead(model_fields(Instance), model_fields(Blueprint), model_fields(Operation), model_fields(CustomDomain))
_LIVE_INSTANCE = CompiledQuery(
    Instance,
    lambda tenant_id, instance_id: _WHOLE.values(Instance.objects.filter(tenant_id=tenant_id, instance_id=instance_id, destroyed_at__isnull=True).order_by())[:1],
)


def instance_get(*, tenant_id: str, instance_id: str) -> Instance | None:
    """The tenant's live instance with this id, read whole (`_RecordRead`), else None."""
    row = _LIVE_INSTANCE.row(tenant_id=tenant_id, instance_id=instance_id)
    return None if row is None else _WHOLE.build(row)


# A page of the list reads only what the record shows (InstanceSerializer, and the console's
# list: its port too): decoding the JSON it never shows (config, provider data, the blueprint's)
# and building whole blueprints cost more than anything else on a page of 50.
_RECORD = _RecordRead(
    ("id", "instance_id", "tenant_id", "blueprint_id", "plan_id", "instance_type", "region_id", "provider", "provider_instance_id",
     "ip_address", "port", "socket_path", "state", "health_status", "error_message", "labels", "last_health_check", "created_at", "updated_at"),
    ("id", "name"),
    ("id", "instance_id", "kind", "status", "requested_by", "created_at", "started_at", "finished_at", "error_code", "error_message"),
    ("id", "instance_id", "domain"),
)  # fmt: skip


# By instance_id alone, unique among live instances (its index answers each id): with the tenant
# in the WHERE clause too, SQLite without statistics scanned the tenant's index instead, 4 ms for
# 10,000 instances. The tenant is checked on every row. On PostgreSQL the ids are one array
# parameter (`any_of`, orchestrio/db.py): one prepared statement and plan for every page.
_PAGE_RECORDS = CompiledQuery(
    Instance,
    lambda instance_ids: _RECORD.values(Instance.objects.filter(instance_id__any_of=instance_ids, destroyed_at__isnull=True).order_by()),
)


def instance_records(*, tenant_id: str, instance_ids) -> list[Instance]:
    """The tenant's live instances with these ids, in that order, loaded for their API record: a
    page of the list (its ids are an index range; this is one query, compiled once per page
    length and connection: building and compiling it cost as much as running it and building
    the 50 records)."""
    instance_ids = list(instance_ids)
    if not instance_ids:
        return []
    rows = {row["instance_id"]: row for row in _PAGE_RECORDS.rows(instance_ids=instance_ids) if row["tenant_id"] == tenant_id}
    blueprints: dict = {}
    return [_RECORD.build(rows[instance_id], blueprints) for instance_id in instance_ids if instance_id in rows]


def instance_by_idempotency_key(*, principal, key: str):
    """The newest instance this principal created with this Idempotency-Key (keys are per
    principal), or one created before keys had principals, else None."""
    return (
        Instance.objects.filter(tenant=principal.tenant, idempotency_key=key, idempotency_principal__in=(principal.key, ""))
        .order_by("-created_at")
        .first()
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
