from __future__ import annotations

import re

from rest_framework import serializers

from orchestrio.api.fields import BlankAsNullCharField
from orchestrio.api.serializers import SubscriptionPlanSerializer
from orchestrio.api.strict import BodySerializer, StrictTypesMixin
from orchestrio.models import SLUG_PATTERN

from .. import hostnames
from ..choices import HealthStatus, InstanceState, OperationKind, OperationReason, OperationStatus, Provider, ProviderApi, StatResolution, StatWindow
from ..models import BLUEPRINT_NAME_PATTERN, Blueprint, InstancePlan, LogLine, Region



class OperationSerializer(serializers.Serializer):
    """An operation as the API shows it (as `Operation.summary()`, the `operation` of a 409 body,
    does: tests/instances/test_api_instances.py)."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=OperationKind.choices, read_only=True)
    status = serializers.ChoiceField(choices=OperationStatus.choices, read_only=True)
    requested_by = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    started_at = serializers.DateTimeField(allow_null=True, read_only=True)
    finished_at = serializers.DateTimeField(allow_null=True, read_only=True)
    error_code = BlankAsNullCharField(read_only=True)
    error_message = BlankAsNullCharField(read_only=True)
    reason = serializers.ChoiceField(
        choices=OperationReason.choices, allow_null=True, read_only=True,
        help_text="Why it started when no person asked: `idle` (a sleep after the idle timeout), `request` (a wake by a request); null otherwise.",
    )  # fmt: skip

    def to_representation(self, operation):
        data = super().to_representation(operation)
        data["reason"] = data["reason"] or None
        return data


class TenantOperationSerializer(OperationSerializer):
    """An operation of `GET /operations`: the operation and the instance it is on."""

    instance_id = serializers.CharField(source="instance.instance_id", read_only=True)
    instance_destroyed = serializers.SerializerMethodField()

    def get_instance_destroyed(self, operation) -> bool:
        return operation.instance.destroyed_at is not None


class InstanceSerializer(serializers.Serializer):
    """An instance's API record, of an instance read by `selectors.with_record` (which joins its
    unfinished operation and live custom domain in the same query; without them, here, each
    instance of a list would cost queries of its own)."""

    instance_id = serializers.CharField(read_only=True)
    tenant_id = serializers.CharField(read_only=True)
    blueprint_name = serializers.CharField(source="blueprint.name", read_only=True)
    plan_id = serializers.CharField(read_only=True)
    instance_type = serializers.CharField(read_only=True)
    region = serializers.CharField(source="region_id", read_only=True)
    provider = serializers.ChoiceField(choices=Provider.choices, read_only=True)
    provider_instance_id = serializers.CharField(read_only=True)
    ip_address = serializers.IPAddressField(allow_null=True, read_only=True)
    state = serializers.ChoiceField(choices=InstanceState.choices, read_only=True)
    health_status = serializers.ChoiceField(choices=HealthStatus.choices, read_only=True)
    access_url = serializers.CharField(read_only=True)
    custom_domain = serializers.CharField(source="live_domain_name", allow_null=True, read_only=True)
    # Not set when there is none (unfinished_operation_pk is None): null.
    operation = OperationSerializer(source="unfinished_operation", allow_null=True, read_only=True)
    error_message = BlankAsNullCharField(read_only=True)
    labels = serializers.DictField(child=serializers.CharField(), read_only=True)
    idle_timeout_seconds = serializers.IntegerField(
        allow_null=True, read_only=True, help_text="The instance's own idle timeout: null = its blueprint's, 0 = never sleep."
    )
    effective_idle_timeout_seconds = serializers.IntegerField(
        read_only=True, help_text="The idle timeout in force (the instance's, else the blueprint's); 0: it never sleeps."
    )
    managed_by = BlankAsNullCharField(
        read_only=True, help_text="null for the tenant's own instances; `functions` for the function instance Orchestrio runs the tenant's functions on."
    )
    last_health_check = serializers.DateTimeField(allow_null=True, read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance):
        if not hasattr(instance, "unfinished_operation_pk"):
            raise TypeError(f"instance {instance.instance_id!r} was not read by selectors.with_record: its record would be incomplete")
        return super().to_representation(instance)


class InstanceCreateSerializer(BodySerializer):
    instance_id = serializers.CharField(max_length=63, help_text="The hostname label of its access URL: " + hostnames.MESSAGE + ".")
    blueprint_name = serializers.RegexField(BLUEPRINT_NAME_PATTERN, max_length=63, default="OpenClaw")
    plan_id = serializers.RegexField(SLUG_PATTERN, max_length=63, default="openclaw-basic")
    region = serializers.CharField(max_length=16, required=False, allow_null=True, default=None, help_text="Default: the installation's DEFAULT_REGION.")
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    config = serializers.DictField(required=False, default=dict, help_text="Initial platform config.")
    idle_timeout_seconds = serializers.IntegerField(
        required=False, allow_null=True, default=None,
        help_text="Sleep after this many seconds without traffic (null: the blueprint's; 0: never).",
    )


class InstanceUpdateSerializer(BodySerializer):
    """PATCH /instances/{id}: the instance's own settings; only the fields present change."""

    idle_timeout_seconds = serializers.IntegerField(
        allow_null=True, help_text="Sleep after this many seconds without traffic (null: the blueprint's; 0: never)."
    )


