from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from orchestrio import selectors, services
from orchestrio.filtersets import ActivityEventFilterSet, ApiTokenFilterSet
from orchestrio.http import carries_secret
from orchestrio.models import ActivityEvent, ApiToken, Invitation, Membership, Notification

from . import serializers
from .schema import ERR_400, ERR_402, ERR_403, ERR_404, ERR_409
from .viewsets import TenantApiView, TenantScopedViewSet, idempotent


class TenantView(TenantApiView):
    @extend_schema(
        operation_id="tenant_retrieve",
        summary="The caller's tenant, its plan, limits and usage",
        responses=serializers.TenantSerializer,
        tags=["tenant"],
    )
    def get(self, request):
        tenant = self.principal.tenant
        usage = selectors.tenant_usage(tenant=tenant)
        return Response(serializers.TenantSerializer(tenant, context={"usage": usage}).data)


@extend_schema(tags=["api-tokens"])
class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = ApiToken.objects.all()
    serializer_class = serializers.ApiTokenSerializer
    filterset_class = ApiTokenFilterSet
    not_found_label = "API token"
    rate_classes = {"create": "write", "destroy": "write"}

    @extend_schema(
        summary="Issue an API token (the plaintext is returned once)",
        request=serializers.ApiTokenCreateSerializer,
        responses={201: serializers.ApiTokenCreatedSerializer, 402: ERR_402, 403: ERR_403},
    )
    @idempotent
    def create(self, request):
        body = serializers.ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, plaintext = services.api_token_create(principal=self.principal, **body.validated_data)
        data = serializers.ApiTokenSerializer(token).data
        data["token"] = plaintext
        return carries_secret(Response(data, status=status.HTTP_201_CREATED))

    @extend_schema(summary="Revoke a token: it fails with 401 on the very next request", responses={204: None, 403: ERR_403})
    def destroy(self, request, pk=None):
        token = self.get_object()
        services.api_token_revoke(token=token, actor=self.principal.actor, principal=self.principal)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["activity"])
class ActivityViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    queryset = ActivityEvent.objects.all()
    serializer_class = serializers.ActivityEventSerializer
    filterset_class = ActivityEventFilterSet

    @extend_schema(summary="The tenant's audit log, newest first")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


@extend_schema(tags=["team"])
class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's members. Changing a role or removing a member is the admins' and owners'
    (`members`); anything that grants or takes away `owner` is the owners' (the service checks)."""

    queryset = Membership.objects.select_related("user").order_by("created_at", "id")
    serializer_class = serializers.MemberSerializer
    not_found_label = "member"
    capabilities = {"partial_update": "members", "destroy": "members"}

    @extend_schema(
        summary="Change a member's role (the last owner cannot be demoted)",
        request=serializers.MemberUpdateSerializer,
        responses={200: serializers.MemberSerializer, 400: ERR_400, 403: ERR_403},
    )
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        body = serializers.MemberUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = services.member_role_change(membership=membership, role=body.validated_data["role"], principal=self.principal)
        return Response(serializers.MemberSerializer(membership).data)

    @extend_schema(
        summary="Remove a member (their API tokens in this tenant are revoked; the last owner cannot be removed)",
        responses={204: None, 400: ERR_400, 403: ERR_403},
    )
    def destroy(self, request, pk=None):
        services.member_remove(membership=self.get_object(), principal=self.principal)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["team"])
class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Invitations to join the tenant, every status, newest first."""

    queryset = Invitation.objects.select_related("invited_by")
    serializer_class = serializers.InvitationSerializer
    not_found_label = "invitation"
    capabilities = {"list": "members", "retrieve": "members", "create": "members", "destroy": "members"}

    @extend_schema(summary="The tenant's invitations (pending, accepted, revoked, expired)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Invite someone by email (the link is mailed, and returned here once)",
        request=serializers.InvitationCreateSerializer,
        responses={201: serializers.InvitationCreatedSerializer, 403: ERR_403, 409: ERR_409},
    )
    @idempotent
    def create(self, request):
        body = serializers.InvitationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        invitation, url = services.invitation_create(principal=self.principal, **body.validated_data)
        data = serializers.InvitationSerializer(invitation).data
        data["url"] = url
        return carries_secret(Response(data, status=status.HTTP_201_CREATED))

    @extend_schema(summary="Revoke a pending invitation: its link stops working", responses={204: None, 400: ERR_400, 403: ERR_403})
    def destroy(self, request, pk=None):
        services.invitation_revoke(invitation=self.get_object(), principal=self.principal)
        return Response(status=status.HTTP_204_NO_CONTENT)


NOTIFICATION_FEED_SIZE = 50


@extend_schema(tags=["notifications"])
class NotificationViewSet(TenantScopedViewSet):
    """The caller's own notifications in the tenant (docs/notifications.md): the token's creator's,
    or the console user's. Someone else's, or another tenant's, is 404. A token of no person is 403."""

    queryset = Notification.objects.all()
    serializer_class = serializers.NotificationSerializer
    not_found_label = "notification"
    pagination_class = None
    # Reading and marking one's own feed needs no more than reading the tenant.
    capabilities = {"list": "read", "read": "read", "read_all": "read"}

    def scope_queryset(self, queryset):
        return selectors.notification_list(principal=self.principal)

    def _feed(self) -> dict:
        feed = selectors.notification_list(principal=self.principal)
        return {
            "unread": feed.filter(read_at__isnull=True).count(),
            "results": serializers.NotificationSerializer(feed[:NOTIFICATION_FEED_SIZE], many=True).data,
        }

    @extend_schema(
        summary="Your 50 most recent notifications, newest first, and how many are unread",
        responses={200: serializers.NotificationFeedSerializer, 403: ERR_403},
    )
    def list(self, request):
        return Response(self._feed())

    @extend_schema(summary="Mark one notification read", request=None, responses={200: serializers.NotificationSerializer, 403: ERR_403, 404: ERR_404})
    @action(detail=True, methods=["post"], url_path="read")
    def read(self, request, pk=None):
        notification = services.notification_mark_read(notification=self.get_object())
        return Response(serializers.NotificationSerializer(notification).data)

    @extend_schema(summary="Mark all your notifications read", request=None, responses={200: serializers.NotificationsReadSerializer, 403: ERR_403})
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request):
        marked = services.notification_mark_all_read(principal=self.principal)
        return Response({"marked": marked, "unread": selectors.notification_unread_count(principal=self.principal)})
