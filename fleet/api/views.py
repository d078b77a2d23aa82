from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from instances.models import Instance
from orchestrio.api.schema import ERR_400, ERR_402, ERR_403, ERR_404, ERR_409
from orchestrio.api.viewsets import TenantScopedViewSet, idempotent, scoped
from orchestrio.errors import InvalidState

from .. import selectors, services
from ..choices import RequestKind
from ..filtersets import FleetRequestFilterSet
from ..models import FleetRequest
from . import serializers as s

IDEMPOTENCY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, description="1–255 characters")


@extend_schema(tags=["fleet"])
class FleetRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """/api/v1/requests: batches of instances created or returned in one call (docs/fleet.md)."""

    queryset = FleetRequest.objects.all()
    serializer_class = s.FleetRequestSerializer
    filterset_class = FleetRequestFilterSet
    lookup_field = "request_id"
    lookup_value_regex = "[^/]+"
    not_found_label = "fleet request"
    capabilities = {"return_request": "destroy", "return_instances": "destroy"}
    rate_classes = {"create": "write", "return_request": "write", "return_instances": "write"}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            return selectors.with_status(queryset.select_related("returns"))
        return selectors.with_items(queryset)

    def _detail(self, fleet_request: FleetRequest, code: int) -> Response:
        fresh = selectors.with_items(FleetRequest.objects.filter(pk=fleet_request.pk)).get()
        return Response(s.FleetRequestDetailSerializer(fresh).data, status=code)

    @extend_schema(summary="Fleet requests, newest first", parameters=[OpenApiParameter("status", str, many=True), OpenApiParameter("kind", str)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="A fleet request with each of its instances", responses=s.FleetRequestDetailSerializer)
    def retrieve(self, request, *args, **kwargs):
        return Response(s.FleetRequestDetailSerializer(self.get_object()).data)

    @extend_schema(
        summary="Request `count` instances from a blueprint (created by background jobs)",
        request=s.FleetRequestCreateSerializer,
        responses={202: s.FleetRequestDetailSerializer, 400: ERR_400, 402: ERR_402, 403: ERR_403, 409: ERR_409},
        parameters=[IDEMPOTENCY],
    )
    @idempotent
    def create(self, request):
        body = s.FleetRequestCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fleet_request = services.fleet_request_acquire(principal=self.principal, **body.validated_data)
        return self._detail(fleet_request, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Return (destroy) the live instances of an acquire request, as a new request",
        operation_id="requests_return",
        request=None, responses={202: s.FleetRequestDetailSerializer, 400: ERR_400, 403: ERR_403, 409: ERR_409}, parameters=[IDEMPOTENCY],
    )  # fmt: skip
    @idempotent
    @action(detail=True, methods=["post"], url_path="return")
    def return_request(self, request, request_id=None):
        acquired = self.get_object()
        if acquired.kind != RequestKind.ACQUIRE:
            raise InvalidState(f"{acquired.request_id} is a return request; only an acquire request's instances can be returned")
        instances = [item.instance for item in acquired.ordered_items if item.instance.destroyed_at is None]
        returned = services.fleet_request_return(principal=self.principal, instances=instances, returns=acquired)
        return self._detail(returned, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Return (destroy) named instances, as one request",
        operation_id="requests_return_instances",
        request=s.FleetReturnSerializer,
        responses={202: s.FleetRequestDetailSerializer, 400: ERR_400, 403: ERR_403, 404: ERR_404, 409: ERR_409},
        parameters=[IDEMPOTENCY],
    )
    @idempotent
    @action(detail=False, methods=["post"], url_path="return")
    def return_instances(self, request):
        body = s.FleetReturnSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        instances = scoped(Instance.objects.all(), self.principal, tenant_field="tenant", instance_scope_field="instance_id")
        targets = services.fleet_return_targets(principal=self.principal, instance_ids=body.validated_data["instance_ids"], instances=instances)
        returned = services.fleet_request_return(principal=self.principal, instances=targets)
        return self._detail(returned, status.HTTP_202_ACCEPTED)
