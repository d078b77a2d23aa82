"""Gateway policies: who may reach an instance through the tunnel and gateway proxies."""

from __future__ import annotations

import secrets
import string

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .choices import GatewayProvider

_ALPHABET = string.ascii_lowercase + string.digits


def new_policy_id() -> str:
    return "pol_" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


class GatewayPolicy(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_policy_id, editable=False)
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="gateway_policies")
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="gateway_policies")
    # A slug names a gateway endpoint (/gateway/{instance_id}/{slug}); null is the catch-all
    # policy of the tunnel (/tunnel/{instance_id}/…).
    slug = models.CharField(max_length=63, null=True, blank=True)
    provider = models.CharField(max_length=16, choices=GatewayProvider.choices)
    audience = models.CharField(max_length=255, blank=True)
    issuer = models.CharField(max_length=512, blank=True, help_text="OIDC issuer; overrides the provider's default.")
    allow = models.JSONField(default=list, blank=True, help_text="OR-list of rules; each rule an AND of claim conditions.")
    config = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "slug", "provider"], condition=Q(slug__isnull=False), name="policy_instance_slug_provider_unique"),
            models.UniqueConstraint(fields=["instance", "provider"], condition=Q(slug__isnull=True), name="policy_instance_catchall_provider_unique"),
        ]
        indexes = [models.Index(fields=["instance", "slug", "enabled"], name="policy_lookup")]
        verbose_name_plural = "gateway policies"

    def __str__(self) -> str:
        return f"{self.id} {self.provider} {self.slug or '*'} on {self.instance_id}"


class RequestMetrics(models.Model):
    """Proxied requests of one instance in one minute (`resolution` 60) or one hour (3600), folded
    in from Redis by `gateway.traffic.flush` (docs/observability.md, "Request metrics")."""

    MINUTE = 60
    HOUR = 3600

    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="request_metrics")
    resolution = models.PositiveIntegerField()  # seconds: MINUTE or HOUR
    start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    errors_upstream = models.PositiveIntegerField(default=0, help_text="5xx answered by the instance.")
    errors_gateway = models.PositiveIntegerField(default=0, help_text="502/504 from the gateway: the instance did not answer.")
    histogram = models.JSONField(default=list, help_text="Latency bucket counts (gateway/histogram.py).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance", "resolution", "start"], name="request_metrics_point_unique")]
        indexes = [models.Index(fields=["resolution", "start"], name="request_metrics_retention")]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.start:%Y-%m-%d %H:%M} /{self.resolution}s: {self.count}"


class RequestMetricsTotal(models.Model):
    """Everything an instance was ever sent (monotonic: Prometheus counters read it)."""

    instance = models.OneToOneField("instances.Instance", on_delete=models.CASCADE, primary_key=True, related_name="request_metrics_total")
    count = models.PositiveBigIntegerField(default=0)
    errors_upstream = models.PositiveBigIntegerField(default=0)
    errors_gateway = models.PositiveBigIntegerField(default=0)
    histogram = models.JSONField(default=list)
    last_request_at = models.DateTimeField(db_index=True)


class RequestMetricsFlush(models.Model):
    """A Redis batch already folded in (so a retried flush never counts it twice)."""

    batch = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
