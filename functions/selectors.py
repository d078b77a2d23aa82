"""Reads for functions: querysets, a slug's availability, and a function's metrics."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet, Sum
from django.utils import timezone

from gateway import histogram

from .models import Function, FunctionMetricMinute

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


def function_list(*, tenant=None) -> QuerySet[Function]:
    queryset = Function.objects.select_related("current_version").defer("current_version__code", "current_version__env_encrypted")
    return queryset.filter(tenant=tenant) if tenant is not None else queryset


def slug_taken(slug: str) -> bool:
    return Function.objects.filter(slug=slug).exists()


def function_metrics(*, function: Function, window: str, now=None) -> dict:
    """Per-minute points of the window (only minutes with invocations) and its totals."""
    now = now or timezone.now()
    since = now - WINDOWS[window]
    rows = list(FunctionMetricMinute.objects.filter(function=function, minute__gte=since).order_by("minute"))
    totals = FunctionMetricMinute.objects.filter(function=function, minute__gte=since).aggregate(
        count=Sum("count"), errors=Sum("errors"), cold_starts=Sum("cold_starts"), duration=Sum("duration_ms_total")
    )
    count = totals["count"] or 0
    merged = histogram.empty()
    for row in rows:
        histogram.add_into(merged, row.latency_histogram)

    def quantiles(hist) -> dict:
        return {name: (round(value, 1) if (value := histogram.percentile(hist, q)) is not None else None) for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))}

    return {
        "window": window,
        "points": [
            {"start": row.minute, "count": row.count, "errors": row.errors, "cold_starts": row.cold_starts, "avg_ms": round(row.duration_ms_total / row.count, 1) if row.count else None, **quantiles(row.latency_histogram)}
            for row in rows
        ],
        "totals": {
            "count": count, "errors": totals["errors"] or 0, "cold_starts": totals["cold_starts"] or 0,
            "error_rate": round((totals["errors"] or 0) / count, 4) if count else 0.0,
            "avg_ms": round((totals["duration"] or 0) / count, 1) if count else None, **quantiles(merged),
        },
        "all_time": {"invocations": function.invocations, "errors": function.errors, "cold_starts": function.cold_starts, "last_invoked_at": function.last_invoked_at},
    }  # fmt: skip
