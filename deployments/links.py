"""Links between deployments and the console's other pages: the deployments the audit log names
(orchestrio/hooks.py `object_links`), and the instance page's link to the deployment that
provisioned it (instances/pages.py `register_related`); both registered in apps.py."""

from __future__ import annotations

from django.urls import reverse

from .selectors import live_deployments


def deployment_links(*, principal, ids) -> dict[str, str]:
    found = live_deployments().filter(tenant=principal.tenant, pk__in=ids).values_list("pk", flat=True)
    return {pk: reverse("deployments:detail", args=[pk]) for pk in found}


def instance_deployments(*, instance) -> list[dict[str, str]]:
    """The live deployment running on `instance` (one query), as the instance page shows it."""
    found = live_deployments().filter(tenant_id=instance.tenant_id, instance_id=instance.pk).values_list("pk", "name", "environment")
    return [
        {"label": "Deployment", "text": f"{name} ({environment})", "url": reverse("deployments:detail", args=[pk])}
        for pk, name, environment in found
    ]
