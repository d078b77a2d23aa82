"""The console pages of instances that the audit log names (orchestrio/hooks.py `object_links`,
registered in apps.py): the tenant's live instances; a destroyed one stays plain text."""

from __future__ import annotations

from django.urls import reverse

from .selectors import live_instances


def instance_links(*, principal, ids) -> dict[str, str]:
    found = live_instances(tenant=principal.tenant).filter(instance_id__in=ids).values_list("instance_id", flat=True)
    return {instance_id: reverse("instances:detail", args=[instance_id]) for instance_id in found}
