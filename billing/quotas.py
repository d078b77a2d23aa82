"""Plan quotas that need counting (limits on rows are checked by the services that create them)."""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

from django.utils import timezone

from orchestrio.errors import PlanLimitReached


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


def check_execution_quota(tenant) -> None:
    plan = tenant.plan
    if plan.executions_per_month is None:
        return
    start, end = current_period(tenant.pk)
    if executions_used(tenant.pk, start, end) >= plan.executions_per_month:
        raise PlanLimitReached(
            f"the {plan.name} plan includes {plan.executions_per_month} executions a month and they are used up; "
            f"they renew on {end:%Y-%m-%d}, or upgrade",
            limit="executions",
            plan=plan.pk,
        )


def execution_quota_exceeded(tenant_id: str, plan_id: str, plan_name: str, quota: int | None):
    """For the proxies: a 402 response when the tenant's executions (`quota` a month on its plan)
    are used up, else None.

    Counting costs queries, so the verdict is cached for a short while per tenant (the quota can
    be overshot by at most the requests of that window)."""
    from django.core.cache import cache
    from django.http import JsonResponse

    if quota is None:
        return None
    key = f"quota:executions:{tenant_id}:{plan_id}"
    try:
        verdict = cache.get(key)
        if verdict is None:
            start, end = current_period(tenant_id)
            verdict = "over" if executions_used(tenant_id, start, end) >= quota else "ok"
            cache.set(key, verdict, 10)
    except Exception:  # noqa: BLE001 - a cache outage must not stop traffic
        return None
    if verdict == "ok":
        return None
    return JsonResponse(
        {"detail": f"the {plan_name} plan's {quota} executions this month are used up; upgrade to continue", "limit": "executions", "plan": plan_id},
        status=402,
    )


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
