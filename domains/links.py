"""The console pages of custom domains that the audit log names (orchestrio/hooks.py
`object_links`, registered in apps.py): the Domain tab of the live instance the tenant's
unremoved claim on the name is for; a removed or another tenant's domain stays plain text."""

from __future__ import annotations

from django.urls import reverse

from .models import CustomDomain


def domain_links(*, principal, ids) -> dict[str, str]:
    found = CustomDomain.objects.filter(
        tenant=principal.tenant, domain__in=ids, removed_at__isnull=True, instance__destroyed_at__isnull=True
    ).values_list("domain", "instance__instance_id")
    return {domain: reverse("instances:domain", args=[instance_id]) for domain, instance_id in found}
