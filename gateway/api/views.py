from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from instances.selectors import instance_live
from orchestrio.api.schema import ERR_402, ERR_409
from orchestrio.api.viewsets import TenantScopedViewSet, idempotent
from orchestrio.errors import NotFound

from .. import services
from ..models import GatewayPolicy
from .serializers import GatewayPolicySerializer, GatewayPolicyWriteSerializer


class _PolicyBase(TenantScopedViewSet):
    queryset = GatewayPolicy.objects.none()  # for the schema; get_queryset scopes by tenant
    serializer_class = GatewayPolicySerializer
    allows_scoped_tokens = True
    not_found_label = "gateway policy"
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        policies = GatewayPolicy.objects.filter(tenant=self.principal.tenant, instance__destroyed_at__isnull=True).select_related("instance")
        if self.principal.instance_scope is not None:
            policies = policies.filter(instance__instance_id=self.principal.instance_scope)
        return policies


@extend_schema(tags=["gateway"])
class InstancePolicyViewSet(mixins.ListModelMixin, _PolicyBase):
    """/api/v1/instances/{instance_id}/gateway-policies"""

    def _instance(self):
        instance_id = self.kwargs["instance_id"]
        scope = self.principal.instance_scope
        instance = None if scope not in (None, instance_id) else instance_live(tenant=self.principal.tenant).filter(instance_id=instance_id).select_related("tenant__plan").first()
        if instance is None:
            raise NotFound(f"no instance {instance_id!r} in this tenant")
        return instance

    def check_route_objects(self) -> None:
        self._instance()

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        return queryset.filter(instance=self._instance())

    @extend_schema(summary="The instance's gateway policies")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Create a gateway policy", request=GatewayPolicyWriteSerializer, responses={201: GatewayPolicySerializer, 402: ERR_402, 409: ERR_409})
    @idempotent
    def create(self, request, instance_id=None):
        body = GatewayPolicyWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        policy = services.policy_create(instance=self._instance(), principal=self.principal, data=body.validated_data)
        return Response(GatewayPolicySerializer(policy).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["gateway"])
class PolicyViewSet(mixins.RetrieveModelMixin, _PolicyBase):
    """/api/v1/gateway-policies/{id}"""

    lookup_value_regex = "[^/]+"
    capabilities = {"destroy": "destroy"}

    @extend_schema(summary="A gateway policy")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(summary="Change some of a policy's fields", request=GatewayPolicyWriteSerializer, responses={200: GatewayPolicySerializer, 402: ERR_402, 409: ERR_409})
    def partial_update(self, request, pk=None):
        body = GatewayPolicyWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        policy = services.policy_update(policy=self.get_object(), principal=self.principal, data=body.validated_data)
        return Response(GatewayPolicySerializer(policy).data)

    @extend_schema(summary="Delete a policy", responses={204: None})
    def destroy(self, request, pk=None):
        services.policy_delete(policy=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
