"""Plan quotas that need counting (limits on rows are checked by the services that create them)."""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

from django.utils import timezone

from orchestrio.errors import PlanLimitReached
from orchestrio.limits import limit_check


def current_period(tenant_id: str) -> tuple[datetime, datetime]:
    """The usage period: the Stripe subscription's current period, else the calendar month (UTC)."""
    from .models import Subscription

    subscription = Subscription.objects.filter(tenant_id=tenant_id).only("current_period_start", "current_period_end").first()
    now = timezone.now().astimezone(dt_timezone.utc)
    if subscription and subscription.current_period_start and subscription.current_period_end and subscription.current_period_start <= now < subscription.current_period_end:
        return subscription.current_period_start, subscription.current_period_end
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def executions_used(tenant_id: str, start: datetime, end: datetime) -> int:
    """Executions in [start, end): tasks dispatched, plus proxied gateway/tunnel requests (counted
    in UsageCounter, and those not flushed from Redis yet)."""
    from django.db.models import Sum

    from tasks.models import Task

    from .metering import pending_counts
    from .models import UsageCounter

    tasks = Task.objects.filter(tenant_id=tenant_id, created_at__gte=start, created_at__lt=end).count()
    proxied = UsageCounter.objects.filter(tenant_id=tenant_id, kind="executions", day__gte=start.date(), day__lt=end.date()).aggregate(n=Sum("count"))["n"] or 0
    return tasks + proxied + pending_counts(tenant_id, start.date(), end.date())


def execution_quota_check(*, tenant_id: str, plan, cached: bool = False) -> None:
    """402 (`orchestrio.limits`) when the tenant's executions this period are used up.

    `cached` (the proxies): counting costs queries, so the count is cached for a short while per
    tenant (the quota can be overshot by at most the requests of that window), and a cache
    outage lets traffic through rather than stopping it."""
    from django.core.cache import cache

    def used() -> int:
        start, end = current_period(tenant_id)
        return executions_used(tenant_id, start, end)

    if not cached:
        limit_check(plan=plan, limit="executions", used=used)
        return
    key = f"quota:executions:{tenant_id}:{plan.pk}"

    def used_cached() -> int:
        count = cache.get(key)
        if count is None:
            count = used()
            cache.set(key, count, 10)
        return count

    try:
        limit_check(plan=plan, limit="executions", used=used_cached)
    except PlanLimitReached:
        raise
    except Exception:  # noqa: BLE001 - a cache outage must not stop traffic
        return


def execution_quota_check_proxied(*, tenant_id: str, plan_id: str, plan_name: str, quota: int | None) -> None:
    """`execution_quota_check` for the proxies, which read the plan's facts with the instance."""
    from .models import SubscriptionPlan

    execution_quota_check(tenant_id=tenant_id, plan=SubscriptionPlan(id=plan_id, name=plan_name, executions_per_month=quota), cached=True)


def quota_alerts() -> int:
    """Alert tenants at 80% and 100% of their monthly executions, once per period each. Looks at
    tenants with executions today (the others' usage did not move)."""
    from datetime import timedelta

    from django.db import IntegrityError, transaction

    from orchestrio.models import Tenant
    from tasks.models import Task

    from . import alerts
    from .models import QuotaAlertMark, UsageCounter

    today = timezone.now().date()
    active = set(UsageCounter.objects.filter(day=today).values_list("tenant_id", flat=True))
    active |= set(Task.objects.filter(created_at__gte=timezone.now() - timedelta(days=1)).values_list("tenant_id", flat=True))
    sent = 0
    for tenant in Tenant.objects.filter(pk__in=active, plan__executions_per_month__isnull=False).select_related("plan"):
        start, end = current_period(tenant.pk)
        quota = tenant.plan.executions_per_month
        used = executions_used(tenant.pk, start, end)
        for threshold in (80, 100):
            if quota and used * 100 >= quota * threshold:
                try:
                    with transaction.atomic():
                        QuotaAlertMark.objects.create(tenant=tenant, period_start=start, threshold=threshold)
                        alerts.emit(tenant.pk, f"quota.{threshold}", {"executions": used, "quota": quota, "period_start": start, "period_end": end})
                        sent += 1
                except IntegrityError:
                    continue
    return sent
