from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from instances.models import BLUEPRINT_NAME_PATTERN
from orchestrio.api.fields import BlankAsNullCharField
from orchestrio.api.strict import BodySerializer
from orchestrio.models import SLUG_PATTERN

from ..choices import DeploymentEnvironment
from ..services import NAME_MAX_LENGTH, NAME_MESSAGE, webhook_url


class DeploymentStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class DeploymentSerializer(serializers.Serializer):
    """A deployment's API record, of a deployment read by `selectors.with_latest_revision` (else
    its latest revision and steps are queried for it)."""

    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    environment = serializers.CharField()
    blueprint_name = serializers.CharField(source="blueprint.name")
    region = serializers.CharField(source="region_id")
    plan_id = serializers.CharField()
    status = serializers.CharField()
    instance_id = serializers.CharField(source="instance.instance_id", allow_null=True)
    webhook_url = serializers.SerializerMethodField()
    revision = serializers.IntegerField(source="current_revision", help_text="The revision in force (0 before the first is applied).")
    target_revision = serializers.IntegerField(allow_null=True, help_text="The revision being applied.")
    config = serializers.DictField(source="latest_revision.config", default=dict, help_text="The config of the latest revision.")
    secret_keys = serializers.ListField(
        child=serializers.CharField(), source="latest_revision.secret_keys", default=list, help_text="Names only: secret values are never returned."
    )
    error = BlankAsNullCharField()
    steps = DeploymentStepSerializer(many=True, source="latest_revision.steps_in_order", default=list, help_text="The steps of the latest revision's run.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_webhook_url(self, deployment) -> str | None:
        return webhook_url(deployment=deployment)


class DeploymentCreateSerializer(BodySerializer):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH, help_text=NAME_MESSAGE + " (checked by the service).")
    blueprint_name = serializers.RegexField(BLUEPRINT_NAME_PATTERN, max_length=63, default="OpenClaw")
    environment = serializers.CharField(default=DeploymentEnvironment.PRODUCTION, help_text="One of " + ", ".join(DeploymentEnvironment.values) + " (checked by the service).")
    region = serializers.CharField(max_length=16, required=False, allow_null=True, default=None)
    plan_id = serializers.RegexField(SLUG_PATTERN, max_length=63, default="openclaw-basic")
    config = serializers.DictField(required=False, default=dict)
    secrets = serializers.DictField(child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False, default=dict, help_text="Encrypted at rest; never returned.")


class DeploymentUpdateSerializer(BodySerializer):
    config = serializers.DictField(required=False, help_text="JSON merge patch of the config.")
    secrets = serializers.DictField(child=serializers.CharField(allow_null=True, allow_blank=True, trim_whitespace=False), required=False, help_text="Merge patch of the secrets (null removes one).")


class DeploymentRevisionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    reason = serializers.CharField()
    config = serializers.DictField()
    secret_keys = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField()
    healthy = serializers.BooleanField(allow_null=True)
    error = BlankAsNullCharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    applied_at = serializers.DateTimeField(allow_null=True)


class RollbackSerializer(BodySerializer):
    revision = serializers.IntegerField(min_value=1)


class DeploymentLogLineSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    level = serializers.CharField()
    message = serializers.CharField()
    created_at = serializers.DateTimeField()


class DeleteQuerySerializer(serializers.Serializer):
    confirm = serializers.CharField(required=False, allow_blank=True, help_text="The deployment's name (required for production).")


class DurationsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    avg_seconds = serializers.FloatField(allow_null=True)
    p95_seconds = serializers.FloatField(allow_null=True)


class StepStatsSerializer(DurationsSerializer):
    name = serializers.CharField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()


class LastDeploySerializer(serializers.Serializer):
    revision = serializers.IntegerField()
    status = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    applied_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)


class RollbackCountsSerializer(serializers.Serializer):
    manual = serializers.IntegerField()
    automatic = serializers.IntegerField()


class DeploymentStatsSerializer(serializers.Serializer):
    """`deployments.selectors.deployment_stats`: how the deployment's revisions have gone."""

    deployment_id = serializers.CharField()
    revisions = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True, help_text="Applied / finished revisions (0–1); null before any finished.")
    duration = DurationsSerializer(help_text="Applied revisions, created → applied.")
    steps = StepStatsSerializer(many=True, help_text="Each step, over its finished runs (started → finished).")
    last_deploy = LastDeploySerializer(allow_null=True)
    rollbacks = RollbackCountsSerializer()
