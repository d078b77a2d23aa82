from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from instances.models import gateway_url
from orchestrio.api.strict import BodySerializer

from ..choices import AppHealth, AppHealthSource, GatewayProvider, RequestMetricsWindow
from ..models import GatewayPolicy
from ..services import policy_issuer, policy_warnings


class GatewayPolicySerializer(serializers.ModelSerializer):
    instance_id = serializers.CharField(source="instance.instance_id")
    effective_issuer = serializers.SerializerMethodField(help_text="The issuer tokens must come from (OIDC providers).")
    endpoint = serializers.SerializerMethodField(help_text="Where callers send requests under this policy.")
    warnings = serializers.SerializerMethodField()

    class Meta:
        model = GatewayPolicy
        fields = [
            "id", "instance_id", "slug", "provider", "audience", "issuer", "effective_issuer", "allow", "config",
            "enabled", "endpoint", "warnings", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_effective_issuer(self, policy):
        return policy_issuer(policy=policy)

    @extend_schema_field(serializers.CharField())
    def get_endpoint(self, policy):
        base = gateway_url()
        if policy.slug:
            return f"{base}/gateway/{policy.instance.instance_id}/{policy.slug}"
        return f"{base}/tunnel/{policy.instance.instance_id}/"

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_warnings(self, policy):
        return policy_warnings(policy=policy)


class GatewayPolicyWriteSerializer(BodySerializer):
    """Types only; the rules per provider are in gateway.services.validate_policy."""

    slug = serializers.CharField(max_length=63, allow_null=True, required=False)
    provider = serializers.ChoiceField(choices=GatewayProvider.choices, required=False)
    audience = serializers.CharField(max_length=255, allow_blank=True, required=False)
    issuer = serializers.CharField(max_length=512, allow_blank=True, required=False)
    allow = serializers.JSONField(required=False, help_text='OR-list of rules, e.g. [{"repository": "acme/app", "ref": ["refs/heads/main"]}]')
    config = serializers.DictField(required=False)
    enabled = serializers.BooleanField(required=False)

    def validate(self, attrs):
        if not self.partial and "provider" not in attrs:
            raise serializers.ValidationError({"provider": ["This field is required."]})
        return attrs


class RequestMetricsQuerySerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=RequestMetricsWindow.choices, default="1h", help_text="1h and 24h: a point a minute; 30d: a point an hour.")


class RequestMetricsSummarySerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Requests forwarded to the instance.")
    errors = serializers.IntegerField(help_text="errors_upstream + errors_gateway.")
    errors_upstream = serializers.IntegerField(help_text="5xx answered by the instance.")
    errors_gateway = serializers.IntegerField(help_text="502/504 from the gateway (no answer, or a broken stream).")
    error_rate = serializers.FloatField(help_text="errors / count (0 when there was no request).")
    p50_ms = serializers.FloatField(allow_null=True, help_text="Time to the instance's first byte, ms (within 19 %: docs/observability.md).")
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)


class RequestMetricsPointSerializer(RequestMetricsSummarySerializer):
    start = serializers.DateTimeField(help_text="The minute's (or hour's) start.")


class RequestMetricsSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    window = serializers.ChoiceField(choices=RequestMetricsWindow.choices)
    resolution_seconds = serializers.IntegerField(help_text="60 or 3600: the span of each point.")
    points = RequestMetricsPointSerializer(many=True, help_text="Oldest first; only the minutes (hours) that had traffic.")
    totals = RequestMetricsSummarySerializer()
    app_health = serializers.ChoiceField(choices=AppHealth.choices, help_text="From the last 5 minutes' error rate; without traffic, the health check's status.")
    app_health_source = serializers.ChoiceField(choices=AppHealthSource.choices)
    recent_count = serializers.IntegerField(help_text="Requests in the last 5 minutes.")
    recent_error_rate = serializers.FloatField()
