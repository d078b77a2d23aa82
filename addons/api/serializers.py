from __future__ import annotations

from rest_framework import serializers

from orchestrio.api.strict import BodySerializer

from ..choices import AddOnPlan, Engine
from ..models import AddOn, AddOnBackup


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


class BackupSerializer(serializers.ModelSerializer):
    """A backup's record: what it is and where it stands, with its checksum (never its key)."""

    addon_id = serializers.CharField(source="addon.addon_id")
    size_bytes = serializers.IntegerField(allow_null=True)
    error_message = serializers.SerializerMethodField()

    class Meta:
        model = AddOnBackup
        fields = ["backup_id", "addon_id", "kind", "status", "storage", "size_bytes", "sha256", "error_message", "created_at", "completed_at", "expires_at"]
        read_only_fields = fields

    def get_error_message(self, backup) -> str | None:
        return backup.error_message or None


class BackupInfoSerializer(serializers.Serializer):
    addon_id = serializers.CharField()
    auto_backup = serializers.BooleanField(help_text="Daily automatic backups are on.")
    retention_days = serializers.IntegerField(help_text="How long the plan keeps a backup (0: the plan has no backups).")
    daily_quota = serializers.IntegerField(allow_null=True, help_text="Manual backups a UTC day (null: unlimited).")
    used_today = serializers.IntegerField(help_text="Manual backups taken today (UTC), failed ones not counted.")
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="When the next automatic backup is due (null: off).")
    last_backup_at = serializers.DateTimeField(allow_null=True)


class AutoBackupSerializer(BodySerializer):
    enabled = serializers.BooleanField()


class RestoreSerializer(BodySerializer):
    backup_id = serializers.CharField(max_length=40)


class BackupDownloadSerializer(serializers.Serializer):
    backup_id = serializers.CharField()
    url = serializers.CharField(help_text="Downloads the backup until expires_at; no credentials needed, so keep it private.")
    expires_at = serializers.DateTimeField()