class ResizeSerializer(BodySerializer):
    """Exactly one of the two (the service's rule)."""

    new_instance_type = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)
    plan_id = serializers.CharField(max_length=63, required=False, allow_null=True, default=None)


class DestroyResultSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    state = serializers.CharField()
    already_deleted = serializers.BooleanField(required=False)


class WaitQuerySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=InstanceState.choices, default=InstanceState.RUNNING)
    timeout = serializers.IntegerField(min_value=1, max_value=300, default=60)


class LogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = LogLine
        fields = ["seq", "stage", "level", "message", "created_at"]
        read_only_fields = fields


class LogQuerySerializer(serializers.Serializer):
    after_seq = serializers.IntegerField(min_value=0, required=False, help_text="Only lines after this seq.")


class AppLogQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, required=False, default=0, help_text="Only lines after this sequence number (`last_seq` of an earlier answer).")
    since = serializers.DateTimeField(required=False, default=None, help_text="Only lines written at or after this time (ISO 8601).")
    tail = serializers.IntegerField(min_value=1, max_value=1000, default=100, help_text="At most this many lines: the latest.")
    stream = serializers.ChoiceField(choices=["stdout", "stderr"], required=False, default="", help_text="One stream; default both.")
    q = serializers.CharField(max_length=200, required=False, default="", help_text="Only lines containing this text (case-insensitive).")
    follow = serializers.BooleanField(default=False, help_text="Server-sent events: the lines, then each new one as it is written.")
    timeout = serializers.IntegerField(min_value=1, max_value=300, default=60, help_text="Follow: end the stream after this many seconds (reconnect with Last-Event-ID).")


class StatsQuerySerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=StatWindow.choices, default="1h", help_text="1h and 24h: a point a minute; 30d: a point an hour.")


class StatPointSerializer(serializers.Serializer):
    t = serializers.DateTimeField(help_text="The start of the point's minute or hour (UTC).")
    samples = serializers.IntegerField(help_text="Minute points averaged into this one (1 for a minute point).")
    cpu_percent = serializers.FloatField(allow_null=True, help_text="CPU seconds of the instance's processes per second × 100 (100 = one core busy).")
    rss_bytes = serializers.IntegerField(allow_null=True, help_text="Resident memory of the instance's processes.")
    memory_limit_bytes = serializers.IntegerField(allow_null=True, help_text="The instance's memory limit (its cgroup's, else its address-space limit); null: none.")
    net_rx_bytes_per_second = serializers.FloatField(allow_null=True)
    net_tx_bytes_per_second = serializers.FloatField(allow_null=True)
    disk_read_bytes_per_second = serializers.FloatField(allow_null=True)
    disk_write_bytes_per_second = serializers.FloatField(allow_null=True)
    uptime_seconds = serializers.FloatField(allow_null=True, help_text="Since the instance's process (its agent) started.")
    restarts = serializers.IntegerField(allow_null=True, help_text="Starts of the instance's process − 1.")


class StatsSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    window = serializers.ChoiceField(choices=StatWindow.choices)
    resolution = serializers.ChoiceField(choices=StatResolution.choices)
    points = StatPointSerializer(many=True, help_text="Oldest first; rates are null where there was no earlier sample to compare with.")
    current = StatPointSerializer(allow_null=True, help_text="The latest minute point (null before the first sample).")


class AppLogLineSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    ts = serializers.CharField(help_text="When the line was written (UTC, ISO 8601).")
    stream = serializers.ChoiceField(choices=["stdout", "stderr"])
    line = serializers.CharField()


class AppLogsSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    lines = AppLogLineSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="Pass as `after` to read only what is newer.")
    truncated = serializers.BooleanField(help_text="More lines matched than `tail` returned.")
    starts = serializers.IntegerField(help_text="How many times the instance's process has started.")
    restarts = serializers.IntegerField(help_text="starts − 1 (0 before the first start).")
    last_exit_code = serializers.IntegerField(allow_null=True, help_text="The code of the process's last exit, if it has exited.")
    last_exit_at = serializers.CharField(allow_null=True)


