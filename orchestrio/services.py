"""State changes for tenancy, tokens and the audit log. One function per use case, each atomic and
each writing the audit log (see STYLE.md)."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from . import hooks, roles, selectors, tokens
from .choices import ActorType, Role
from .errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed
from .limits import limit_check
from .models import ActivityEvent, ApiToken, Invitation, Membership, Notification, SubscriptionPlan, Tenant
from .selectors import invitation_by_token
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


# --- the team: invitations, roles, removal ------------------------------------------------------
#
# Admins and owners manage the team (`members`); only owners grant, change or take away the owner
# role (`owners`), and a tenant always keeps one owner. Every change locks the tenant row first, so
# two concurrent demotions cannot both see "another owner is left". A person's API tokens follow
# their membership: removal revokes them, a demotion lowers them to the new role (a token acts with
# its creator's role, never more).

INVITATION_MAX_DAYS = 30
# Invitations send mail to any address an admin types: a cap on those waiting keeps a tenant
# (anyone can sign up and be one) from turning the control plane into a mailer.
INVITATION_MAX_PENDING = 50
# A recognisable shape (tests/logscan.py looks for it in every log of the test run): 256 random bits.
INVITATION_TOKEN_PREFIX = "inv_"


def _normalized_email(email: str, *, field: str = "email") -> str:
    value = (email or "").strip().lower()
    try:
        validate_email(value)
    except DjangoValidationError:
        raise ValidationFailed(f"{email!r} is not a valid email address", field=field) from None
    return value


def _lock_tenant(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_for_update(of=("self",)).get(pk=tenant.pk)


def _require_for_role(principal: Principal, *roles_touched: str) -> None:
    roles.require(principal, roles.MEMBERS)
    if Role.OWNER in roles_touched:
        roles.require(principal, roles.OWNERS)


def _invitation_url(token: str) -> str:
    return f"{settings.PUBLIC_URL}{reverse('console:invitation-link', kwargs={'token': token})}"


def _invitation_send(*, invitation: Invitation, url: str, inviter: str) -> None:
    """Mail the link (after commit). A mail server that refuses is logged, not raised: the
    invitation exists and the inviter holds the link, shown once, to pass on another way."""
    tenant = invitation.tenant
    body = (
        f"{inviter} invited you to join {tenant.name} ({tenant.pk}) on Orchestrio as {invitation.role}.\n\n"
        f"Accept the invitation: {url}\n\n"
        f"The link works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC. "
        "If you did not expect it, ignore this mail.\n"
    )
    try:
        send_mail(f"Join {tenant.name} on Orchestrio", body, None, [invitation.email])
    except Exception:
        logger.exception("invitation %s: the mail to its address could not be sent", invitation.pk)


@transaction.atomic
def invitation_create(
    *, principal: Principal, email: str, role: str = Role.MEMBER, expires_in_days: int | None = None
) -> tuple[Invitation, str]:
    """Invite `email` to the principal's tenant with `role`; returns the invitation and its link,
    which is never available again (only the token's hash is kept). The link is mailed on commit."""
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}", field="role")
    _require_for_role(principal, role)
    days = settings.INVITATION_DEFAULT_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= INVITATION_MAX_DAYS:
        raise ValidationFailed(f"an invitation lasts 1 to {INVITATION_MAX_DAYS} days", field="expires_in_days")
    address = _normalized_email(email)
    tenant = _lock_tenant(principal.tenant)
    if Membership.objects.filter(tenant=tenant, user__username__iexact=address).exists():
        raise Conflict(f"{address} is already a member of this tenant")
    now = timezone.now()
    pending = Invitation.objects.filter(
        tenant=tenant, email=address, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).first()
    if pending is not None:
        raise Conflict(f"{address} already has an invitation waiting (until {pending.expires_at:%Y-%m-%d}); revoke it to send a new one")
    waiting = Invitation.objects.filter(tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
    if waiting.count() >= INVITATION_MAX_PENDING:
        raise Conflict(
            f"{INVITATION_MAX_PENDING} invitations are waiting already: revoke some, or wait until they are accepted or expire"
        )
    token = INVITATION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    invitation = Invitation(
        tenant=tenant,
        email=address,
        role=role,
        token_hash=tokens.hash_token(token),
        invited_by=principal.user,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    invitation.save(force_insert=True)
    activity_record(
        actor=principal.actor,
        action="invitation.create",
        tenant=tenant,
        object_type="invitation",
        object_id=invitation.pk,
        data={"email": address, "role": role, "expires_at": invitation.expires_at.isoformat()},
    )
    url = _invitation_url(token)
    inviter = principal.user.get_username() if principal.user is not None else tenant.name
    transaction.on_commit(lambda: _invitation_send(invitation=invitation, url=url, inviter=inviter))
    return invitation, url


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, principal: Principal) -> Invitation:
    """The link stops working at once. Only a pending invitation can be revoked."""
    _require_for_role(principal, invitation.role)
    invitation = Invitation.objects.select_for_update(of=("self",)).get(pk=invitation.pk)
    if invitation.status != "pending":
        raise InvalidState(f"the invitation for {invitation.email} is {invitation.status}; only a pending one can be revoked")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    activity_record(
        actor=principal.actor,
        action="invitation.revoke",
        tenant=invitation.tenant_id,
        object_type="invitation",
        object_id=invitation.pk,
        data={"email": invitation.email, "role": invitation.role},
    )
    return invitation


def _usable_invitation(token: str) -> Invitation:
    found = invitation_by_token(token=token)
    if found is None:
        raise NotFound("this invitation link is not valid: check that it was copied whole")
    invitation = Invitation.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=found.pk)
    status = invitation.status
    if status == "accepted":
        raise InvalidState("this invitation has already been used; ask for a new one if you still need to join")
    if status == "revoked":
        raise InvalidState("this invitation was withdrawn; ask the person who invited you for a new one")
    if status == "expired":
        raise InvalidState(f"this invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user, ip: str | None = None) -> Membership:
    """`user` joins the tenant with the invitation's role. Accepting needs being logged in as the
    invited email: the link alone is not enough (it may have been forwarded)."""
    invitation = _usable_invitation(token)
    if user.get_username().lower() != invitation.email:
        raise Forbidden(
            f"this invitation is for {invitation.email}, and you are logged in as {user.get_username()}: "
            "log out, then open the link again and log in (or sign up) with that address"
        )
    return _join(invitation=invitation, user=user, actor=Actor.for_user(user, ip=ip))


@transaction.atomic
def invitation_accept_signup(*, token: str, password: str, ip: str | None = None) -> Membership:
    """Create the account of an invited email that has none, and join with it. The password is
    validated by the caller's form (Django's validators)."""
    invitation = _usable_invitation(token)
    User = get_user_model()
    if User.objects.filter(username__iexact=invitation.email).exists():
        raise Conflict(f"an account for {invitation.email} exists already: log in to accept the invitation")
    user = User(username=invitation.email, email=invitation.email)
    user.set_password(password)
    user.save()
    return _join(invitation=invitation, user=user, actor=Actor.for_user(user, ip=ip))


def _join(*, invitation: Invitation, user, actor: Actor) -> Membership:
    tenant = _lock_tenant(invitation.tenant)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise Conflict(f"you are already a member of {tenant.name}")
    now = timezone.now()
    membership = Membership.objects.create(user=user, tenant=tenant, role=invitation.role, created_at=now)
    invitation.accepted_at = now
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    activity_record(
        actor=actor,
        action="member.join",
        tenant=tenant,
        object_type="member",
        object_id=membership.pk,
        data={"email": invitation.email, "role": invitation.role, "invitation": invitation.pk},
    )
    # Heard by the alert webhooks and the team managers' notifications (not the newcomer's own).
    hooks.tenant_event(tenant.pk, "invitation.accepted", {"email": invitation.email, "role": invitation.role, "member_id": membership.pk, "user_id": user.pk, "invitation": invitation.pk})
    return membership


def _owners_left_without(tenant: Tenant, membership: Membership) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.OWNER).exclude(pk=membership.pk).count()


