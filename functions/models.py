"""Functions: a tenant's handler (Python or Node), its immutable versions, and its counters.

The draft (`code`, `env_encrypted`) is what the tenant edits; a deploy copies it into a new
`FunctionVersion`, which never changes afterwards, and `current_version` is the one the public URL
invokes. Env vars are stored encrypted (orchestrio.crypto, Fernet), on the draft and on every
version; the API key only as its SHA-256 (like API tokens) with its first characters to name it.
Invocation counts are batched in Redis and flushed here (functions/metrics.py).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .choices import AuthMode, Runtime, VersionStatus


class Function(models.Model):
    function_id = models.CharField(max_length=40, unique=True, editable=False)
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="functions")
    slug = models.CharField(max_length=63, unique=True, help_text="DNS-safe, unique on this installation: /fn/<slug>.")
    runtime = models.CharField(max_length=16, choices=Runtime.choices)
    code = models.TextField(help_text="The draft handler: deployed as a new version.")
    env_encrypted = models.TextField(blank=True, help_text="The draft env vars: JSON, encrypted (Fernet).")
    auth_mode = models.CharField(max_length=16, choices=AuthMode.choices, default=AuthMode.NONE)
    api_key_hash = models.CharField(max_length=64, blank=True)
    api_key_prefix = models.CharField(max_length=16, blank=True)
    idle_timeout_seconds = models.PositiveIntegerField(default=300)
    current_version = models.ForeignKey("FunctionVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    invocations = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    cold_starts = models.PositiveBigIntegerField(default=0)
    last_invoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="function_tenant_created")]

    def __str__(self) -> str:
        return f"{self.slug} ({self.runtime})"


class FunctionVersion(models.Model):
    """One deploy's code and env, immutable: a rollback deploys an old one's again as a new one."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    runtime = models.CharField(max_length=16, choices=Runtime.choices)
    code = models.TextField()
    env_encrypted = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.BUILDING)
    error_message = models.TextField(blank=True)
    rolled_back_from = models.PositiveIntegerField(null=True, blank=True)
    start_ms = models.PositiveIntegerField(null=True, blank=True, help_text="How long its runtime took to start and answer its health check.")
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["function", "number"], name="function_version_number_unique"),
            # One deploy at a time per function.
            models.UniqueConstraint(fields=["function"], condition=Q(status=VersionStatus.BUILDING), name="function_one_building_version"),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} v{self.number} ({self.status})"

    @property
    def error_or_none(self) -> str | None:
        return self.error_message or None


class FunctionMetricMinute(models.Model):
    """A function's invocations in one minute (UTC), flushed from Redis."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="metric_minutes")
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    cold_starts = models.PositiveIntegerField(default=0)
    duration_ms_total = models.PositiveBigIntegerField(default=0)
    latency_histogram = models.JSONField(default=list, blank=True, help_text="Counts per latency bucket (gateway/histogram.py).")

    class Meta:
        ordering = ["minute"]
        constraints = [models.UniqueConstraint(fields=["function", "minute"], name="function_metric_minute_unique")]
