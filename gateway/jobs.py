"""Periodic gateway jobs."""

from __future__ import annotations

from . import traffic


def flush_request_metrics() -> dict:
    """Fold the proxied requests' counters into the database, then apply retention
    (gateway/traffic.py)."""
    return traffic.flush()
