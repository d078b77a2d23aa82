"""Periodic billing jobs."""

from __future__ import annotations

from .metering import flush_usage as _flush_usage


def flush_usage() -> int:
    return _flush_usage()
