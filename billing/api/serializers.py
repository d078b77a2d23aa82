from __future__ import annotations

from rest_framework import serializers

from orchestrio.api.strict import BodySerializer

from ..models import AlertConfig, AlertDelivery


class CheckoutSerializer(BodySerializer):
    plan = serializers.ChoiceField(choices=["pro", "team"])


class UrlSerializer(serializers.Serializer):
    url = serializers.URLField()


class AgentUsageFieldsMixin(serializers.Serializer):
    """The agent runtime's usage (docs/agent.md "Usage"), beside executions and instance-hours."""

    tokens_in = serializers.IntegerField(help_text="Tokens of the chats' messages (one per 4 characters).")
    tokens_out = serializers.IntegerField(help_text="Tokens of the replies.")
    cost_usd = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True, help_text="At the model catalogue's prices per 1k tokens.")
    requests = serializers.IntegerField(help_text="Chat exchanges.")
    end_users = serializers.IntegerField(help_text="Unique end users per day (a total adds the days: one user on two days counts twice).")


class AgentUsageTotalsSerializer(AgentUsageFieldsMixin):
    pass


class UsageCurrentSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    executions = serializers.IntegerField()
    quota = serializers.IntegerField(allow_null=True)
    pct = serializers.FloatField(allow_null=True)
    instance_hours = serializers.FloatField()
    agent = AgentUsageTotalsSerializer(help_text="The tenant's agent runtime usage in the period, all instances.")


class UsageDaySerializer(AgentUsageFieldsMixin):
    date = serializers.DateField()
    executions = serializers.IntegerField()
    instance_hours = serializers.FloatField()


class UsageTotalsSerializer(AgentUsageFieldsMixin):
    executions = serializers.IntegerField()
    instance_hours = serializers.FloatField()


class InstanceUsageSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    days = serializers.IntegerField()
    daily = UsageDaySerializer(many=True)
    totals = UsageTotalsSerializer()


class UsageQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=30)


class AlertConfigSerializer(serializers.ModelSerializer):
    signing_secret_prefix = serializers.CharField(help_text="The start of the signing secret (the whole one is shown once).")
    updated_at = serializers.DateTimeField(allow_null=True, help_text="When these settings last changed; null until they are first set.")

    class Meta:
        model = AlertConfig
        fields = ["webhook_url", "enabled", "signing_secret_prefix", "updated_at"]
        read_only_fields = fields


class AlertConfigUpdateSerializer(BodySerializer):
    webhook_url = serializers.CharField(max_length=2048, allow_blank=True, required=False, help_text="https://… on a public address (no private, loopback or link-local ones; no user:password@). Empty removes it.")
    enabled = serializers.BooleanField(required=False)


class AlertConfigWithSecretSerializer(AlertConfigSerializer):
    signing_secret = serializers.CharField(required=False, help_text="Present once: when the secret was just created or rotated.")

    class Meta(AlertConfigSerializer.Meta):
        fields = [*AlertConfigSerializer.Meta.fields, "signing_secret"]
        read_only_fields = fields


class SigningSecretSerializer(serializers.Serializer):
    signing_secret = serializers.CharField()


class AlertAttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    at = serializers.DateTimeField()
    response_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()


class AlertDeliverySerializer(serializers.ModelSerializer):
    attempt_log = AlertAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = AlertDelivery
        fields = ["id", "event", "payload", "url", "status", "attempts", "next_attempt_at", "last_response_code", "last_error", "created_at", "delivered_at", "attempt_log"]
        read_only_fields = fields


class DashboardSerializer(serializers.Serializer):
    instances = serializers.DictField(help_text="Counts by state, and the total of live instances.")
    plan = serializers.DictField(help_text="The plan, its limits, and usage against them.")
    usage = UsageCurrentSerializer()
    recent_activity = serializers.ListField(child=serializers.DictField())
