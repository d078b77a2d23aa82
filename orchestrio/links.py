"""The console pages of the core's own objects that the audit log names (orchestrio/hooks.py
`object_links`, registered in apps.py): tokens, members, invitations, the tenant. Each resolver
answers, in one query, only for what exists in the principal's tenant and what the principal's
role may open."""

from __future__ import annotations

from django.urls import reverse

from . import roles, selectors


def _pks(ids) -> list[int]:
    return [int(i) for i in ids if i.isdigit()]


def api_token_links(*, principal, ids) -> dict[str, str]:
    found = selectors.api_token_list(tenant=principal.tenant).filter(pk__in=_pks(ids)).values_list("pk", flat=True)
    return {str(pk): f"{reverse('console:tokens')}#token-{pk}" for pk in found}


def member_links(*, principal, ids) -> dict[str, str]:
    found = selectors.member_list(tenant=principal.tenant).filter(pk__in=_pks(ids)).values_list("pk", flat=True)
    return {str(pk): f"{reverse('console:team')}#member-{pk}" for pk in found}


def invitation_links(*, principal, ids) -> dict[str, str]:
    """Pending invitations, on the team page, which lists them to those who manage the team."""
    if not roles.allows(principal.role, roles.MEMBERS):
        return {}
    found = selectors.invitation_pending_list(tenant=principal.tenant).filter(pk__in=_pks(ids)).values_list("pk", flat=True)
    return {str(pk): f"{reverse('console:team')}#invitation-{pk}" for pk in found}


def tenant_links(*, principal, ids) -> dict[str, str]:
    return {principal.tenant.pk: reverse("console:account")} if principal.tenant.pk in ids else {}
