"""The tasks app's figures for the metrics endpoint (orchestrio.metrics, registered in
TasksConfig.ready): tasks by status, every status reported (0 included)."""

from __future__ import annotations

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from .choices import TaskStatus
from .models import Task


def database_figures() -> list[GaugeMetricFamily]:
    tasks = list(Task.objects.order_by().values_list("status").annotate(n=Count("pk")))
    by_status = dict.fromkeys(TaskStatus.values, 0) | dict(tasks)
    family = GaugeMetricFamily("orchestrio_tasks", "Tasks by status.", labels=["status"])
    for status, n in by_status.items():
        family.add_metric([status], n)
    return [family]
