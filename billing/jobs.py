"""Periodic and background billing jobs."""

from __future__ import annotations

from . import alerts
from .metering import flush_usage as _flush_usage


def flush_usage() -> dict:
    """Move metered executions into the database, then send quota alerts that are due."""
    flushed = _flush_usage()
    return {"flushed": flushed, "quota_alerts": alerts.quota_alerts()}


def deliver_alert(delivery_id: str) -> str:
    return alerts.deliver(delivery_id)


def retry_alerts() -> int:
    return alerts.retry_due()
