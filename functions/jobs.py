"""The functions' periodic jobs (orchestrio/schedule.py)."""

from __future__ import annotations

from . import metrics, services


def stop_idle_functions() -> dict:
    """Scale to zero: stop runtimes idle past their function's idle_timeout_seconds."""
    return services.functions_stop_idle()


def flush_function_metrics() -> int:
    return metrics.flush()
