from __future__ import annotations

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
    id = serializers.CharField()
    name = serializers.CharField()
    environment = serializers.CharField()
    blueprint_name = serializers.CharField()
    region = serializers.CharField()
    plan_id = serializers.CharField()
    status = serializers.CharField()
    instance_id = serializers.CharField(allow_null=True)
    webhook_url = serializers.CharField(allow_null=True)
    revision = serializers.IntegerField(help_text="The revision in force (0 before the first is applied).")
    target_revision = serializers.IntegerField(allow_null=True, help_text="The revision being applied.")
    config = serializers.DictField(help_text="The config of the latest revision.")
    secret_keys = serializers.ListField(child=serializers.CharField(), help_text="Names only: secret values are never returned.")
    error = serializers.CharField(allow_null=True)
    steps = DeploymentStepSerializer(many=True, help_text="The steps of the latest revision's run.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, deployment):
        latest = getattr(deployment, "latest_revision", None) or deployment.revisions.order_by("-number").first()
        steps = list(latest.steps.order_by("position")) if latest is not None else []
        return super().to_representation(
            {
                "id": deployment.pk, "name": deployment.name, "environment": deployment.environment,
                "blueprint_name": deployment.blueprint.name, "region": deployment.region_id, "plan_id": deployment.plan_id,
                "status": deployment.status, "instance_id": deployment.instance.instance_id if deployment.instance else None,
                "webhook_url": webhook_url(deployment=deployment), "revision": deployment.current_revision,
                "target_revision": deployment.target_revision, "config": latest.config if latest else {},
                "secret_keys": latest.secret_keys if latest else [], "error": deployment.error or None,
                "steps": [{"name": st.name, "status": st.status, "message": st.message, "started_at": st.started_at, "finished_at": st.finished_at} for st in steps],
                "created_at": deployment.created_at, "updated_at": deployment.updated_at,
            }
        )  # fmt: skip


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
