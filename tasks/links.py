"""The console pages of tasks that the audit log names (orchestrio/hooks.py `object_links`,
registered in apps.py): the tenant's tasks (a task's page outlives its instance)."""

from __future__ import annotations

from django.urls import reverse

from .models import Task


def task_links(*, principal, ids) -> dict[str, str]:
    found = Task.objects.filter(tenant=principal.tenant, task_id__in=ids).values_list("task_id", flat=True)
    return {task_id: reverse("tasks:detail", args=[task_id]) for task_id in found}
