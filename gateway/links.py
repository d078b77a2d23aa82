"""The console pages of gateway policies that the audit log names (orchestrio/hooks.py
`object_links`, registered in apps.py): the policy's row on its live instance's Gateway tab."""

from __future__ import annotations

from django.urls import reverse

from .models import GatewayPolicy


def policy_links(*, principal, ids) -> dict[str, str]:
    found = GatewayPolicy.objects.filter(tenant=principal.tenant, pk__in=ids, instance__destroyed_at__isnull=True).values_list("pk", "instance__instance_id")
    return {pk: f"{reverse('instances:gateway', args=[instance_id])}#policy-{pk}" for pk, instance_id in found}
