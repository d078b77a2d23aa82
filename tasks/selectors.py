from __future__ import annotations

from .models import Task


def task_list(*, tenant, instance_scope: str | None = None):
    tasks = Task.objects.filter(tenant=tenant).select_related("instance")
    if instance_scope is not None:
        tasks = tasks.filter(instance__instance_id=instance_scope, instance__destroyed_at__isnull=True)
    return tasks
