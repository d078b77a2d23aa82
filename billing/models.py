"""Subscriptions, usage, Stripe events and alerts (the plans themselves are the core's:
orchestrio.models.SubscriptionPlan)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

# Re-exported for callers that still name the plan by its old home (the shared side-by-side
# benchmark raises `billing.models.SubscriptionPlan`'s per-minute ceiling); billing sits above the
# core, so importing it from there keeps the layers' order.
from orchestrio.models import SubscriptionPlan  # noqa: F401


class UsageCounter(models.Model):
    """Executions per tenant, instance and UTC day, flushed in batches from Redis counters."""

    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="usage_counters")
    instance = models.ForeignKey("instances.Instance", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_counters")
    day = models.DateField()
    kind = models.CharField(max_length=32, default="executions")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "instance", "day", "kind"], name="usage_counter_unique")]
        indexes = [models.Index(fields=["tenant", "day"], name="usage_tenant_day")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.instance_id} {self.day} {self.kind}={self.count}"


class UsageFlush(models.Model):
    """A Redis batch already added to UsageCounter (so a retried flush never counts it twice)."""

    batch = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Subscription(models.Model):
    """A tenant's Stripe customer and subscription (one per tenant)."""

    tenant = models.OneToOneField("orchestrio.Tenant", on_delete=models.CASCADE, related_name="subscription")
    stripe_customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    status = models.CharField(max_length=32, default="none", help_text="Stripe's subscription status, or none.")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    last_payment_failed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.status}"


class StripeEvent(models.Model):
    """Every Stripe event handled, by id: a redelivered (or concurrently delivered) event is a no-op."""

    id = models.CharField(primary_key=True, max_length=255)
    type = models.CharField(max_length=100)
    tenant = models.ForeignKey("orchestrio.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"


class QuotaAlertMark(models.Model):
    """A quota alert already sent for a tenant, period and threshold (80 or 100)."""

    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "period_start", "threshold"], name="quota_alert_once")]


class AlertConfig(models.Model):
    """The tenant's one alert webhook."""

    tenant = models.OneToOneField("orchestrio.Tenant", on_delete=models.CASCADE, related_name="alert_config")
    webhook_url = models.CharField(max_length=2048, blank=True)
    enabled = models.BooleanField(default=False)
    signing_secret_encrypted = models.TextField(blank=True, editable=False)
    signing_secret_prefix = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        # Not the URL: this text lands in the audit log (an admin delete), which members read.
        return f"{self.tenant_id}: alert webhook {'on' if self.enabled else 'off'}"


class AlertDelivery(models.Model):
    STATUSES = [("pending", "pending"), ("succeeded", "succeeded"), ("failed", "failed")]

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="alert_deliveries")
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    url = models.CharField(max_length=2048)
    status = models.CharField(max_length=16, choices=STATUSES, default="pending")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "alert deliveries"  # Django's default adds an "s": "deliverys"
        indexes = [models.Index(fields=["tenant", "-created_at"], name="alert_delivery_tenant")]

    def __str__(self) -> str:
        return f"{self.id} {self.event} ({self.status})"


class AlertAttempt(models.Model):
    delivery = models.ForeignKey(AlertDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery_id", "number"]
