"""The agent runtime's data in the control plane: the model catalogue, each instance's debug
consent, and the usage its agent reported. Conversations are not here: they stay on the instance
(docs/agent.md)."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class LanguageModel(models.Model):
    """A model instances may be allowed to use, and what 1,000 tokens of it cost."""

    id = models.CharField("model id", primary_key=True, max_length=100, validators=[RegexValidator(MODEL_ID_PATTERN)])
    name = models.CharField(max_length=100)
    price_in_per_1k = models.DecimalField("USD per 1k tokens in", max_digits=12, decimal_places=6)
    price_out_per_1k = models.DecimalField("USD per 1k tokens out", max_digits=12, decimal_places=6)
    available = models.BooleanField(default=True, help_text="Offered in new model policies (policies naming it keep working).")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]
        verbose_name = "model in the catalogue"
        verbose_name_plural = "model catalogue"

    def __str__(self) -> str:
        return self.id


class InstanceRuntime(models.Model):
    """An instance's debug consent: whether its conversations may be read through its agent."""

    instance = models.OneToOneField("instances.Instance", on_delete=models.CASCADE, related_name="runtime_settings")
    debug_access = models.BooleanField(default=False)
    debug_access_changed_at = models.DateTimeField(null=True, blank=True)
    debug_access_changed_by = models.CharField(max_length=254, blank=True)

    class Meta:
        verbose_name = "instance runtime (consent)"
        verbose_name_plural = "instance runtimes (consent and conversations)"

    def __str__(self) -> str:
        return f"{self.instance_id}: debug access {'on' if self.debug_access else 'off'}"


class AgentUsage(models.Model):
    """What an instance's agent counted on one UTC day for one model (`model` "" holds the day's
    unique end users). `seen` is the agent's cumulative counters as last read under `epoch`: a
    read adds only what grew since (docs/agent.md, "Usage")."""

    tenant = models.ForeignKey("orchestrio.Tenant", on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="agent_usage")
    day = models.DateField()
    model = models.CharField(max_length=100, blank=True)
    requests = models.BigIntegerField(default=0)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    end_users = models.BigIntegerField(default=0)
    epoch = models.CharField(max_length=64, blank=True)
    seen = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance", "day", "model"], name="agent_usage_unique")]
        indexes = [models.Index(fields=["tenant", "day"], name="agent_usage_tenant_day")]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.day} {self.model or '(users)'}"
