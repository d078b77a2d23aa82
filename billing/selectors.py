"""Usage: executions and instance-hours, per tenant and per instance."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from instances.choices import InstanceState as S
from instances.models import StateChange
from orchestrio.quotas import current_period, executions_used
from runtime.selectors import agent_usage_daily, agent_usage_totals
from tasks.models import Task

from .metering import pending_counts
from .models import Subscription, UsageCounter

# States in which an instance holds a machine that costs money. Not stopped, suspended or asleep
# (scale to zero: only the way into sleep and out of it counts).
BILLABLE_STATES = frozenset({S.PROVISIONING, S.RUNNING, S.STARTING, S.STOPPING, S.SUSPENDING, S.RESUMING, S.SLEEPING, S.WAKING, S.RESIZING})


def billable_seconds(changes: list[tuple[datetime, str]], start: datetime, end: datetime) -> float:
    """Seconds in [start, end) spent in billable states, from an instance's ordered state changes
    (time, new state). The state before the first change is not billable (pending)."""
    total = 0.0
    state = None
    since = None
    for when, new_state in changes:
        if since is not None and state in BILLABLE_STATES:
            total += _overlap(since, when, start, end)
        state, since = new_state, when
    if since is not None and state in BILLABLE_STATES:
        total += _overlap(since, max(end, since), start, end)
    return total


def _overlap(a: datetime, b: datetime, start: datetime, end: datetime) -> float:
    low, high = max(a, start), min(b, end)
    return max(0.0, (high - low).total_seconds())


def _changes_by_instance(filters: dict, end: datetime) -> dict[int, list[tuple[datetime, str]]]:
    out: dict[int, list] = defaultdict(list)
    for instance_id, when, state in StateChange.objects.filter(created_at__lt=end, **filters).order_by("instance_id", "created_at", "id").values_list("instance_id", "created_at", "to_state"):
        out[instance_id].append((when, state))
    return out


def instance_hours(*, filters: dict, start: datetime, end: datetime) -> float:
    now = timezone.now()
    horizon = min(end, now)
    return round(sum(billable_seconds(changes, start, horizon) for changes in _changes_by_instance(filters, horizon).values()) / 3600, 3)


def usage_current(tenant) -> dict:
    start, end = current_period(tenant.pk)
    used = executions_used(tenant.pk, start, end)
    quota = tenant.plan.executions_per_month
    return {
        "period_start": start,
        "period_end": end,
        "executions": used,
        "quota": quota,
        "pct": round(used * 100 / quota, 1) if quota else None,
        "instance_hours": instance_hours(filters={"tenant": tenant}, start=start, end=end),
        # The agent runtime's usage (tokens, cost, requests, end users) over the period's days.
        "agent": agent_usage_totals(agent_usage_daily(tenant_id=tenant.pk, first=start.date(), last=(end - timedelta(microseconds=1)).date())),
    }


def usage_daily(*, tenant_id: str, days: int, instance=None) -> list[dict]:
    """A daily series (UTC days, oldest first, ending today) of executions and instance-hours,
    for the tenant or for one of its instances: the same counts the period totals add up."""
    today = timezone.now().astimezone(dt_timezone.utc).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=dt_timezone.utc)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=dt_timezone.utc)
    scope = {"instance": instance} if instance is not None else {"tenant_id": tenant_id}
    executions: dict[date, int] = defaultdict(int)
    for row in UsageCounter.objects.filter(**scope, kind="executions", day__gte=first, day__lte=today).values("day").annotate(n=Sum("count")):
        executions[row["day"]] += row["n"]
    for row in Task.objects.filter(**scope, created_at__gte=start, created_at__lt=end).annotate(day=TruncDate("created_at", tzinfo=dt_timezone.utc)).values("day").annotate(n=Count("id")):
        executions[row["day"]] += row["n"]
    executions[today] += pending_counts(tenant_id, today, today + timedelta(days=1), instance.pk if instance is not None else None)
    now = timezone.now()
    by_instance = _changes_by_instance(scope, end)
    agent = agent_usage_daily(first=first, last=today, instance=instance, tenant_id=tenant_id)
    daily = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        day_start = datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
        day_end = min(day_start + timedelta(days=1), now)
        seconds = sum(billable_seconds(changes, day_start, day_end) for changes in by_instance.values()) if day_end > day_start else 0.0
        daily.append({"date": day, "executions": executions.get(day, 0), "instance_hours": round(seconds / 3600, 3), **agent[day]})
    return daily


def instance_usage(instance, days: int) -> dict:
    """A daily series (UTC days) of executions and instance-hours for one instance."""
    daily = usage_daily(tenant_id=instance.tenant_id, instance=instance, days=days)
    return {
        "instance_id": instance.instance_id,
        "days": days,
        "daily": daily,
        "totals": {
            "executions": sum(d["executions"] for d in daily), "instance_hours": round(sum(d["instance_hours"] for d in daily), 3),
            **agent_usage_totals({d["date"]: {k: d[k] for k in ("tokens_in", "tokens_out", "cost_usd", "requests", "end_users")} for d in daily}),
        },  # fmt: skip
    }


def subscription_status(tenant) -> str:
    """The tenant's subscription status as the API shows it ("none" without a subscription)."""
    subscription = Subscription.objects.filter(tenant=tenant).only("status").first()
    return subscription.status if subscription else "none"


def subscription_period(tenant_id: str):
    """The Stripe subscription's current period, if it has one and now is in it (else None: the
    core's quotas use the calendar month)."""
    subscription = Subscription.objects.filter(tenant_id=tenant_id).only("current_period_start", "current_period_end").first()
    now = timezone.now()
    if subscription and subscription.current_period_start and subscription.current_period_end and subscription.current_period_start <= now < subscription.current_period_end:
        return subscription.current_period_start, subscription.current_period_end
    return None


def proxied_executions(tenant_id: str, start: datetime, end: datetime) -> int:
    """Proxied gateway/tunnel requests in [start, end): counted in UsageCounter, and those not
    flushed from Redis yet."""
    proxied = UsageCounter.objects.filter(tenant_id=tenant_id, kind="executions", day__gte=start.date(), day__lt=end.date()).aggregate(n=Sum("count"))["n"] or 0
    return proxied + pending_counts(tenant_id, start.date(), end.date())


def proxied_tenants(since: datetime) -> set[str]:
    """Tenants with proxied requests counted since `since` (whole days)."""
    return set(UsageCounter.objects.filter(day__gte=since.date()).values_list("tenant_id", flat=True))
