from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from instances.api.views import InstanceScopedViewSet
from orchestrio.api.schema import ERR_400, ERR_402, ERR_409
from orchestrio.errors import NotFound

from .. import services as domains
from . import serializers as s


@extend_schema(tags=["instances"])
class InstanceCustomDomainViewSet(InstanceScopedViewSet):
    """`instances/{instance_id}/custom-domain`: an instance's custom domain."""

    serializer_class = s.CustomDomainSerializer
    allows_scoped_tokens = {"custom_domain", "custom_domain_check"}
    capabilities = {"custom_domain": {"POST": "expose", "DELETE": "destroy"}}
    rate_classes = {"custom_domain_check": "write"}

    def get_rate_class(self):
        if getattr(self, "action", None) == "custom_domain":
            return "domain_read" if self.request.method == "GET" else "write"
        return super().get_rate_class()

    def _domain(self, instance):
        domain = instance.custom_domains.filter(removed_at__isnull=True).first()
        if domain is None:
            raise NotFound(f"{instance.instance_id} has no custom domain")
        return domain

    @extend_schema(methods=["GET"], summary="The instance's custom domain, its DNS records and status", responses={200: s.CustomDomainSerializer})
    @extend_schema(
        methods=["POST"], summary="Attach a custom domain (verified in the background)", request=s.CustomDomainRequestSerializer,
        responses={202: s.CustomDomainSerializer, 402: ERR_402, 409: ERR_409},
    )  # fmt: skip
    @extend_schema(methods=["DELETE"], summary="Remove the custom domain", request=None, responses={202: s.CustomDomainSerializer})
    @action(detail=True, methods=["get", "post", "delete"], url_path="custom-domain")
    def custom_domain(self, request, instance_id=None):
        instance = self.get_object()
        if request.method == "POST":
            body = s.CustomDomainRequestSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            domain = domains.domain_attach(instance=instance, domain=body.validated_data["domain"], actor=self.principal.actor)
            return Response(s.CustomDomainSerializer(domain).data, status=status.HTTP_202_ACCEPTED)
        domain = self._domain(instance)
        if request.method == "DELETE":
            domain = domains.domain_remove(domain=domain, actor=self.principal.actor)
            return Response(s.CustomDomainSerializer(domain).data, status=status.HTTP_202_ACCEPTED)
        return Response(s.CustomDomainSerializer(domain).data)

    @extend_schema(summary="Check the custom domain's DNS now and return what was resolved", request=None, responses={200: s.CustomDomainSerializer, 400: ERR_400})
    @action(detail=True, methods=["post"], url_path="custom-domain/check")
    def custom_domain_check(self, request, instance_id=None):
        domain = domains.domain_check(domain_pk=self._domain(self.get_object()).pk, actor=self.principal.actor)
        return Response(s.CustomDomainSerializer(domain).data)
