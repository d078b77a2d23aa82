"""The add-ons' job: one per operation, queued on commit by the service that accepted it."""

from __future__ import annotations

from . import services


def run_addon_operation(operation_pk: int) -> str:
    operation = services.addon_operation_begin(pk=operation_pk)
    if operation is None:
        return "already finished"
    services.addon_operation_run(operation=operation)
    return f"{operation.kind} of {operation.addon.addon_id} done"


def backup_sweep() -> dict:
    """Periodic (orchestrio/schedule.py): due automatic backups, retention."""
    return services.backups_sweep()
