from __future__ import annotations

import re

from django.db.models import QuerySet
from django.utils import timezone

from . import hooks, roles
from .errors import Forbidden
from .models import ActivityEvent, ApiToken, Invitation, Membership, Notification, Tenant
from .tokens import hash_token


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


def member_list(*, tenant: Tenant):
    """The tenant's members, oldest first, each with its user (one query)."""
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("created_at", "id")


def invitation_list(*, tenant: Tenant):
    return Invitation.objects.filter(tenant=tenant).select_related("invited_by")


def invitation_pending_list(*, tenant: Tenant):
    return invitation_list(tenant=tenant).filter(
        accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    )


def invitation_by_token(*, token: str) -> Invitation | None:
    """The invitation a link's token opens, whatever its status, or None (by its hash only)."""
    if not re.fullmatch(r"inv_[A-Za-z0-9_-]{43}", token or ""):
        return None  # not a link we made: no query
    return Invitation.objects.select_related("tenant", "invited_by").filter(token_hash=hash_token(token)).first()


def activity_list(*, tenant: Tenant):
    """The tenant's audit log, newest first."""
    return ActivityEvent.objects.filter(tenant=tenant)


ACTIVITY_ACTIONS_FROM = 1000


def activity_actions(*, tenant: Tenant) -> list[str]:
    """The actions of the tenant's recent log, for the console's filter to suggest: read from the
    newest entries (the tenant/time index) rather than a DISTINCT over a log of any length."""
    return sorted(set(activity_list(tenant=tenant)[:ACTIVITY_ACTIONS_FROM].values_list("action", flat=True)))


def object_refs_with_links(*, principal, items, refs) -> list:
    """`items`, each with `objects`: `[{"type", "id", "url"}]` for the `(object_type, object_id)`
    pairs `refs(item)` names (empty ids left out), `url` None where there is no page to open
    (hooks.object_links: one query per object type, whatever the number of items)."""
    items = list(items)
    named = [[(object_type, str(object_id)) for object_type, object_id in refs(item) if object_id] for item in items]
    links = hooks.object_links(principal=principal, refs=(ref for pairs in named for ref in pairs))
    for item, pairs in zip(items, named):
        item.objects = [{"type": object_type, "id": object_id, "url": links.get((object_type, object_id))} for object_type, object_id in pairs]
    return items


def activity_with_links(*, principal, events) -> list[ActivityEvent]:
    """The events, each with `link`: the console page of the object it names while that object
    still exists in the tenant and the principal's role may open it, else None (hooks.object_links:
    one query per object type on the page, whatever the number of events). What support staff
    did in the admin names rows by their database key, which is not what the pages are named by:
    it stays plain text."""
    events = list(events)
    links = hooks.object_links(
        principal=principal,
        refs=((event.object_type, event.object_id) for event in events if not event.action.startswith("admin.")),
    )
    for event in events:
        event.link = None if event.action.startswith("admin.") else links.get((event.object_type, event.object_id))
    return events


# --- notifications (orchestrio/notifications.py) ----------------------------------------------------


def notification_list(*, principal) -> QuerySet[Notification]:
    """The principal's person's notifications in the principal's tenant, newest first, of the
    events the principal's role may see now (a token acts with its own role, which may be lower
    than its creator's; a member demoted since stops seeing what the old role saw). A token that
    belongs to no person (one made by `createtenant`, or whose creator's account was deleted) has no feed:
    Forbidden, with why."""
    if principal.user is None:
        raise Forbidden(
            "notifications belong to a person, and this API token has none (it was created by createtenant, "
            "or its creator's account was deleted): use a token a member created, or the console"
        )
    held = [name for name, allowed in roles.held_by(principal.role).items() if allowed]
    return Notification.objects.filter(tenant=principal.tenant, user_id=principal.user.pk, capability__in=held)


def notification_unread_count(*, principal) -> int:
    """One COUNT query (the console's bell, on every page)."""
    return notification_list(principal=principal).filter(read_at__isnull=True).count()


def notification_with_links(*, principal, notifications) -> list[Notification]:
    """The notifications, each with `link`: its object's console page while it exists in the
    tenant and the principal may open it, else None (one query per object type on the page)."""
    notifications = list(notifications)
    links = hooks.object_links(principal=principal, refs=((n.object_type, n.object_id) for n in notifications))
    for notification in notifications:
        notification.link = links.get((notification.object_type, notification.object_id))
    return notifications
