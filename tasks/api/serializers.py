from __future__ import annotations

from rest_framework import serializers

from orchestrio.api.strict import BodySerializer

from ..models import Task


class TaskSerializer(serializers.ModelSerializer):
    instance_id = serializers.CharField(source="instance.instance_id")
    exit_code = serializers.IntegerField(allow_null=True)
    error_message = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "task_id", "instance_id", "operation_code", "script_path", "timeout_seconds", "idempotency_key", "status",
            "exit_code", "stdout", "stderr", "error_message", "requested_by", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_error_message(self, task) -> str | None:
        return task.error_message or None


class TaskDispatchSerializer(BodySerializer):
    operation_code = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", error_messages={"invalid": "operation_code is 1–64 letters, digits, '_', '.', ':' or '-'"})
    script_path = serializers.CharField(max_length=1024, trim_whitespace=False)
    script_args = serializers.DictField(required=False, default=dict, help_text="Reach the script as JSON on stdin and as --key value argv pairs.")
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=3600, default=600)
    idempotency_key = serializers.CharField(max_length=255, min_length=1, required=False, allow_null=True, default=None)
