"""A tenant's custom domain for an instance."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from instances.models import Instance

from .choices import DomainStatus


class CustomDomain(models.Model):
    """A tenant's claim on a hostname for an instance: verified in DNS, then served with TLS by the
    edge. Claims on one name by several tenants may be pending at once; the first to prove it
    becomes the only active one."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="custom_domains")
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="custom_domains")
    domain = models.CharField(max_length=253, help_text="Lowercase, IDNA (punycode) form.")
    status = models.CharField(max_length=16, choices=DomainStatus.choices, default=DomainStatus.PENDING_DNS)
    verification_token = models.CharField(max_length=64, editable=False)
    error = models.TextField(blank=True)
    resolved = models.JSONField(default=dict, blank=True, help_text="What the last check found in DNS.")
    attempts = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instances_customdomain"  # moved from the instances app; the table kept its name
        ordering = ["-created_at"]
        constraints = [
            # A name is served for one instance at a time: the claim that proved it first. Pending
            # and failed claims block nobody (several tenants may claim one name; see domains.py).
            # An instance has one domain.
            models.UniqueConstraint(
                fields=["domain"], condition=Q(status="active", removed_at__isnull=True), name="custom_domain_active_unique"
            ),
            models.UniqueConstraint(fields=["instance"], condition=Q(removed_at__isnull=True), name="custom_domain_one_per_instance"),
        ]
        indexes = [models.Index(fields=["domain", "status"], name="custom_domain_ask")]

    def __str__(self) -> str:
        return f"{self.domain} → {self.instance_id} ({self.status})"

    @property
    def challenge_name(self) -> str:
        return f"_orchestrio-challenge.{self.domain}"
