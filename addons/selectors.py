from __future__ import annotations

from .choices import UNFINISHED_OPERATION_STATUSES
from .models import AddOn, AddOnOperation


def live_addons():
    """Add-ons not destroyed (the API lists and reads these)."""
    return AddOn.objects.filter(deleted_at__isnull=True).select_related("instance")


def addon_operations_due(*, now, limit: int = 200) -> list[tuple[int, object]]:
    """(pk, due time) of the operations waiting for AWS whose next look is due, the longest due first."""
    return list(
        AddOnOperation.objects.filter(status__in=UNFINISHED_OPERATION_STATUSES, next_poll_at__lte=now).order_by("next_poll_at", "pk").values_list("pk", "next_poll_at")[:limit]
    )
