from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from instances.api.parents import INSTANCE
from orchestrio.api.schema import ERR_402, ERR_409
from orchestrio.api.viewsets import TenantScopedViewSet, idempotent

from .. import services
from ..models import GatewayPolicy
from .serializers import GatewayPolicySerializer, GatewayPolicyWriteSerializer


class _PolicyBase(TenantScopedViewSet):
    queryset = GatewayPolicy.objects.filter(instance__destroyed_at__isnull=True).select_related("instance")
    instance_scope_field = "instance__instance_id"
    serializer_class = GatewayPolicySerializer
    allows_scoped_tokens = True
    not_found_label = "gateway policy"
    filter_backends: list = []


@extend_schema(tags=["gateway"])
class InstancePolicyViewSet(mixins.ListModelMixin, _PolicyBase):
    """/api/v1/instances/{instance_id}/gateway-policies"""

    parent = INSTANCE

    @extend_schema(summary="The instance's gateway policies")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Create a gateway policy", request=GatewayPolicyWriteSerializer, responses={201: GatewayPolicySerializer, 402: ERR_402, 409: ERR_409})
    @idempotent
    def create(self, request, instance_id=None):
        body = GatewayPolicyWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        policy = services.policy_create(instance=self.parent_object, principal=self.principal, data=body.validated_data)
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
