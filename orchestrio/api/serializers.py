from __future__ import annotations

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from orchestrio import hooks
from orchestrio.api.strict import BodySerializer
from orchestrio.choices import InvitationStatus, Role
from orchestrio.models import SLUG_MESSAGE, SLUG_PATTERN, ActivityEvent, ApiToken, Invitation, Membership, Notification, SubscriptionPlan, Tenant
from orchestrio.services import INVITATION_MAX_DAYS, TOKEN_EXPIRY_CHOICES


class SubscriptionPlanSerializer(serializers.ModelSerializer):
    plan_id = serializers.CharField(source="id")
    limits = serializers.DictField(child=serializers.IntegerField(allow_null=True), read_only=True)
    features = serializers.DictField(child=serializers.BooleanField(), read_only=True)

    class Meta:
        model = SubscriptionPlan
        fields = ["plan_id", "name", "description", "price_cents_per_month", "limits", "features"]


class TenantUsageSerializer(serializers.Serializer):
    instances = serializers.IntegerField()
    running_instances = serializers.IntegerField()
    tokens = serializers.IntegerField()


class OverLimitSerializer(serializers.Serializer):
    limit = serializers.CharField()
    used = serializers.IntegerField()
    allowed = serializers.IntegerField()


class TenantSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(source="id")
    plan = serializers.CharField(source="plan_id")
    limits = serializers.DictField(source="plan.limits", child=serializers.IntegerField(allow_null=True))
    features = serializers.DictField(source="plan.features", child=serializers.BooleanField())
    usage = serializers.SerializerMethodField()
    over_limits = serializers.SerializerMethodField(help_text="Limits exceeded after a downgrade: existing things keep running, new ones are refused.")
    subscription_status = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = ["tenant_id", "name", "plan", "limits", "features", "usage", "over_limits", "subscription_status", "created_at"]

    @extend_schema_field(OverLimitSerializer(many=True))
    def get_over_limits(self, tenant):
        from orchestrio.selectors import over_limits

        return over_limits(tenant=tenant, usage=self.context["usage"])

    @extend_schema_field(serializers.CharField())
    def get_subscription_status(self, tenant):
        return hooks.subscription_status(tenant)

    @extend_schema_field(TenantUsageSerializer)
    def get_usage(self, tenant):
        return self.context["usage"]


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "mode",
            "role",
            "instance_id",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiTokenCreateSerializer(BodySerializer):
    name = serializers.CharField(max_length=100, min_length=1)
    mode = serializers.ChoiceField(choices=["live", "test"], default="live")
    expires_in_days = serializers.ChoiceField(
        choices=list(TOKEN_EXPIRY_CHOICES), allow_null=True, default=None, help_text="30, 90, 180, 365 or null (never)."
    )
    instance_id = serializers.RegexField(
        SLUG_PATTERN,
        max_length=63,
        min_length=3,
        allow_null=True,
        default=None,
        error_messages={"invalid": SLUG_MESSAGE},
        help_text="Scope the token to one instance, or null.",
    )


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="The plaintext token. Shown once; store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ActivityEventSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    ip = serializers.IPAddressField(source="ip_address", allow_null=True)

    class Meta:
        model = ActivityEvent
        fields = ["id", "actor", "action", "object_type", "object_id", "ip", "data", "created_at"]

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["user", "token", "staff", "system"]}, "label": {"type": "string"}},
        }
    )
    def get_actor(self, event):
        return {"type": event.actor_type, "label": event.actor_label}


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.CharField(source="user.username", read_only=True, help_text="The member's login email.")
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "joined_at"]
        read_only_fields = fields


class MemberUpdateSerializer(BodySerializer):
    role = serializers.ChoiceField(choices=Role.choices, help_text="owner, admin or member. Only owners grant or take away owner.")


class InvitationSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=InvitationStatus.choices, read_only=True)
    invited_by = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_invited_by(self, invitation):
        return invitation.invited_by.get_username() if invitation.invited_by is not None else None


class InvitationCreateSerializer(BodySerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER, help_text="Only owners invite owners.")
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=INVITATION_MAX_DAYS, allow_null=True, default=None, help_text="1 to 30; null: 7."
    )


class InvitationCreatedSerializer(InvitationSerializer):
    url = serializers.CharField(help_text="The invitation link (also emailed). Shown once; only its hash is kept.")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "url"]
        read_only_fields = fields


class NotificationSerializer(serializers.ModelSerializer):
    event = serializers.CharField(help_text="What happened: instance.error, instance.health_down, instance.health_up, task.failed, quota.80, quota.100, billing.payment_failed, invitation.accepted.")
    object_type = serializers.CharField(help_text="The kind of object it is about (instance, task, subscription, member), or empty.")
    object_id = serializers.CharField(help_text="Its id (an instance id, a task id…), or empty.")

    class Meta:
        model = Notification
        fields = ["id", "event", "title", "body", "object_type", "object_id", "created_at", "read_at"]


@extend_schema_serializer(many=False)  # the list action answers one object, not an array
class NotificationFeedSerializer(serializers.Serializer):
    unread = serializers.IntegerField(help_text="Unread notifications in the whole feed (not only those returned).")
    results = NotificationSerializer(many=True, help_text="The most recent notifications, newest first (at most 50).")


class NotificationsReadSerializer(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many were unread and are now read.")
    unread = serializers.IntegerField()
