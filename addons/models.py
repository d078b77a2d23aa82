"""Add-ons: a PostgreSQL database or a Redis server of a tenant, attached to one of its instances.

The connection's password is stored encrypted (orchestrio.crypto, like deployment secrets); the
URL is built from it on creation and on an audited reveal, and is never stored, logged or shown
in a record. The engine's administrator password (PostgreSQL's `postgres` role, which the
control plane keeps for itself: the tenant's role is not a superuser) is encrypted the same way.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from orchestrio.models import api_datetime

from .choices import UNFINISHED_OPERATION_STATUSES, AddOnOperationKind, AddOnOperationStatus, AddOnPlan, AddOnStatus, BackupKind, BackupStatus, BackupStorage, Engine


class AddOn(models.Model):
    addon_id = models.CharField(max_length=40, unique=True, editable=False)
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="addons")
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="addons")
    engine = models.CharField(max_length=16, choices=Engine.choices)
    version = models.CharField(max_length=16)
    plan = models.CharField(max_length=16, choices=AddOnPlan.choices, default=AddOnPlan.HOBBY)
    status = models.CharField(max_length=16, choices=AddOnStatus.choices, default=AddOnStatus.PROVISIONING)
    provider = models.CharField(max_length=16, default="local")
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(null=True, blank=True)
    username = models.CharField(max_length=63, blank=True)
    database = models.CharField(max_length=63, blank=True)
    password_encrypted = models.TextField(help_text="The tenant's password (Fernet, ENCRYPTION_KEYS).")
    # A rotation's new password, until the engine has it: then it replaces password_encrypted.
    pending_password_encrypted = models.TextField(blank=True)
    admin_password_encrypted = models.TextField(blank=True, help_text="The engine's administrator password (the control plane's own).")
    provider_data = models.JSONField(default=dict, blank=True)
    error_message = models.TextField(blank=True)
    credentials_rotated_at = models.DateTimeField(null=True, blank=True)
    # Daily automatic backups: since when they are on (None: off). The scheduler's sweep takes one
    # when the last automatic backup is a day old (addons.services.addon_backup_next_run).
    auto_backup_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Two live local add-ons never share a port (the engine also checks the port is free).
            models.UniqueConstraint(fields=["provider", "host", "port"], condition=Q(deleted_at__isnull=True, port__isnull=False), name="addon_live_port_unique"),
        ]
        indexes = [models.Index(fields=["tenant", "deleted_at"], name="addon_tenant_live"), models.Index(fields=["instance", "deleted_at"], name="addon_instance_live")]

    def __str__(self) -> str:
        return f"{self.addon_id} ({self.engine} {self.version}, {self.status})"


class AddOnOperation(models.Model):
    """One lifecycle step of an add-on (create, rotate, destroy): at most one unfinished at a time."""

    addon = models.ForeignKey(AddOn, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=24, choices=AddOnOperationKind.choices)
    # A backup operation's new backup, a restore's source.
    backup = models.ForeignKey("addons.AddOnBackup", null=True, blank=True, on_delete=models.SET_NULL, related_name="operations")
    status = models.CharField(max_length=16, choices=AddOnOperationStatus.choices, default=AddOnOperationStatus.QUEUED)
    requested_by = models.CharField(max_length=254)
    rq_job_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # On AWS an operation waits for AWS between its steps: set while it does (the poll sweep then
    # enqueues its job again at this time; a claimed poll moves it on, so a lost job is retried).
    next_poll_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["addon"], condition=Q(status__in=UNFINISHED_OPERATION_STATUSES), name="addon_one_unfinished_operation"),
        ]
        indexes = [models.Index(fields=["next_poll_at"], condition=Q(next_poll_at__isnull=False), name="addon_operation_awaiting_poll")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.addon_id} ({self.status})"

    def summary(self) -> dict:
        return {"id": self.pk, "kind": self.kind, "status": self.status, "created_at": api_datetime(self.created_at), "started_at": api_datetime(self.started_at)}


class AddOnBackup(models.Model):
    """One backup of an add-on: a `pg_dump -Fc` archive or a Redis RDB snapshot in a store (or a
    provider's snapshot), with its size and SHA-256 (verified before a restore touches the data)."""

    backup_id = models.CharField(max_length=40, unique=True, editable=False)
    addon = models.ForeignKey(AddOn, on_delete=models.CASCADE, related_name="backups")
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="addon_backups")
    kind = models.CharField(max_length=8, choices=BackupKind.choices, default=BackupKind.MANUAL)
    status = models.CharField(max_length=12, choices=BackupStatus.choices, default=BackupStatus.PENDING)
    storage = models.CharField(max_length=12, choices=BackupStorage.choices)
    location = models.CharField(max_length=1024, blank=True, help_text="The object's key in its store, or the snapshot's id.")
    stored = models.BooleanField(default=False, help_text="The store holds its bytes (false once deleted from it).")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    requested_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When retention deletes it (the plan's retention days).")
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["addon", "status", "created_at"], name="addon_backup_addon_status"),
            models.Index(fields=["status", "expires_at"], name="addon_backup_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.backup_id} of {self.addon_id} ({self.kind}, {self.status})"
