from __future__ import annotations

from rest_framework import serializers

from instances.api.serializers import OperationSerializer
from instances.models import BLUEPRINT_NAME_PATTERN
from orchestrio.api.strict import BodySerializer
from orchestrio.models import SLUG_PATTERN

from ..choices import BatchStatus, RequestKind, RequestStatus


class FleetRequestCreateSerializer(BodySerializer):
    blueprint_name = serializers.RegexField(BLUEPRINT_NAME_PATTERN, max_length=63, default="OpenClaw")
    count = serializers.IntegerField(help_text="1 to FLEET_REQUEST_MAX_COUNT (100 by default), within the plan's room.")
    plan_id = serializers.RegexField(SLUG_PATTERN, max_length=63, default="openclaw-basic")
    region = serializers.CharField(max_length=16, required=False, allow_null=True, default=None, help_text="Default: the installation's DEFAULT_REGION.")
    instance_id_prefix = serializers.CharField(
        max_length=59, required=False, allow_null=True, default=None,
        help_text="The instances are <prefix>-1 … <prefix>-<count>; default: the request's id.",
    )  # fmt: skip
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)


class FleetReturnSerializer(BodySerializer):
    instance_ids = serializers.ListField(child=serializers.CharField(max_length=63), allow_empty=False, max_length=1000)


class FleetItemSerializer(serializers.Serializer):
    """One instance of a request: its state now, and the operation the request started on it."""

    instance_id = serializers.CharField(source="instance.instance_id")
    state = serializers.CharField(source="instance.state")
    destroyed = serializers.SerializerMethodField()
    operation = OperationSerializer(allow_null=True)
    reason = serializers.SerializerMethodField(help_text="Why it failed, or why nothing was done (an instance already destroyed).")

    def get_destroyed(self, item) -> bool:
        return item.instance.destroyed_at is not None

    def get_reason(self, item) -> str | None:
        operation = item.operation
        if operation is not None and operation.status == "failed":
            return f"{operation.error_code}: {operation.error_message}" if operation.error_code else operation.error_message or "failed"
        return item.note or None


class FleetRequestSerializer(serializers.Serializer):
    """A request as listed: what was asked and where it stands (counts of its instances)."""

    request_id = serializers.CharField()
    kind = serializers.ChoiceField(choices=RequestKind.choices)
    status = serializers.ChoiceField(choices=RequestStatus.choices)
    count = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    blueprint_name = serializers.CharField(allow_blank=True)
    plan_id = serializers.CharField(allow_blank=True)
    region = serializers.CharField(allow_blank=True)
    instance_id_prefix = serializers.CharField(allow_blank=True)
    labels = serializers.DictField(child=serializers.CharField())
    returns = serializers.CharField(source="returns.request_id", allow_null=True, default=None, help_text="For a return: the request it returns.")
    requested_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class FleetCallSerializer(serializers.Serializer):
    """The one EC2 Fleet / Spot Fleet call that launched an acquire request's machines (docs/fleet.md)."""

    provider_api = serializers.CharField(help_text="EC2Fleet or SpotFleet.")
    status = serializers.ChoiceField(choices=BatchStatus.choices, help_text="launching, then assigned once its machines are the instances'.")
    fleet_id = serializers.CharField(allow_blank=True, help_text="The EC2 Fleet id or the Spot Fleet request id.")
    launched = serializers.IntegerField(help_text="How many machines AWS launched for the request.")
    reasons = serializers.ListField(child=serializers.CharField(), help_text="AWS's reasons, when it launched fewer than asked.")


class FleetRequestDetailSerializer(FleetRequestSerializer):
    fleet_call = FleetCallSerializer(
        source="batch", allow_null=True, read_only=True,
        help_text="From an EC2Fleet or SpotFleet blueprint on AWS: the one fleet call for the whole batch; else null.",
    )  # fmt: skip
    instances = FleetItemSerializer(source="ordered_items", many=True)
