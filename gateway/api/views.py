from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from instances.api.parents import INSTANCE
from instances.api.views import InstanceScopedViewSet
from orchestrio.api.exceptions import QueryValidationError
from orchestrio.api.schema import ERR_402, ERR_409
from orchestrio.api.viewsets import TenantScopedViewSet, idempotent

from .. import services
from ..models import GatewayPolicy
from ..selectors import request_metrics
from .serializers import GatewayPolicySerializer, GatewayPolicyWriteSerializer, RequestMetricsQuerySerializer, RequestMetricsSerializer


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


@extend_schema(tags=["instances"])
class InstanceRequestMetricsViewSet(InstanceScopedViewSet):
    """`instances/{instance_id}/request-metrics`: what the gateway and tunnel forwarded to it."""

    serializer_class = RequestMetricsSerializer
    allows_scoped_tokens = {"request_metrics"}

    @extend_schema(
        summary="Request count, errors and latency percentiles of the proxied requests",
        parameters=[RequestMetricsQuerySerializer], responses=RequestMetricsSerializer,
    )  # fmt: skip
    @action(detail=True, methods=["get"], url_path="request-metrics")
    def request_metrics(self, request, instance_id=None):
        query = RequestMetricsQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise QueryValidationError(query.errors)
        return Response(RequestMetricsSerializer(request_metrics(self.get_object(), window=query.validated_data["window"])).data)
