"""Plans and their limits, tenancy, API tokens, the audit log and idempotency keys."""

from __future__ import annotations

from datetime import UTC

from django.conf import settings
from django.core.validators import MinLengthValidator, RegexValidator
from django.db import models
from django.utils import timezone

from .choices import ActorType, IdempotencyStatus, InvitationStatus, Role, TokenMode

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]*[a-z0-9]$"
SLUG_MESSAGE = "use 3–63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"


API_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # DRF's DATETIME_FORMAT (settings.REST_FRAMEWORK)


def api_datetime(value):
    """A datetime as the API writes it (API_DATETIME_FORMAT, in UTC); None stays None. Written
    with `isoformat`, which gives the same text at half `strftime`'s cost: three of these were
    most of rendering an instance (tests/orchestrio/test_conventions.py checks they agree)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:26] + "Z"


slug_validators = [
    RegexValidator(SLUG_PATTERN, SLUG_MESSAGE),
    MinLengthValidator(3, SLUG_MESSAGE),
]


class SubscriptionPlan(models.Model):
    """What a tenant may do: limits and features. `None` in a limit means unlimited."""

    id = models.CharField(
        "plan id", primary_key=True, max_length=32, validators=[RegexValidator(r"^[a-z0-9][a-z0-9-]*$")]
    )
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    price_cents_per_month = models.PositiveIntegerField(default=0)
    stripe_price_id = models.CharField(max_length=255, blank=True, help_text="Stripe Price id for Checkout.")
    max_instances = models.PositiveIntegerField(null=True, blank=True, help_text="Live instances (any state).")
    max_running_instances = models.PositiveIntegerField(null=True, blank=True)
    executions_per_month = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    api_requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per-caller ceiling across all endpoints."
    )
    max_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Active API tokens.")
    max_deployments = models.PositiveIntegerField(null=True, blank=True)
    feature_custom_domains = models.BooleanField(default=False)
    feature_oidc_gateway = models.BooleanField(default=False)
    feature_deployment_rollback = models.BooleanField(default=False)
    feature_hibernation = models.BooleanField(default=False)
    feature_addons = models.BooleanField(default=False, help_text="PostgreSQL and Redis add-ons (docs/addons.md).")
    max_addons = models.PositiveIntegerField(null=True, blank=True, default=0, help_text="Live add-ons. Empty: unlimited.")
    addon_backup_retention_days = models.PositiveIntegerField(default=0, help_text="How long add-on backups are kept; 0: no backups.")
    addon_backups_per_day = models.PositiveIntegerField(null=True, blank=True, default=0, help_text="Manual backups per add-on per UTC day. Empty: unlimited.")
    is_public = models.BooleanField(default=True, help_text="Listed in the public catalogue.")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        db_table = "billing_subscriptionplan"  # moved from the billing app; the table kept its name
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def limits(self) -> dict:
        return {
            "instances": self.max_instances,
            "running_instances": self.max_running_instances,
            "executions_per_month": self.executions_per_month,
            "api_requests_per_minute": self.api_requests_per_minute,
            "tokens": self.max_tokens,
            "deployments": self.max_deployments,
            "addons": self.max_addons,
        }

    @property
    def features(self) -> dict:
        return {
            "custom_domains": self.feature_custom_domains,
            "oidc_gateway": self.feature_oidc_gateway,
            "deployment_rollback": self.feature_deployment_rollback,
            "hibernation": self.feature_hibernation,
            "addons": self.feature_addons,
        }


class Tenant(models.Model):
    """A customer. Its slug is the primary key, so every `tenant_id` column *is* the slug."""

    id = models.CharField("tenant id", primary_key=True, max_length=63, validators=slug_validators)
    name = models.CharField(max_length=200)
    plan = models.ForeignKey(SubscriptionPlan, on_delete=models.PROTECT, related_name="tenants")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_unique")]
        ordering = ["tenant_id", "user_id"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} ({self.role})"


class ApiToken(models.Model):
    """An `ork_` token. The plaintext is shown once; only its SHA-256 is kept."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    mode = models.CharField(max_length=4, choices=TokenMode.choices, default=TokenMode.LIVE)
    prefix = models.CharField(max_length=12, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # A token acts with the role its creator had, never more.
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)
    # Optional scope: the token may only touch this instance (its `instance_id` slug).
    instance_id = models.CharField(max_length=63, null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "revoked_at"], name="apitoken_tenant_revoked")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class ActivityEvent(models.Model):
    """The audit log: who did what to which object, from where. Written only by services."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="activity")
    actor_type = models.CharField(max_length=8, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Email, token prefix or "system": kept as text so the log survives the actor's deletion.
    actor_label = models.CharField(max_length=254)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=128, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="activity_tenant_created"),
            models.Index(fields=["object_type", "object_id"], name="activity_object"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_type}:{self.object_id}"


class IdempotencyKey(models.Model):
    """One `Idempotency-Key` of one principal (an API token, or a console user; `Principal.key`)
    in one tenant: the request's fingerprint and, once done, its response. A response that carries
    a secret (a new token's plaintext) is kept encrypted, in `response_body_encrypted`."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # "" on rows recorded before keys were scoped per principal: replayed to nobody (see
    # orchestrio/api/idempotency.py); they expire with IDEMPOTENCY_KEY_TTL_HOURS.
    principal = models.CharField(max_length=64, blank=True, default="")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=512)
    status = models.CharField(max_length=12, choices=IdempotencyStatus.choices, default=IdempotencyStatus.PROCESSING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_body_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "principal", "key"], name="idempotency_principal_key_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.principal}:{self.key}"


class Invitation(models.Model):
    """An invitation to join a tenant with a role, sent by email as a link. The link's token is a
    secret (whoever holds it can join as the invited email): only its SHA-256 is kept, the link is
    shown once to the person who invited, and it works once, until `expires_at`."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "email"], name="invitation_tenant_email")]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant_id} ({self.role})"

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return InvitationStatus.ACCEPTED
        if self.revoked_at is not None:
            return InvitationStatus.REVOKED
        if self.expires_at <= timezone.now():
            return InvitationStatus.EXPIRED
        return InvitationStatus.PENDING


class Notification(models.Model):
    """One line of a person's feed in one tenant (docs/notifications.md): written for each member
    whose role may see the event when it happens (`capability`, re-checked when read, so a token
    of a lower role or a demoted member does not read what their role may not), in the person's
    words (`title`, `body`), naming the object it is about for a console link. Bounded: the
    newest `NOTIFICATIONS_KEEP_PER_USER` per person and tenant, for `NOTIFICATIONS_RETENTION_DAYS`
    (orchestrio.jobs.trim_notifications)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=64)
    capability = models.CharField(max_length=16)
    title = models.CharField(max_length=200)
    body = models.CharField(max_length=1000, blank=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "tenant", "-created_at", "-id"], name="notification_feed"),
            models.Index(fields=["user", "tenant"], condition=models.Q(read_at__isnull=True), name="notification_unread"),
            models.Index(fields=["created_at"], name="notification_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event} for {self.user_id} in {self.tenant_id}"
