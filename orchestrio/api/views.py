from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from orchestrio import selectors, services
from orchestrio.filtersets import ActivityEventFilterSet, ApiTokenFilterSet
from orchestrio.http import carries_secret
from orchestrio.models import ActivityEvent, ApiToken

from . import serializers
from .schema import ERR_402, ERR_403
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
