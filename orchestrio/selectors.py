from __future__ import annotations

from django.utils import timezone

from .models import ApiToken, Tenant


def api_token_list(*, tenant: Tenant):
    return ApiToken.objects.filter(tenant=tenant)


def api_token_active_count(*, tenant: Tenant) -> int:
    return (
        ApiToken.objects.filter(tenant=tenant, revoked_at__isnull=True)
        .exclude(expires_at__lte=timezone.now())
        .count()
    )


def tenant_usage(*, tenant: Tenant) -> dict[str, int]:
    from instances.selectors import instance_counts

    return {**instance_counts(tenant=tenant), "tokens": api_token_active_count(tenant=tenant)}
