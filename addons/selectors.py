from __future__ import annotations

from .models import AddOn


def live_addons():
    """Add-ons not destroyed (the API lists and reads these)."""
    return AddOn.objects.filter(deleted_at__isnull=True).select_related("instance")
