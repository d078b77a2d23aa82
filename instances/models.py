"""Catalogue (plans, regions, blueprints), instances, their operations and lifecycle log.

`Instance.state` is changed only through `instances.lifecycle` (the state machine), called by
the services and jobs in this app.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from orchestrio.models import SLUG_PATTERN, api_datetime

from .choices import (
    UNFINISHED_OPERATION_STATUSES,
    ErrorCode,
    HealthStatus,
    InstanceState,
    LogLevel,
    OperationKind,
    OperationReason,
    OperationStatus,
    Provider,
    ProviderApi,
    StatResolution,
)
from .hostnames import validate_instance_id

BLUEPRINT_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"


class InstancePlan(models.Model):
    """A machine size: what an instance runs on and what it costs per hour."""

    id = models.CharField("plan id", primary_key=True, max_length=63, validators=[RegexValidator(SLUG_PATTERN)])
    name = models.CharField(max_length=100)
    instance_type = models.CharField(max_length=64, help_text="EC2 instance type, e.g. t3.small.")
    vcpus = models.PositiveSmallIntegerField()
    memory_mib = models.PositiveIntegerField()
    price_per_hour = models.DecimalField(max_digits=10, decimal_places=4)
    supports_hibernation = models.BooleanField(
        default=False, help_text="Suspend hibernates the machine (else a plain stop)."
    )
    available = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.id


class Region(models.Model):
    id = models.CharField(primary_key=True, max_length=16)
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=16, choices=Provider.choices)
    provider_region = models.CharField(max_length=32, blank=True, help_text="AWS region, e.g. us-east-1.")
    enabled = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.id

    @property
    def available(self) -> bool:
        return self.enabled and self.provider in settings.ENABLED_PROVIDERS


class Blueprint(models.Model):
    """What an instance runs and how it is launched. Built-ins have no tenant and are read-only."""

    tenant = models.ForeignKey(
        "orchestrio.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="blueprints"
    )
    name = models.CharField(max_length=63, validators=[RegexValidator(BLUEPRINT_NAME_PATTERN)])
    description = models.CharField(max_length=255, blank=True)
    provider_api = models.CharField(max_length=16, choices=ProviderApi.choices, default=ProviderApi.RUN_INSTANCES)
    image_id = models.CharField(max_length=255, blank=True, help_text="AMI id, or resolve:ssm:<parameter>.")
    instance_type = models.CharField(max_length=64, blank=True, help_text="Overrides the plan's type when set.")
    # EC2Fleet / SpotFleet only: instance type → weight (AWS's WeightedCapacity), the on-demand
    # share of a launch's capacity, and the spot allocation strategy in the API's own spelling.
    machine_types = models.JSONField(default=dict, blank=True, help_text="EC2Fleet/SpotFleet: {instance type: weight}.")
    on_demand_percentage = models.PositiveSmallIntegerField(default=100, help_text="EC2Fleet/SpotFleet: on-demand share, 0–100.")
    allocation_strategy = models.CharField(max_length=40, blank=True, help_text="EC2Fleet/SpotFleet: spot allocation strategy.")
    subnet_ids = models.JSONField(default=list, blank=True)
    security_group_ids = models.JSONField(default=list, blank=True)
    key_name = models.CharField(max_length=255, blank=True)
    iam_instance_profile = models.CharField(max_length=255, blank=True)
    user_data = models.TextField(blank=True, help_text="Extra shell run after the agent is installed.")
    tags = models.JSONField(default=dict, blank=True)
    health_path = models.CharField(max_length=255, default="/health")
    agent_port = models.PositiveIntegerField(default=8080)
    command = models.JSONField(
        default=list, blank=True, help_text="Local provider: argv to run instead of the bundled agent."
    )
    task_roots = models.JSONField(default=list, blank=True, help_text="Allowed directories for task scripts.")
    # Scale to zero (docs/lifecycle.md, "Sleep and wake"): with no traffic for this long a running
    # instance is put to sleep, and the next request wakes it. Null or 0: never.
    idle_timeout_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Sleep after this long without traffic; empty or 0: never.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # A deleted blueprint that destroyed instances still reference is kept, hidden.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], condition=Q(deleted_at__isnull=True), name="blueprint_tenant_name_unique"
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(tenant__isnull=True, deleted_at__isnull=True),
                name="blueprint_builtin_name_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_builtin(self) -> bool:
        return self.tenant_id is None


def instance_url(hostname: str) -> str:
    """The URL of an instance hostname: served by the same edge as the console, so with
    PUBLIC_URL's scheme and port (`https://web-01.instances.example.com` in production,
    `http://web-01.instances.localhost:8000` under `make run`)."""
    scheme, port = _scheme_and_port(settings.PUBLIC_URL)
    return f"{scheme}://{hostname}{port}"


def gateway_url() -> str:
    """Where callers reach `/gateway/…` and `/tunnel/…`: the gateway host when there is one (with
    PUBLIC_URL's scheme and port, like instance hostnames), else the console's PUBLIC_URL."""
    host = getattr(settings, "GATEWAY_HOST", "")
    if not host:
        return settings.PUBLIC_URL
    scheme, port = _scheme_and_port(settings.PUBLIC_URL)
    return f"{scheme}://{host}{port}"


@lru_cache(maxsize=4)
def _scheme_and_port(public_url: str) -> tuple[str, str]:
    public = urlsplit(public_url)
    return public.scheme or "https", f":{public.port}" if public.port else ""


class Instance(models.Model):
    instance_id = models.CharField(max_length=63, validators=[validate_instance_id])
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="instances")
    blueprint = models.ForeignKey(Blueprint, on_delete=models.PROTECT, related_name="instances")
    plan = models.ForeignKey(InstancePlan, on_delete=models.PROTECT, related_name="instances")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="instances")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    instance_type = models.CharField(max_length=64, help_text="The machine size now (changes on resize).")
    provider_instance_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True, help_text="The agent's port on ip_address.")
    # Local instances have no address on the host's network (a namespace of their own): the
    # control plane reaches their agent through this unix socket.
    socket_path = models.CharField(max_length=255, blank=True, help_text="The agent's unix socket (local provider).")
    state = models.CharField(max_length=16, choices=InstanceState.choices, default=InstanceState.PENDING)
    state_changed_at = models.DateTimeField(default=timezone.now)
    health_status = models.CharField(max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN)
    health_failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed health checks.")
    last_health_check = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    labels = models.JSONField(default=dict, blank=True)
    # Overrides the blueprint's idle timeout: null = the blueprint's, 0 = never sleep.
    idle_timeout_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Sleep after this long without traffic; empty: the blueprint's; 0: never.")
    config = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    # The capability that created and runs this instance for the tenant ("functions": the tenant's
    # function instance, functions/remote.py); "" for the tenant's own. Managed instances do not
    # count toward max_instances (their capability has its own limit); one per capability and tenant.
    managed_by = models.CharField(max_length=32, blank=True, default="", editable=False)
    # Fernet-encrypted key the control plane presents to the instance agent.
    agent_key_encrypted = models.TextField(blank=True, editable=False)
    agent_key_rotated_at = models.DateTimeField(null=True, blank=True)
    # A rotation under way (encrypted like the key): recorded before the new key is sent to the
    # agent, so that no row lock is held over the network and a rotation cut short is known.
    agent_key_pending_encrypted = models.TextField(blank=True, editable=False)
    # Provider-specific facts (local: pid, process start time, state dir; aws: client token, hibernated).
    provider_data = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # Whose Idempotency-Key it is (`Principal.key`): keys are scoped per principal. "" on instances
    # created before that.
    idempotency_principal = models.CharField(max_length=64, blank=True, default="")
    log_seq = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # instance_id is the hostname label of access_url: unique among live instances,
            # freed when an instance is destroyed.
            models.UniqueConstraint(
                fields=["instance_id"], condition=Q(destroyed_at__isnull=True), name="instance_id_live_unique"
            ),
            models.UniqueConstraint(
                fields=["tenant", "managed_by"], condition=Q(destroyed_at__isnull=True) & ~Q(managed_by=""), name="instance_one_managed_per_tenant"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "destroyed_at", "state"], name="instance_tenant_live_state"),
            # The API's list: a tenant's live instances, newest first, a page of their ids at a time
            # from the index alone (no sort, and no table reads for the rows an offset skips).
            models.Index(
                fields=["tenant", "-created_at", "-id", "instance_id"], condition=Q(destroyed_at__isnull=True), name="instance_tenant_live_page"
            ),
            models.Index(fields=["state", "provider"], name="instance_state_provider"),
            models.Index(fields=["tenant", "idempotency_key"], name="instance_tenant_idem"),
        ]

    def __str__(self) -> str:
        return self.instance_id

    @property
    def hostname(self) -> str:
        return f"{self.instance_id}.{settings.BASE_DOMAIN}"

    @property
    def access_url(self) -> str:
        return instance_url(self.hostname)

    @property
    def is_live(self) -> bool:
        return self.destroyed_at is None

    @property
    def effective_idle_timeout_seconds(self) -> int:
        """The idle timeout in force: the instance's, else its blueprint's; 0 = never sleeps."""
        own = self.idle_timeout_seconds
        return (own if own is not None else self.blueprint.idle_timeout_seconds) or 0


class Operation(models.Model):
    """One lifecycle operation on an instance (the NetBox Job pattern)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="operations")
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=OperationKind.choices)
    status = models.CharField(max_length=16, choices=OperationStatus.choices, default=OperationStatus.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    rq_job_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    requested_by = models.CharField(max_length=254, help_text="Email, token prefix, staff user or system.")
    requested_by_type = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=32, choices=ErrorCode.choices, blank=True)
    error_message = models.TextField(blank=True)
    # Why it was started when no person asked (a sleep after idle, a wake by a request); "" otherwise.
    reason = models.CharField(max_length=16, choices=OperationReason.choices, blank=True, default="")
    # Set while the machine is up and the operation waits for its health path with no worker
    # holding it: the readiness sweep finishes it, or fails it at this time.
    ready_deadline = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["instance", "status"], name="operation_instance_status"),
            models.Index(fields=["ready_deadline"], condition=Q(ready_deadline__isnull=False), name="operation_awaiting_ready"),
        ]
        constraints = [
            # The database itself refuses a second unfinished operation on one instance.
            models.UniqueConstraint(
                fields=["instance"],
                condition=Q(status__in=UNFINISHED_OPERATION_STATUSES),
                name="operation_one_unfinished_per_instance",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.instance_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status not in UNFINISHED_OPERATION_STATUSES

    def summary(self) -> dict:
        """The operation as the API shows it (also the `operation` of a 409 body)."""

        return {
            "id": self.pk,
            "kind": self.kind,
            "status": self.status,
            "requested_by": self.requested_by,
            "created_at": api_datetime(self.created_at),
            "started_at": api_datetime(self.started_at),
            "finished_at": api_datetime(self.finished_at),
            "error_code": self.error_code or None,
            "error_message": self.error_message or None,
            "reason": self.reason or None,
        }


class LogLine(models.Model):
    """A lifecycle log line of an instance, in `seq` order."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="log_lines")
    operation = models.ForeignKey(Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="log_lines")
    seq = models.PositiveIntegerField()
    stage = models.CharField(max_length=32)
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["instance_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["instance", "seq"], name="logline_instance_seq_unique")]

    def __str__(self) -> str:
        return f"{self.instance_id}#{self.seq} {self.stage}: {self.message[:60]}"


class StateChange(models.Model):
    """Every state transition, for audit and for metering instance-hours."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="state_changes")
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="+")
    from_state = models.CharField(max_length=16, choices=InstanceState.choices)
    to_state = models.CharField(max_length=16, choices=InstanceState.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["instance", "created_at"], name="statechange_instance_created"),
            models.Index(fields=["tenant", "created_at"], name="statechange_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}: {self.from_state} → {self.to_state}"


class InstanceStatSample(models.Model):
    """One point of an instance's stats (docs/observability.md "Stats"): a minute's, sampled from
    its agent by `instances.jobs.sample_stats`, or an hour's, the average of its minutes once they
    are a day old. Rates are per second over the time since the previous sample of the same agent
    run; null when there is none to compare with (the first sample, a restart)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="stat_samples")
    resolution = models.CharField(max_length=8, choices=StatResolution.choices)
    bucket = models.DateTimeField(help_text="The start of the minute or hour (UTC).")
    samples = models.PositiveIntegerField(default=1, help_text="Minute points averaged into an hour point (1 for a minute).")
    cpu_percent = models.FloatField(null=True, help_text="CPU time of the instance's processes per second of wall time × 100 (100 = one core).")
    rss_bytes = models.BigIntegerField(null=True)
    memory_limit_bytes = models.BigIntegerField(null=True)
    net_rx_bytes_per_second = models.FloatField(null=True)
    net_tx_bytes_per_second = models.FloatField(null=True)
    disk_read_bytes_per_second = models.FloatField(null=True)
    disk_write_bytes_per_second = models.FloatField(null=True)
    uptime_seconds = models.FloatField(null=True)
    restarts = models.PositiveIntegerField(null=True)
    # The agent's counters as last read (minute points): the next sample's rates start from them.
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["instance_id", "resolution", "bucket"]
        constraints = [models.UniqueConstraint(fields=["instance", "resolution", "bucket"], name="statsample_instance_res_bucket")]
        indexes = [models.Index(fields=["resolution", "bucket"], name="statsample_res_bucket")]  # the roll-up and the expiry

    def __str__(self) -> str:
        return f"{self.instance_id} {self.resolution} {self.bucket:%Y-%m-%d %H:%M}"
