"""The instances app's figures for the metrics endpoint (orchestrio.metrics, registered in
InstancesConfig.ready): operations by kind and status, instances by state, running instances by
health. Every known label value is reported, 0 included, so an alert never waits for a series."""

from __future__ import annotations

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from .choices import HealthStatus, InstanceState, OperationKind, OperationStatus
from .models import Instance, Operation


def database_figures() -> list[GaugeMetricFamily]:
    operations = list(Operation.objects.order_by().values_list("kind", "status").annotate(n=Count("pk")))
    instances = list(Instance.objects.order_by().values_list("state", "health_status").annotate(n=Count("pk")))
    families = []

    by_kind_status = {(kind, status): 0 for kind in OperationKind.values for status in OperationStatus.values}
    for kind, status, n in operations:
        by_kind_status[(kind, status)] = n
    family = GaugeMetricFamily("orchestrio_operations", "Lifecycle operations by kind and status.", labels=["kind", "status"])
    for labels, n in by_kind_status.items():
        family.add_metric(list(labels), n)
    families.append(family)

    by_state = dict.fromkeys(InstanceState.values, 0)
    by_health = dict.fromkeys(HealthStatus.values, 0)
    for state, health, n in instances:
        by_state[state] = by_state.get(state, 0) + n
        if state == InstanceState.RUNNING:
            by_health[health] = by_health.get(health, 0) + n
    family = GaugeMetricFamily("orchestrio_instances", "Instances by state.", labels=["state"])
    for state, n in by_state.items():
        family.add_metric([state], n)
    families.append(family)
    family = GaugeMetricFamily("orchestrio_running_instances_health", "Running instances by their last health status.", labels=["health"])
    for health, n in by_health.items():
        family.add_metric([health], n)
    families.append(family)
    return families
