"""Deployments: a named blueprint with config and secrets, their revisions, steps and log."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from instances.choices import LogLevel
from instances.models import Blueprint, Instance, InstancePlan, Region

from .choices import DeploymentEnvironment, DeploymentStatus, StepStatus


def new_deployment_id() -> str:
    import secrets
    import string

    alphabet = string.ascii_lowercase + string.digits
    return "dep_" + "".join(secrets.choice(alphabet) for _ in range(20))


class Deployment(models.Model):
    """A named blueprint with runtime config and secrets, running on an instance it provisions."""

    id = models.CharField(primary_key=True, max_length=32, default=new_deployment_id, editable=False)
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=50)
    environment = models.CharField(max_length=16, choices=DeploymentEnvironment.choices, default=DeploymentEnvironment.PRODUCTION)
    blueprint = models.ForeignKey(Blueprint, on_delete=models.PROTECT, related_name="deployments")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="deployments")
    plan = models.ForeignKey(InstancePlan, on_delete=models.PROTECT, related_name="deployments")
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments")
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.PROVISIONING)
    current_revision = models.PositiveIntegerField(default=0, help_text="The revision in force on the instance.")
    target_revision = models.PositiveIntegerField(null=True, blank=True, help_text="The revision being applied.")
    error = models.TextField(blank=True)
    # Set while the target revision waits for its instance to run, with no job holding it: the
    # instances app's `instance_running` hook resumes it, the reconciler fails it at this time.
    instance_deadline = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=254)
    log_seq = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instances_deployment"  # moved from the instances app; the table kept its name
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], condition=Q(deleted_at__isnull=True), name="deployment_tenant_name_unique"),
        ]
        indexes = [models.Index(fields=["instance_deadline"], condition=Q(instance_deadline__isnull=False), name="deployment_awaiting_instance")]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment}, {self.status})"

    @property
    def latest_revision(self) -> DeploymentRevision | None:
        """The newest revision: read with the deployment by `selectors.with_latest_revision`, else
        queried now."""
        prefetched = getattr(self, "latest_revisions", None)
        if prefetched is not None:
            return prefetched[0] if prefetched else None
        return self.revisions.order_by("-number").first()


# How a revision's `reason` begins when it is a rollback (written by services, counted by the
# deployment's stats): a person's rollback, and the automatic one after a failed revision.
ROLLBACK_REASON = "rollback to revision"
AUTOMATIC_ROLLBACK_REASON = "automatic rollback"


class DeploymentRevision(models.Model):
    """An immutable version of a deployment's config and secrets."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    config = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    # Fernet-encrypted JSON object; only the key names are ever shown.
    secrets_encrypted = models.TextField(blank=True, editable=False)
    secret_keys = models.JSONField(default=list, blank=True)
    reason = models.CharField(max_length=255)
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, default="pending")  # pending | applied | failed
    applied_at = models.DateTimeField(null=True, blank=True)
    healthy = models.BooleanField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "instances_deploymentrevision"  # moved from the instances app; the table kept its name
        ordering = ["deployment_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["deployment", "number"], name="deployment_revision_unique")]

    def __str__(self) -> str:
        return f"{self.deployment_id} r{self.number}"

    @property
    def steps_in_order(self) -> list[DeploymentStep]:
        prefetched = getattr(self, "ordered_steps", None)
        return prefetched if prefetched is not None else list(self.steps.order_by("position"))


class DeploymentStep(models.Model):
    STEPS = ("provision", "configure", "health_check", "done")

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="steps")
    revision = models.ForeignKey(DeploymentRevision, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instances_deploymentstep"  # moved from the instances app; the table kept its name
        ordering = ["revision_id", "position"]

    def __str__(self) -> str:
        return f"{self.deployment_id} r{self.revision.number} {self.name}: {self.status}"


class DeploymentLogLine(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "instances_deploymentlogline"  # moved from the instances app; the table kept its name
        ordering = ["deployment_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["deployment", "seq"], name="deployment_log_seq_unique")]
