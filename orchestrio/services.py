"""State changes for tenancy, tokens and the audit log. One function per use case, each atomic and
each writing the audit log (see STYLE.md)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import hooks, roles, tokens
from .choices import ActorType, Role
from .errors import Conflict, Forbidden, ValidationFailed
from .limits import limit_check
from .models import ActivityEvent, ApiToken, Membership, SubscriptionPlan, Tenant
from .tenancy import Actor, Principal

logger = logging.getLogger(__name__)

TOKEN_EXPIRY_CHOICES = (30, 90, 180, 365)


def activity_record(
    *,
    actor: Actor,
    action: str,
    tenant: Tenant | str | None,
    object_type: str = "",
    object_id: Any = "",
    data: dict[str, Any] | None = None,
) -> ActivityEvent:
    """Append one audit-log row. Every member of the tenant reads the log (the API's /activity, the
    dashboard, the console), so `data` carries only what every member may read: never a secret's
    value (names are fine), nor values only owners and admins see (alert webhook URLs, billing's
    Stripe ids). Leave such values out here rather than redact them on each read path."""
    event = _activity_event(actor=actor, action=action, tenant=tenant, object_type=object_type, object_id=object_id, data=data)
    event.save(force_insert=True)
    return event


def activity_record_many(*, records: list[dict[str, Any]]) -> list[ActivityEvent]:
    """Append many audit-log rows in one bulk insert; each record holds `activity_record`'s arguments."""
    return ActivityEvent.objects.bulk_create([_activity_event(**record) for record in records])


def _activity_event(
    *,
    actor: Actor,
    action: str,
    tenant: Tenant | str | None,
    object_type: str = "",
    object_id: Any = "",
    data: dict[str, Any] | None = None,
) -> ActivityEvent:
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    return ActivityEvent(
        tenant_id=tenant_id,
        actor_type=actor.type,
        actor_user=actor.user if actor.type in (ActorType.USER, ActorType.STAFF) else None,
        actor_label=actor.label[:254],
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:128],
        ip_address=actor.ip,
        data=data or {},
    )


def _validate(instance) -> None:
    """Field validation (→ 422). Uniqueness is the caller's business: a taken name is a 409."""
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except DjangoValidationError as exc:
        raise ValidationFailed(
            [
                {"loc": ["body", "tenant_id" if name == "id" else name], "msg": message, "type": "value_error"}
                for name, messages in exc.message_dict.items()
                for message in messages
            ]
        ) from exc


@transaction.atomic
def tenant_create(
    *,
    tenant_id: str,
    name: str,
    owner_email: str,
    owner_password: str | None = None,
    plan_id: str = "starter",
    actor: Actor,
) -> Tenant:
    """Create a tenant and its owner (a new user, or an existing one by email)."""
    plan = SubscriptionPlan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise ValidationFailed(f"unknown plan {plan_id!r}", field="plan")
    tenant = Tenant(id=tenant_id, name=name or tenant_id, plan=plan)
    _validate(tenant)
    if Tenant.objects.filter(pk=tenant_id).exists():
        raise Conflict(f"tenant id {tenant_id!r} is taken; choose another")
    try:
        with transaction.atomic():
            tenant.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"tenant id {tenant_id!r} is taken") from exc

    User = get_user_model()
    email = (owner_email or "").strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationFailed(f"{owner_email!r} is not a valid email address", field="owner") from None
    user = User.objects.filter(username__iexact=email).first()
    if user is None:
        user = User(username=email, email=email)
        if owner_password:
            user.set_password(owner_password)
        else:
            user.set_unusable_password()
        user.save()
    Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
    activity_record(
        actor=actor,
        action="tenant.create",
        tenant=tenant,
        object_type="tenant",
        object_id=tenant.pk,
        data={"owner": email, "plan": plan.pk},
    )
    return tenant


