"""A fleet request: a batch of lifecycle operations asked for in one call (Open Resource Broker's
model): acquire `count` instances from a blueprint, or return (destroy) instances. Its status is
not stored: it is derived from its instances' operations when read (`selectors.with_status`)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .choices import BatchStatus, RequestKind


class FleetRequest(models.Model):
    request_id = models.CharField(max_length=40, unique=True)  # "req-<12 hex>"
    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=RequestKind.choices)
    # What was asked (acquire): recorded as given, the instances hold what was resolved.
    blueprint_name = models.CharField(max_length=100, blank=True)
    plan_id = models.CharField(max_length=64, blank=True)
    region = models.CharField(max_length=32, blank=True)
    instance_id_prefix = models.CharField(max_length=60, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    count = models.PositiveSmallIntegerField()
    # A return of an acquire request's instances names that request.
    returns = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by = models.CharField(max_length=254)
    requested_by_type = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="fleet_request_tenant_created")]

    def __str__(self) -> str:
        return f"{self.request_id} ({self.kind} {self.count})"


class FleetRequestItem(models.Model):
    """One instance of a request, with the operation the request started on it (None when there
    was nothing to do: an instance already being destroyed or destroyed, for a return)."""

    request = models.ForeignKey(FleetRequest, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField()
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="+")
    operation = models.ForeignKey("instances.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.CharField(max_length=200, blank=True)
    # A batch's item (FleetBatch): the machine the batch assigned it, and when its agent took the
    # instance's own key in place of the batch's bootstrap key.
    machine_id = models.CharField(max_length=32, blank=True)
    adopted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["request", "position"]
        constraints = [models.UniqueConstraint(fields=["request", "position"], name="fleet_item_position")]

    def __str__(self) -> str:
        return f"{self.request_id} #{self.position}"


class FleetBatch(models.Model):
    """One EC2 Fleet / Spot Fleet call for all the machines of an acquire request from a fleet
    blueprint (docs/fleet.md "One fleet call per batch"). The instances' create operations wait,
    queued under `rq_job_id`, until the call is answered and its machines assigned; each then
    finishes on its own. The machines boot with a bootstrap key the batch shares (its hash in the
    launch template's user data); each agent is given its instance's own key once it answers, and
    the bootstrap key is erased when every machine has its own (or FLEET_BOOTSTRAP_KEY_SECONDS
    after the batch began, whichever is first)."""

    request = models.OneToOneField(FleetRequest, on_delete=models.CASCADE, related_name="batch")
    provider_api = models.CharField(max_length=16)
    status = models.CharField(max_length=12, choices=BatchStatus.choices, default=BatchStatus.LAUNCHING)
    bootstrap_key_encrypted = models.TextField(blank=True)
    rq_job_id = models.CharField(max_length=80, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    fleet_id = models.CharField(max_length=64, blank=True)  # the EC2 Fleet id or the Spot Fleet request id
    launched = models.PositiveSmallIntegerField(default=0)
    extra_machine_ids = models.JSONField(default=list, blank=True)  # launched beyond the count: terminated
    reasons = models.JSONField(default=list, blank=True)  # AWS's, when it launched fewer than asked
    created_at = models.DateTimeField(default=timezone.now)
    assigned_at = models.DateTimeField(null=True, blank=True)
    key_erased_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.request_id} batch ({self.provider_api}, {self.status})"
