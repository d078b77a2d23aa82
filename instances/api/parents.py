"""The parents nested API routes name, for `TenantScopedViewSet.parent`."""

from __future__ import annotations

from orchestrio.api.viewsets import Parent

from ..models import Instance

# /api/v1/instances/{instance_id}/…: the tenant's live instance with that id (a token scoped to an
# instance reaches only its own).
INSTANCE = Parent(
    queryset=Instance.objects.filter(destroyed_at__isnull=True).select_related("tenant__plan"),
    url_kwarg="instance_id",
    lookup_field="instance_id",
    field="instance",
    label="instance",
    instance_scope_field="instance_id",
)
