"""Reads: the model catalogue, an instance's consent and model policy, and agent usage per day."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Sum

from orchestrio.models import ActivityEvent

from .choices import POLICY_CONFIG_KEY
from .models import AgentUsage, InstanceRuntime, LanguageModel

CONSENT_ACTIONS = ("instance.consent.grant", "instance.consent.revoke", "instance.conversations.staff_read")


def catalogue(*, available_only: bool = True):
    models = LanguageModel.objects.all()
    return models.filter(available=True) if available_only else models


def consent_get(*, instance) -> InstanceRuntime:
    """The instance's consent row, or an unsaved one (off) when it was never set."""
    return InstanceRuntime.objects.filter(instance=instance).first() or InstanceRuntime(instance=instance)


def consent_trail(*, instance, limit: int = 20):
    """Who turned the consent on or off, and which staff read the conversations: the audit rows."""
    return ActivityEvent.objects.filter(
        tenant_id=instance.tenant_id, object_type="instance", object_id=instance.instance_id, action__in=CONSENT_ACTIONS
    )[:limit]


def model_policy_get(*, instance) -> dict:
    """The policy as the agent gets it (in the instance's config), with its defaults filled in."""
    policy = (instance.config or {}).get(POLICY_CONFIG_KEY)
    policy = policy if isinstance(policy, dict) else {}
    return {
        "instance_id": instance.instance_id,
        "allowed_models": list(policy.get("allowed_models") or []),
        "default_model": policy.get("default_model"),
        "max_tokens_per_day": policy.get("max_tokens_per_day"),
    }


def _prices() -> dict[str, tuple[Decimal, Decimal]]:
    return {m.id: (m.price_in_per_1k, m.price_out_per_1k) for m in LanguageModel.objects.only("id", "price_in_per_1k", "price_out_per_1k")}


def cost_usd(*, model: str, tokens_in: int, tokens_out: int, prices: dict) -> Decimal:
    """What the tokens cost at the catalogue's prices (a model not in it costs nothing)."""
    price_in, price_out = prices.get(model, (Decimal(0), Decimal(0)))
    return (price_in * tokens_in + price_out * tokens_out) / 1000


def agent_usage_daily(*, first: date, last: date, instance=None, tenant_id: str | None = None) -> dict[date, dict]:
    """Tokens in/out, cost, requests and unique end users per UTC day in [first, last], for one
    instance or the whole tenant; every day present (zeros when nothing was said)."""
    scope = {"instance": instance} if instance is not None else {"tenant_id": tenant_id}
    prices = _prices()
    days = {first + timedelta(days=n): {"tokens_in": 0, "tokens_out": 0, "cost_usd": Decimal(0), "requests": 0, "end_users": 0} for n in range((last - first).days + 1)}
    rows = AgentUsage.objects.filter(**scope, day__gte=first, day__lte=last).values("day", "model").annotate(
        r=Sum("requests"), i=Sum("tokens_in"), o=Sum("tokens_out"), u=Sum("end_users")
    ).order_by()  # fmt: skip
    for row in rows:
        day = days.get(row["day"])
        if day is None:
            continue
        day["requests"] += row["r"]
        day["tokens_in"] += row["i"]
        day["tokens_out"] += row["o"]
        day["end_users"] += row["u"]
        day["cost_usd"] += cost_usd(model=row["model"], tokens_in=row["i"], tokens_out=row["o"], prices=prices)
    for day in days.values():
        day["cost_usd"] = day["cost_usd"].quantize(Decimal("0.000001"))
    return days


def agent_usage_totals(daily: dict[date, dict]) -> dict:
    totals = defaultdict(int)
    for day in daily.values():
        for key, value in day.items():
            totals[key] += value
    totals["cost_usd"] = Decimal(totals["cost_usd"]).quantize(Decimal("0.000001"))
    return {"tokens_in": totals["tokens_in"], "tokens_out": totals["tokens_out"], "cost_usd": totals["cost_usd"], "requests": totals["requests"], "end_users": totals["end_users"]}