class HealthProbeSerializer(serializers.Serializer):
    healthy = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    checked_at = serializers.DateTimeField()
    body = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class ByIdempotencyKeySerializer(serializers.Serializer):
    found = serializers.BooleanField()
    instance_id = serializers.CharField(allow_null=True)
    state = serializers.CharField(allow_null=True)
    provisioning_stage = serializers.CharField(allow_null=True)
    logs = LogLineSerializer(many=True)


class CleanupResultSerializer(serializers.Serializer):
    cleaned = serializers.IntegerField()
    errors = serializers.IntegerField()


class ConfigSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    config = serializers.DictField()
    applied = serializers.BooleanField(required=False)
    agent_config_digest = serializers.CharField(required=False, allow_null=True)


class ConfigQuerySerializer(serializers.Serializer):
    apply = serializers.BooleanField(default=False)


class RuntimeSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    state = serializers.CharField()
    health_status = serializers.CharField()
    health_failures = serializers.IntegerField()
    last_health_check = serializers.DateTimeField(allow_null=True)
    provisioning_stage = serializers.CharField(allow_null=True)
    operation = OperationSerializer(allow_null=True)
    last_error = serializers.DictField(allow_null=True)
    message = serializers.CharField(help_text="What the control plane knows, in words.")
    agent = serializers.DictField(help_text="`reachable`, and the agent's /api/status or why it was not asked.")
    recent_logs = LogLineSerializer(many=True)


class RotateKeyResultSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    rotated_at = serializers.DateTimeField()


# --- blueprints --------------------------------------------------------------------------------

CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


def snake_case_keys(data):
    """Blueprint bodies accept camelCase (imageId) as well as snake_case (image_id)."""
    if not isinstance(data, dict):
        return data
    return {CAMEL_RE.sub("_", key).lower() if isinstance(key, str) else key: value for key, value in data.items()}


class StringListField(serializers.ListField):
    child = serializers.CharField(max_length=255)


