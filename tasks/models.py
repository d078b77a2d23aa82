"""Tasks: scripts run on an instance, one at a time."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from orchestrio.models import api_datetime

from .choices import ACTIVE_TASK_STATUSES, TaskStatus

OUTPUT_LIMIT = 64 * 1024


class Task(models.Model):
    task_id = models.CharField(max_length=32, unique=True, editable=False)
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="tasks")
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="tasks")
    operation_code = models.CharField(max_length=64)
    script_path = models.CharField(max_length=1024)
    script_args = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.PositiveIntegerField(default=600)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True, help_text="The last 64 KiB.")
    stderr = models.TextField(blank=True, help_text="The last 64 KiB.")
    error_message = models.TextField(blank=True, help_text="Why the control plane ended the task, when it did.")
    provider_command_id = models.CharField(max_length=64, blank=True)
    rq_job_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    requested_by = models.CharField(max_length=254)
    requested_by_type = models.CharField(max_length=8)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_sent_at = models.DateTimeField(null=True, blank=True, help_text="When the cancel request reached the provider.")
    # Set once the task has run longer than its job follows it in place (JOB_INLINE_WAIT_SECONDS):
    # no worker holds it, and the task poll sweep enqueues a short poll job when this time comes.
    # While such a job is enqueued (`poll_job_id`), it is when the sweep asks whether it was lost.
    # The columns below have database defaults: during an upgrade the previous release still
    # inserts tasks without them (docs/operations.md, "Upgrades").
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_job_id = models.CharField(max_length=64, blank=True, default="", db_default="", help_text="The poll job enqueued for it and not yet done.")
    poll_errors = models.PositiveSmallIntegerField(default=0, db_default=0, help_text="Polls in a row that could not reach the instance.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance"], condition=Q(status__in=ACTIVE_TASK_STATUSES), name="task_one_active_per_instance"
            ),
            models.UniqueConstraint(
                fields=["instance", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="task_instance_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["instance", "status"], name="task_instance_status"),
            models.Index(fields=["tenant", "created_at"], name="task_tenant_created"),
            models.Index(fields=["next_poll_at"], condition=Q(next_poll_at__isnull=False), name="task_awaiting_poll"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} {self.operation_code} on {self.instance_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status not in ACTIVE_TASK_STATUSES

    def summary(self) -> dict:
        return {"task_id": self.task_id, "operation_code": self.operation_code, "status": self.status, "created_at": api_datetime(self.created_at), "started_at": api_datetime(self.started_at)}