@transaction.atomic
def tenant_plan_change(*, tenant: Tenant, plan_id: str, actor: Actor, reason: str = "") -> Tenant:
    """Move a tenant to another subscription plan (support staff, from the admin). What exists
    keeps running when the new plan is lower; new objects over its limits are refused
    (`selectors.over_limits`)."""
    plan = SubscriptionPlan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise ValidationFailed(f"there is no plan called {plan_id!r}", field="plan")
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if locked.plan_id == plan.pk:
        return locked
    previous = locked.plan_id
    locked.plan = plan
    locked.save(update_fields=["plan", "updated_at"])
    activity_record(
        actor=actor,
        action="tenant.plan_change",
        tenant=locked,
        object_type="tenant",
        object_id=locked.pk,
        data={"from": previous, "to": plan.pk, **({"reason": reason} if reason else {})},
    )
    tenant.plan = plan
    return locked


@transaction.atomic
def api_token_create(
    *,
    principal: Principal,
    name: str,
    mode: str = "live",
    expires_in_days: int | None = None,
    instance_id: str | None = None,
    actor: Actor | None = None,
) -> tuple[ApiToken, str]:
    """Issue a token; returns the row and the plaintext, which is never available again.

    The token acts with the principal's role. `actor` overrides who the audit log names (the CLI).
    """
    if principal.instance_scope is not None:
        raise Forbidden("an instance-scoped token cannot issue tokens")
    if expires_in_days is not None and expires_in_days not in TOKEN_EXPIRY_CHOICES:
        raise ValidationFailed(
            f"expires_in_days must be one of {', '.join(map(str, TOKEN_EXPIRY_CHOICES))} or null",
            field="expires_in_days",
        )
    if instance_id is not None:
        if not hooks.instance_exists(tenant=principal.tenant, instance_id=instance_id):
            raise ValidationFailed(f"no instance {instance_id!r} in this tenant", field="instance_id")

    # Lock the tenant row so two concurrent creates cannot both squeeze under the limit.
    tenant = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=principal.tenant.pk)
    active = ApiToken.objects.filter(tenant=tenant, revoked_at__isnull=True).exclude(expires_at__lte=timezone.now())
    limit_check(tenant=tenant, limit="tokens", used=active.count)

    generated = tokens.generate(mode)
    token = ApiToken.objects.create(
        tenant=tenant,
        name=name,
        mode=mode,
        prefix=generated.prefix,
        token_hash=generated.sha256,
        role=principal.role,
        instance_id=instance_id,
        created_by=principal.user,
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    activity_record(
        actor=actor or principal.actor,
        action="api_token.create",
        tenant=tenant,
        object_type="api_token",
        object_id=token.pk,
        data={"name": name, "prefix": token.prefix, "mode": mode, "instance_id": instance_id},
    )
    return token, generated.plaintext


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor, principal: Principal | None = None) -> ApiToken:
    """Revoke at once: the very next request with this token is refused (no caching of tokens).

    `principal` is the API or console caller: anyone may revoke a token they created, someone
    else's needs the `tokens` capability (orchestrio/roles.py). Staff acting in the admin pass
    only `actor`.
    """
    token = ApiToken.objects.select_for_update(of=("self",)).get(pk=token.pk)
    if principal is not None:
        if principal.instance_scope is not None and principal.token.pk != token.pk:
            raise Forbidden("an instance-scoped token can only revoke itself")
        own = principal.user is not None and token.created_by_id == principal.user.pk
        if not own:
            roles.require(principal, roles.TOKENS)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        activity_record(
            actor=actor,
            action="api_token.revoke",
            tenant=token.tenant_id,
            object_type="api_token",
            object_id=token.pk,
            data={"prefix": token.prefix, "name": token.name},
        )
    return token


def api_token_touch(*, token: ApiToken) -> None:
    """Record use without a write per request: at most one UPDATE per token per resolution window."""
    now = timezone.now()
    resolution = timedelta(seconds=settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is not None and now - token.last_used_at < resolution:
        return
    ApiToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - resolution), pk=token.pk
    ).update(last_used_at=now)
    token.last_used_at = now
