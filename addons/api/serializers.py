from __future__ import annotations

from rest_framework import serializers

from orchestrio.api.strict import BodySerializer

from ..choices import AddOnPlan, Engine
from ..models import AddOn


class AddOnSerializer(serializers.ModelSerializer):
    """An add-on's record: where it listens and as whom, never its password (nor the URL)."""

    instance_id = serializers.CharField(source="instance.instance_id")
    port = serializers.IntegerField(allow_null=True)
    env_name = serializers.SerializerMethodField(help_text="The variable the attached instance sees it as.")
    error_message = serializers.SerializerMethodField()

    class Meta:
        model = AddOn
        fields = [
            "addon_id", "instance_id", "engine", "version", "plan", "status", "provider", "host", "port", "username", "database",
            "env_name", "error_message", "credentials_rotated_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_env_name(self, addon) -> str:
        return "DATABASE_URL" if addon.engine == Engine.POSTGRES else "REDIS_URL"

    def get_error_message(self, addon) -> str | None:
        return addon.error_message or None


class AddOnCreatedSerializer(AddOnSerializer):
    connection_url = serializers.CharField(
        allow_null=True, help_text="Shown once, to owners and admins (null for members: an owner or admin reveals it)."
    )

    class Meta(AddOnSerializer.Meta):
        fields = [*AddOnSerializer.Meta.fields, "connection_url"]
        read_only_fields = fields


class AddOnCreateSerializer(BodySerializer):
    engine = serializers.ChoiceField(choices=Engine.choices)
    version = serializers.CharField(max_length=16, required=False, allow_null=True, default=None, help_text="The engine's major version; default: the one installed.")
    plan = serializers.ChoiceField(choices=AddOnPlan.choices, default=AddOnPlan.HOBBY, help_text="The add-on's size.")


class AddOnRevealSerializer(serializers.Serializer):
    addon_id = serializers.CharField()
    connection_url = serializers.CharField()


class AddOnDeleteQuerySerializer(serializers.Serializer):
    confirm = serializers.CharField(required=False, allow_blank=True, help_text="The add-on's id: destroying it deletes its data.")
    final_snapshot = serializers.BooleanField(
        required=False, default=True, help_text="On AWS: keep a final RDS/ElastiCache snapshot of the data (the default); false deletes without one. The local engine keeps none."
    )