def _last_owner_guard(tenant: Tenant, membership: Membership, doing: str) -> None:
    if membership.role == Role.OWNER and _owners_left_without(tenant, membership) == 0:
        raise InvalidState(
            f"{membership.user.get_username()} is the tenant's only owner and cannot be {doing}: make someone else an owner first"
        )


@transaction.atomic
def member_role_change(*, membership: Membership, role: str, principal: Principal) -> Membership:
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}", field="role")
    _require_for_role(principal, membership.role, role)
    tenant = _lock_tenant(membership.tenant)
    membership = Membership.objects.select_for_update(of=("self",)).select_related("user").get(pk=membership.pk)
    previous = membership.role
    if role == previous:
        return membership
    if role != Role.OWNER:
        _last_owner_guard(tenant, membership, "demoted")
    membership.role = role
    membership.save(update_fields=["role"])
    # The person's tokens act with their role, never more: lower those that now outrank them.
    above = [value for value in Role.values if Role.rank(value) > Role.rank(role)]
    lowered = ApiToken.objects.filter(
        tenant=tenant, created_by=membership.user, revoked_at__isnull=True, role__in=above
    ).update(role=role)
    activity_record(
        actor=principal.actor,
        action="member.role_change",
        tenant=tenant,
        object_type="member",
        object_id=membership.pk,
        data={"email": membership.user.get_username(), "from": previous, "to": role, "tokens_lowered": lowered},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, principal: Principal) -> None:
    """Remove a member: their session no longer reaches the tenant and their tokens are revoked."""
    _require_for_role(principal, membership.role)
    tenant = _lock_tenant(membership.tenant)
    membership = Membership.objects.select_for_update(of=("self",)).select_related("user").get(pk=membership.pk)
    _last_owner_guard(tenant, membership, "removed")
    user, role, member_id = membership.user, membership.role, membership.pk
    membership.delete()
    revoked = ApiToken.objects.filter(tenant=tenant, created_by=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    activity_record(
        actor=principal.actor,
        action="member.remove",
        tenant=tenant,
        object_type="member",
        object_id=member_id,
        data={"email": user.get_username(), "role": role, "tokens_revoked": revoked},
    )


# --- notifications (orchestrio/notifications.py) ----------------------------------------------------
# Reading one's own feed changes nothing of the tenant's: no audit row (the log would fill with
# every click on the bell, which is nobody's business but the reader's).


def notification_mark_read(*, notification: Notification) -> Notification:
    """Mark one read (again: it stays read at the first time)."""
    if notification.read_at is None:
        notification.read_at = timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=notification.read_at)
    return notification


def notification_mark_all_read(*, principal: Principal) -> int:
    """Mark read every unread notification the principal's feed shows; returns how many."""
    return selectors.notification_list(principal=principal).filter(read_at__isnull=True).update(read_at=timezone.now())
