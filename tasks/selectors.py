from __future__ import annotations

from .models import Task


def task_executions(tenant_id: str, start, end) -> int:
    """Tasks dispatched in [start, end): each is an execution of the plan's quota."""
    return Task.objects.filter(tenant_id=tenant_id, created_at__gte=start, created_at__lt=end).count()


def task_tenants(since) -> set[str]:
    return set(Task.objects.filter(created_at__gte=since).values_list("tenant_id", flat=True))