class BlueprintSerializer(serializers.Serializer):
    """A blueprint as the API shows it (what BlueprintWriteSerializer takes, in snake_case)."""

    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    provider_api = serializers.ChoiceField(choices=ProviderApi.choices, read_only=True)
    image_id = serializers.CharField(read_only=True)
    instance_type = serializers.CharField(read_only=True)
    machine_types = serializers.DictField(child=serializers.IntegerField(), read_only=True, help_text="EC2Fleet/SpotFleet: instance type → weight (AWS's WeightedCapacity).")
    on_demand_percentage = serializers.IntegerField(read_only=True, help_text="EC2Fleet/SpotFleet: the on-demand share of a launch, 0–100 (the rest is spot).")
    allocation_strategy = serializers.CharField(read_only=True, help_text="EC2Fleet/SpotFleet: the spot allocation strategy, in the API's own spelling; empty: its default.")
    subnet_ids = serializers.ListField(child=serializers.CharField(), read_only=True)
    security_group_ids = serializers.ListField(child=serializers.CharField(), read_only=True)
    key_name = serializers.CharField(read_only=True)
    iam_instance_profile = serializers.CharField(read_only=True)
    user_data = serializers.CharField(read_only=True)
    tags = serializers.DictField(child=serializers.CharField(), read_only=True)
    health_path = serializers.CharField(read_only=True)
    agent_port = serializers.IntegerField(read_only=True)
    command = serializers.ListField(child=serializers.CharField(), read_only=True)
    task_roots = serializers.ListField(child=serializers.CharField(), read_only=True)
    idle_timeout_seconds = serializers.IntegerField(allow_null=True, read_only=True, help_text="Instances sleep after this long without traffic; null or 0: never.")
    builtin = serializers.BooleanField(source="is_builtin", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class BlueprintWriteSerializer(StrictTypesMixin, serializers.ModelSerializer):
    """A blueprint's settings as POST/PUT/PATCH /blueprints take them (camelCase or snake_case)."""

    name = serializers.RegexField(BLUEPRINT_NAME_PATTERN, max_length=63)
    provider_api = serializers.ChoiceField(choices=ProviderApi.choices, default=ProviderApi.RUN_INSTANCES)
    image_id = serializers.RegexField(r"^(ami-[0-9a-f]{8,17}|resolve:ssm:\S+)$", max_length=255, required=False, allow_blank=True, error_messages={"invalid": "image_id must be an AMI id (ami-…) or resolve:ssm:<parameter>"})
    instance_type = serializers.CharField(max_length=64, required=False, allow_blank=True, help_text="Like t3.small (checked by the service).")
    machine_types = serializers.DictField(
        child=serializers.IntegerField(), required=False,
        help_text="EC2Fleet/SpotFleet: 1–20 instance types with their weights (whole numbers, 1–1000), like {\"t3.micro\": 1, \"t3.small\": 2}; empty: the instance's type alone.",
    )  # fmt: skip
    on_demand_percentage = serializers.IntegerField(required=False, help_text="EC2Fleet/SpotFleet: the on-demand share of a launch's capacity, 0–100 (100, the default: all on-demand).")
    allocation_strategy = serializers.CharField(
        max_length=40, required=False, allow_blank=True,
        help_text="EC2Fleet: price-capacity-optimized (default), lowest-price, capacity-optimized, diversified; "
        "SpotFleet: priceCapacityOptimized (default), lowestPrice, capacityOptimized, diversified.",
    )  # fmt: skip
    subnet_ids = serializers.ListField(child=serializers.RegexField(r"^subnet-[0-9a-f]{8,17}$", error_messages={"invalid": "subnet ids look like subnet-0abc1234"}), required=False, max_length=16)
    security_group_ids = serializers.ListField(child=serializers.RegexField(r"^sg-[0-9a-f]{8,17}$", error_messages={"invalid": "security group ids look like sg-0abc1234"}), required=False, max_length=16)
    key_name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    iam_instance_profile = serializers.CharField(max_length=255, required=False, allow_blank=True)
    user_data = serializers.CharField(max_length=16384, required=False, allow_blank=True, trim_whitespace=False)
    tags = serializers.DictField(child=serializers.CharField(max_length=256, allow_blank=True), required=False)
    health_path = serializers.RegexField(r"^/[^\s]*$", max_length=255, required=False, error_messages={"invalid": "health_path must start with /"})
    agent_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    command = serializers.ListField(child=serializers.CharField(max_length=4096), required=False, max_length=64)
    task_roots = serializers.ListField(child=serializers.RegexField(r"^/\S*$", error_messages={"invalid": "task roots are absolute paths"}), required=False, max_length=16)
    idle_timeout_seconds = serializers.IntegerField(
        required=False, allow_null=True, help_text="Sleep after this many seconds without traffic (checked by the service); null or 0: never."
    )
    builtin = serializers.BooleanField(source="is_builtin", read_only=True)

    class Meta:
        model = Blueprint
        fields = [
            "name", "description", "provider_api", "image_id", "instance_type", "machine_types", "on_demand_percentage",
            "allocation_strategy", "subnet_ids", "security_group_ids", "key_name", "iam_instance_profile", "user_data", "tags", "health_path", "agent_port", "command",
            "task_roots", "idle_timeout_seconds", "builtin", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["builtin", "created_at", "updated_at"]

    def to_internal_value(self, data):
        return super().to_internal_value(snake_case_keys(data))

    def validate_tags(self, tags):
        if len(tags) > 40:
            raise serializers.ValidationError("at most 40 tags")
        for key in tags:
            if not key or len(key) > 128:
                raise serializers.ValidationError("tag keys are 1–128 characters")
            if key.lower().startswith(("orchestrio:", "aws:")):
                raise serializers.ValidationError(f"tag key {key!r} uses a reserved prefix (orchestrio:, aws:)")
        return tags

    def validate_task_roots(self, roots):
        for root in roots:
            if ".." in root.split("/"):
                raise serializers.ValidationError("task roots must not contain '..'")
        return roots

    def validate_provider_api(self, value):
        from ..choices import SUPPORTED_PROVIDER_APIS

        if value not in SUPPORTED_PROVIDER_APIS:
            raise serializers.ValidationError(f"{value} is not supported; use RunInstances, EC2Fleet or SpotFleet")
        return value


class BlueprintValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = serializers.ListField(child=serializers.DictField())
    warnings = serializers.ListField(child=serializers.CharField())


class InstancePlanSerializer(serializers.ModelSerializer):
    plan_id = serializers.CharField(source="id")
    price_per_hour = serializers.DecimalField(max_digits=10, decimal_places=4, coerce_to_string=True)

    class Meta:
        model = InstancePlan
        fields = ["plan_id", "name", "instance_type", "vcpus", "memory_mib", "price_per_hour", "supports_hibernation"]


class CatalogueSerializer(serializers.Serializer):
    instance_plans = InstancePlanSerializer(many=True)
    subscription_plans = SubscriptionPlanSerializer(many=True)


class RegionSerializer(serializers.ModelSerializer):
    available = serializers.BooleanField(read_only=True)

    class Meta:
        model = Region
        fields = ["id", "name", "provider", "provider_region", "available"]
