"""The agent runtime's periodic job."""

from __future__ import annotations

from . import services


def collect_agent_usage() -> dict:
    """Read every running instance's agent usage counters into AgentUsage (orchestrio/schedule.py)."""
    return services.usage_collect()
