"""Plan quotas that need counting (limits on rows are checked by the services that create them).

The plans are the core's (orchestrio.models.SubscriptionPlan); what counts as an execution is the
apps': each registers a counter in its AppConfig.ready (`on_count_executions`: the tasks app its
tasks, billing the proxied gateway/tunnel requests it meters), and billing the usage period of a
tenant's subscription (`provide_period`). The core counts through them, importing no app.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone as dt_timezone

from django.core.cache import cache
from django.utils import timezone

from .errors import PlanLimitReached
from .limits import limit_check
from .models import SubscriptionPlan

# func(tenant_id, start, end) -> executions in [start, end)
_execution_counters: list[Callable[[str, datetime, datetime], int]] = []
# func(since) -> ids of the tenants with executions since then
_executing_tenants: list[Callable[[datetime], set[str]]] = []
# func(tenant_id) -> (start, end) of the tenant's current period, or None (the calendar month)
_period: list[Callable[[str], tuple[datetime, datetime] | None]] = []


def on_count_executions(func: Callable[[str, datetime, datetime], int], *, tenants: Callable[[datetime], set[str]]) -> Callable:
    """Register a kind of execution: `func` counts a tenant's, `tenants` says who had some."""
    if func not in _execution_counters:
        _execution_counters.append(func)
        _executing_tenants.append(tenants)
    return func


def executing_tenants(since: datetime) -> set[str]:
    return set().union(*(tenants(since) for tenants in _executing_tenants))


def provide_period(func: Callable[[str], tuple[datetime, datetime] | None]) -> Callable:
    _period[:] = [func]
    return func


def current_period(tenant_id: str) -> tuple[datetime, datetime]:
    """The usage period: the subscription's current period (billing's), else the calendar month (UTC)."""
    period = _period[0](tenant_id) if _period else None
    if period is not None:
        return period
    now = timezone.now().astimezone(dt_timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def executions_used(tenant_id: str, start: datetime, end: datetime) -> int:
    """Executions in [start, end), as the registered counters count them (tasks dispatched,
    proxied gateway/tunnel requests)."""
    return sum(count(tenant_id, start, end) for count in _execution_counters)


def execution_quota_check(*, tenant_id: str, plan, cached: bool = False) -> None:
    """402 (`orchestrio.limits`) when the tenant's executions this period are used up.

    `cached` (the proxies): counting costs queries, so the count is cached for a short while per
    tenant (the quota can be overshot by at most the requests of that window), and a cache
    outage lets traffic through rather than stopping it."""
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
    execution_quota_check(tenant_id=tenant_id, plan=SubscriptionPlan(id=plan_id, name=plan_name, executions_per_month=quota), cached=True)
