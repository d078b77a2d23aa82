"""Plan quotas that need counting (limits on rows are checked by the services that create them)."""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

from django.utils import timezone

from orchestrio.errors import PlanLimitReached


def current_period(tenant) -> tuple[datetime, datetime]:
    """The usage period: the calendar month (UTC)."""
    now = timezone.now().astimezone(dt_timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def executions_used(tenant, start: datetime, end: datetime) -> int:
    """Executions in [start, end): tasks dispatched."""
    from tasks.models import Task

    return Task.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end).count()


def check_execution_quota(tenant) -> None:
    plan = tenant.plan
    if plan.executions_per_month is None:
        return
    start, end = current_period(tenant)
    if executions_used(tenant, start, end) >= plan.executions_per_month:
        raise PlanLimitReached(
            f"the {plan.name} plan includes {plan.executions_per_month} executions a month and they are used up; "
            f"they renew on {end:%Y-%m-%d}, or upgrade",
            limit="executions",
            plan=plan.pk,
        )
