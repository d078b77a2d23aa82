from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from instances.api.views import InstanceScopedViewSet
from instances.models import Instance
from orchestrio.api.exceptions import QueryValidationError
from orchestrio.api.schema import ERR_400, ERR_403, ERR_502, ERR_503, ERR_504
from orchestrio.api.serializers import ActivityEventSerializer
from orchestrio.api.viewsets import TenantApiView, TenantScopedViewSet
from orchestrio.http import carries_secret
from orchestrio.models import ActivityEvent
from orchestrio.selectors import tenant_usage

from .. import alerts, services
from ..models import AlertConfig, AlertDelivery
from ..selectors import instance_usage, usage_current
from . import serializers as s

class CheckoutView(TenantApiView):
    rate_class = "write"
    capabilities = {"post": "billing"}

    @extend_schema(tags=["billing"], summary="A Stripe Checkout session to subscribe to a plan", request=s.CheckoutSerializer,
                   responses={200: s.UrlSerializer, 400: ERR_400, 403: ERR_403, 502: ERR_502, 503: ERR_503, 504: ERR_504})  # fmt: skip
    def post(self, request):
        body = s.CheckoutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response({"url": services.checkout_session_create(principal=self.principal, plan_id=body.validated_data["plan"])})


class PortalView(TenantApiView):
    rate_class = "write"
    capabilities = {"post": "billing"}

    @extend_schema(tags=["billing"], summary="A Stripe Customer Portal session to manage the subscription", request=None,
                   responses={200: s.UrlSerializer, 400: ERR_400, 403: ERR_403, 502: ERR_502, 503: ERR_503, 504: ERR_504})  # fmt: skip
    def post(self, request):
        return Response({"url": services.portal_session_create(principal=self.principal)})


class UsageCurrentView(TenantApiView):
    @extend_schema(tags=["billing"], summary="Usage in the current period: executions against the quota, instance-hours", responses=s.UsageCurrentSerializer)
    def get(self, request):
        return Response(s.UsageCurrentSerializer(usage_current(self.principal.tenant)).data)


class AlertConfigView(TenantApiView):
    capabilities = {"get": "alerts", "patch": "alerts"}

    def _config(self):
        return AlertConfig.objects.filter(tenant=self.principal.tenant).first() or AlertConfig(tenant=self.principal.tenant)

    @extend_schema(tags=["alerts"], summary="The tenant's alert webhook", responses=s.AlertConfigSerializer)
    def get(self, request):
        return Response(s.AlertConfigSerializer(self._config()).data)

    @extend_schema(tags=["alerts"], summary="Change the alert webhook (the signing secret is returned once, when created)", request=s.AlertConfigUpdateSerializer, responses=s.AlertConfigWithSecretSerializer)
    def patch(self, request):
        body = s.AlertConfigUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config, secret = alerts.alert_config_update(tenant=self.principal.tenant, actor=self.principal.actor, data=body.validated_data)
        data = s.AlertConfigSerializer(config).data
        if secret:
            data["signing_secret"] = secret
            return carries_secret(Response(data))
        return Response(data)


@extend_schema(tags=["alerts"])
class AlertDeliveryViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    queryset = AlertDelivery.objects.prefetch_related("attempt_log").order_by("-created_at")
    serializer_class = s.AlertDeliverySerializer
    not_found_label = "alert delivery"
    filter_backends: list = []
    lookup_value_regex = "[^/]+"
    capabilities = {name: "alerts" for name in ("list", "redeliver", "test", "rotate_secret")}
    rate_classes = {"redeliver": "write", "test": "write", "rotate_secret": "write"}

    @extend_schema(summary="Alert deliveries, newest first, with every attempt")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Send the delivery's event again", request=None, responses={202: s.AlertDeliverySerializer, 400: ERR_400})
    @action(detail=True, methods=["post"], url_path="redeliver")
    def redeliver(self, request, pk=None):
        delivery = alerts.redeliver(delivery=alerts.delivery_for(self.principal.tenant, pk), actor=self.principal.actor)
        return Response(s.AlertDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Send a test alert", request=None, responses={202: s.AlertDeliverySerializer, 400: ERR_400})
    @action(detail=False, methods=["post"], url_path="test")
    def test(self, request):
        delivery = alerts.send_test(tenant=self.principal.tenant, actor=self.principal.actor)
        return Response(s.AlertDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Issue a new signing secret (shown once)", request=None, responses={200: s.SigningSecretSerializer, 400: ERR_400})
    @action(detail=False, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request):
        return carries_secret(Response({"signing_secret": alerts.alert_secret_rotate(tenant=self.principal.tenant, actor=self.principal.actor)}))


class DashboardView(TenantApiView):
    @extend_schema(tags=["tenant"], summary="Counts by state, plan usage, recent activity", responses=s.DashboardSerializer)
    def get(self, request):
        tenant = self.principal.tenant
        by_state = dict(Instance.objects.filter(tenant=tenant, destroyed_at__isnull=True).values_list("state").annotate(n=Count("id")).order_by())
        usage = tenant_usage(tenant=tenant)
        plan = tenant.plan
        return Response(
            {
                "instances": {"by_state": by_state, "total": sum(by_state.values())},
                "plan": {"id": plan.pk, "name": plan.name, "limits": plan.limits, "usage": usage},
                "usage": s.UsageCurrentSerializer(usage_current(tenant)).data,
                "recent_activity": ActivityEventSerializer(ActivityEvent.objects.filter(tenant=tenant)[:10], many=True).data,
            }
        )


@extend_schema(tags=["instances"])
class InstanceUsageViewSet(InstanceScopedViewSet):
    """`instances/{instance_id}/usage`: an instance's metered usage."""

    serializer_class = s.InstanceUsageSerializer
    allows_scoped_tokens = {"usage"}

    @extend_schema(summary="Daily executions and instance-hours", parameters=[s.UsageQuerySerializer], responses=s.InstanceUsageSerializer)
    @action(detail=True, methods=["get"], url_path="usage")
    def usage(self, request, instance_id=None):
        query = s.UsageQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise QueryValidationError(query.errors)
        return Response(s.InstanceUsageSerializer(instance_usage(self.get_object(), query.validated_data["days"])).data)
