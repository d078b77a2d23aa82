from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orchestrio.api.strict import BodySerializer

from .. import backends
from ..choices import AuthMode, RequestMethod, Runtime, VersionStatus
from ..rules import decrypt_env, host_url, public_url

SLUG_HELP = "3–63 lowercase letters, digits and hyphens (a DNS label), unique on this installation."


class FunctionSerializer(serializers.Serializer):
    """A function's record: never its env var values, nor its API key (only the key's prefix)."""

    function_id = serializers.CharField()
    slug = serializers.CharField()
    runtime = serializers.ChoiceField(choices=Runtime.choices)
    auth_mode = serializers.ChoiceField(choices=AuthMode.choices)
    api_key_prefix = serializers.SerializerMethodField(help_text="The first characters of the API key (null with auth_mode none).")
    idle_timeout_seconds = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="The public URL: /fn/<slug> on the gateway host.")
    host_url = serializers.SerializerMethodField(help_text="<slug>.<FUNCTIONS_DOMAIN>, when the installation has one.")
    code = serializers.CharField(help_text="The draft handler (deployed as a new version by POST …/deploy).")
    env_var_names = serializers.SerializerMethodField(help_text="Names only: values are returned by GET …/env-vars (owners and admins).")
    current_version = serializers.IntegerField(source="current_version.number", allow_null=True, default=None)
    running = serializers.SerializerMethodField(help_text="Whether the current version's runtime is up (false: scaled to zero).")
    function_instance_id = serializers.SerializerMethodField(
        help_text="The function instance it runs on (FUNCTIONS_BACKEND instance: docs/functions.md); null when it runs on the control plane's host."
    )
    invocations = serializers.IntegerField()
    errors = serializers.IntegerField()
    cold_starts = serializers.IntegerField()
    last_invoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_api_key_prefix(self, function) -> str | None:
        return function.api_key_prefix or None

    def get_url(self, function) -> str:
        return public_url(function)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_host_url(self, function) -> str | None:
        return host_url(function)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_env_var_names(self, function) -> list[str]:
        return sorted(decrypt_env(function.env_encrypted))

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_function_instance_id(self, function) -> str | None:
        host = self.context["host"] if "host" in self.context else backends.get().host_of(function)
        return host.instance_id if host is not None else None

    def get_running(self, function) -> bool:
        running = self.context.get("running")
        if running is None:  # one function's record: ask now (a list asks once for its page)
            return function.pk in backends.get().running([function])
        return function.pk in running


class FunctionWithKeySerializer(FunctionSerializer):
    api_key = serializers.CharField(allow_null=True, help_text="The full API key: shown once (on create, on switching to api_key, on rotate).")


class FunctionCreateSerializer(BodySerializer):
    slug = serializers.CharField(max_length=63, help_text=SLUG_HELP)
    runtime = serializers.ChoiceField(
        choices=Runtime.choices, help_text="Only what this installation has (GET /api/v1/functions lists them in docs/functions.md)."
    )
    code = serializers.CharField(trim_whitespace=False, help_text="The handler; at most FUNCTIONS_MAX_CODE_BYTES (422 over).")
    auth_mode = serializers.ChoiceField(choices=AuthMode.choices, default=AuthMode.NONE)
    idle_timeout_seconds = serializers.IntegerField(min_value=10, max_value=86400, required=False, allow_null=True, default=None)
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=8192), required=False, default=dict, help_text="Encrypted at rest."
    )


class FunctionUpdateSerializer(BodySerializer):
    code = serializers.CharField(trim_whitespace=False, required=False)
    runtime = serializers.ChoiceField(choices=Runtime.choices, required=False)
    auth_mode = serializers.ChoiceField(choices=AuthMode.choices, required=False)
    idle_timeout_seconds = serializers.IntegerField(min_value=10, max_value=86400, required=False)
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True, allow_null=True, trim_whitespace=False, max_length=8192), required=False,
        help_text="A merge patch of the env vars: null removes one.",
    )  # fmt: skip


class FunctionDeploySerializer(BodySerializer):
    version = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, default=None, help_text="Roll back: deploy this earlier version's code and env again, as a new version."
    )


class FunctionVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    runtime = serializers.ChoiceField(choices=Runtime.choices)
    status = serializers.ChoiceField(choices=VersionStatus.choices)
    error_message = serializers.CharField(allow_null=True, source="error_or_none")
    rolled_back_from = serializers.IntegerField(allow_null=True)
    start_ms = serializers.IntegerField(allow_null=True, help_text="How long its runtime took to start and pass its health check.")
    code = serializers.CharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class SampleRequestSerializer(BodySerializer):
    """The request the handler receives (its envelope, docs/functions.md), as a caller would send it."""

    method = serializers.ChoiceField(choices=RequestMethod.choices, default=RequestMethod.GET)
    path = serializers.RegexField(r"^/[^\x00-\x1f]*$", max_length=2048, default="/")
    query = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=4096), required=False, default=dict)
    headers = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=8192), required=False, default=dict)
    body = serializers.CharField(allow_blank=True, trim_whitespace=False, required=False, default="")


class InvokeSerializer(BodySerializer):
    request = SampleRequestSerializer(required=False, help_text="Default: GET /.")


class FunctionInvokeResultSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    headers = serializers.DictField(child=serializers.CharField())
    body = serializers.CharField(help_text="Text, or base64 when body_encoding is base64.")
    body_encoding = serializers.ChoiceField(choices=["text", "base64"])
    duration_ms = serializers.IntegerField()
    cold_start = serializers.BooleanField()
    version = serializers.IntegerField()


class FunctionLogsQuerySerializer(serializers.Serializer):
    tail = serializers.IntegerField(min_value=1, max_value=5000, default=200)


class FunctionLogsSerializer(serializers.Serializer):
    function_id = serializers.CharField()
    lines = serializers.ListField(
        child=serializers.CharField(), help_text="The newest lines last: the runtime's output and the control plane's ([orchestrio])."
    )


class FunctionMetricsQuerySerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=["1h", "24h", "7d"], default="1h")


class FunctionMetricPointSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    count = serializers.IntegerField()
    errors = serializers.IntegerField()
    cold_starts = serializers.IntegerField()
    avg_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True, help_text="Latency percentiles from the window's histogram (within 19 %).")
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)


class FunctionMetricTotalsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    errors = serializers.IntegerField()
    cold_starts = serializers.IntegerField()
    error_rate = serializers.FloatField()
    avg_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True, help_text="Latency percentiles from the window's histogram (within 19 %).")
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)


class FunctionMetricAllTimeSerializer(serializers.Serializer):
    invocations = serializers.IntegerField()
    errors = serializers.IntegerField()
    cold_starts = serializers.IntegerField()
    last_invoked_at = serializers.DateTimeField(allow_null=True)


class FunctionMetricsSerializer(serializers.Serializer):
    window = serializers.CharField()
    points = FunctionMetricPointSerializer(many=True)
    totals = FunctionMetricTotalsSerializer()
    all_time = FunctionMetricAllTimeSerializer()


class FunctionEnvVarsSerializer(serializers.Serializer):
    function_id = serializers.CharField()
    env = serializers.DictField(child=serializers.CharField())


class FunctionNameCheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    available = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True)
