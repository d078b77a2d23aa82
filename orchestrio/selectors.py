from __future__ import annotations

from django.utils import timezone

from . import hooks
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
    return {**hooks.tenant_usage(tenant), "tokens": api_token_active_count(tenant=tenant)}


def over_limits(*, tenant: Tenant, usage: dict | None = None) -> list[dict]:
    """Limits the tenant is over (after a downgrade): what exists keeps running, new ones are refused."""
    usage = usage or tenant_usage(tenant=tenant)
    limits = tenant.plan.limits
    out = []
    for name in ("instances", "running_instances", "tokens"):
        allowed = limits.get(name)
        if allowed is not None and usage.get(name, 0) > allowed:
            out.append({"limit": name, "used": usage[name], "allowed": allowed})
    return out
