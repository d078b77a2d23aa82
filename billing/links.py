"""The console pages of billing's objects that the audit log names (orchestrio/hooks.py
`object_links`, registered in apps.py): alert deliveries and the alert webhook (on the Alerts
page, for the roles that hold `alerts`), the subscription (the Billing page)."""

from __future__ import annotations

from django.urls import reverse

from orchestrio import roles

from .models import AlertDelivery


def delivery_links(*, principal, ids) -> dict[str, str]:
    if not roles.allows(principal.role, roles.ALERTS):
        return {}
    found = AlertDelivery.objects.filter(tenant=principal.tenant, pk__in=ids).values_list("pk", flat=True)
    return {pk: f"{reverse('billing:alerts')}#delivery-{pk}" for pk in found}


def alert_config_links(*, principal, ids) -> dict[str, str]:
    if not roles.allows(principal.role, roles.ALERTS) or principal.tenant.pk not in ids:
        return {}
    return {principal.tenant.pk: reverse("billing:alerts")}


def subscription_links(*, principal, ids) -> dict[str, str]:
    return {principal.tenant.pk: reverse("billing:overview")} if principal.tenant.pk in ids else {}
