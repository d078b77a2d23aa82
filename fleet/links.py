"""The fleet requests the audit log names, linked to their console pages (orchestrio/hooks.py
`object_links`; registered in apps.py)."""

from __future__ import annotations

from django.urls import reverse

from .models import FleetRequest


def fleet_request_links(*, principal, ids) -> dict[str, str]:
    found = FleetRequest.objects.filter(tenant=principal.tenant, request_id__in=ids).values_list("request_id", flat=True)
    return {request_id: reverse("fleet:detail", args=[request_id]) for request_id in found}
