"""Periodic gateway jobs."""

from __future__ import annotations

from . import traffic, wake


def sleep_idle_instances() -> dict:
    """Put to sleep the running instances with no traffic for their idle timeout (gateway/wake.py)."""
    return wake.idle_sweep()


def flush_request_metrics() -> dict:
    """Fold the proxied requests' counters into the database, then apply retention
    (gateway/traffic.py)."""
    return traffic.flush()
