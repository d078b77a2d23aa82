"""The functions' jobs: the periodic ones (orchestrio/schedule.py) and a deploy on a function
instance, which may wait minutes for its machine (functions/services.py `deploy_run`)."""

from __future__ import annotations

from orchestrio.queue import lease
from orchestrio.tenancy import Actor

from . import metrics, services


def stop_idle_functions() -> dict:
    """Scale to zero: stop runtimes idle past their function's idle_timeout_seconds."""
    return services.functions_stop_idle()


def flush_function_metrics() -> int:
    return metrics.flush()


def deploy_version(version_pk: int, actor_type: str, actor_label: str) -> str:
    """Finish a deploy (start the version on the function instance, switch to it). Holds a lease
    while it runs: the idle sweep puts a deploy whose job was lost (a killed worker) back on the
    queue, never one that runs."""
    with lease(services.deploy_lease(version_pk=version_pk), ttl=60):
        version = services.deploy_run(version_pk=version_pk, actor=Actor(type=actor_type, label=actor_label))
    return version.status if version is not None else "deleted"
