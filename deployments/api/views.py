from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from orchestrio.api.exceptions import QueryValidationError
from orchestrio.api.schema import ERR_400, ERR_402, ERR_409
from orchestrio.api.viewsets import TenantScopedViewSet, idempotent

from ..selectors import deployment_stats, live_deployments, with_latest_revision
from ..services import deployment_create, deployment_delete, deployment_rollback, deployment_update
from . import serializers as s


def _query(serializer_class, request):
    query = serializer_class(data=request.query_params)
    if not query.is_valid():
        raise QueryValidationError(query.errors)
    return query.validated_data


@extend_schema(tags=["deployments"])
class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = with_latest_revision(live_deployments())
    serializer_class = s.DeploymentSerializer
    not_found_label = "deployment"
    lookup_value_regex = "[^/]+"
    filter_backends: list = []
    capabilities = {"destroy": "destroy"}
    rate_classes = {"create": "write", "partial_update": "write", "destroy": "write", "rollback": "write"}

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.prefetch_related(None) if self.action == "stats" else queryset  # stats reads the history itself

    @extend_schema(summary="The tenant's deployments")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="A deployment, with the steps of its latest run")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(summary="Create a deployment (provisions its instance)", request=s.DeploymentCreateSerializer, responses={201: s.DeploymentSerializer, 402: ERR_402, 409: ERR_409})
    @idempotent
    def create(self, request):
        body = s.DeploymentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deployment = deployment_create(principal=self.principal, **body.validated_data)
        return Response(s.DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change config and/or secrets: a new revision, applied to the instance", request=s.DeploymentUpdateSerializer, responses={202: s.DeploymentSerializer, 400: ERR_400, 409: ERR_409})
    def partial_update(self, request, pk=None):
        body = s.DeploymentUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deployment = self.get_object()
        deployment_update(deployment=deployment, actor=self.principal.actor, config_patch=body.validated_data.get("config"), secrets_patch=body.validated_data.get("secrets"))
        return Response(s.DeploymentSerializer(self.get_object()).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Delete the deployment and destroy its instance (production: ?confirm=<name>)", parameters=[s.DeleteQuerySerializer], responses={202: s.DeploymentSerializer, 400: ERR_400})
    def destroy(self, request, pk=None):
        query = _query(s.DeleteQuerySerializer, request)
        deployment = deployment_delete(deployment=self.get_object(), actor=self.principal.actor, confirm=query.get("confirm"))
        return Response(s.DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="The deployment's revisions, newest first", responses=s.DeploymentRevisionSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="revisions")
    def revisions(self, request, pk=None):
        page = self.paginate_queryset(self.get_object().revisions.order_by("-number"))
        return self.get_paginated_response(s.DeploymentRevisionSerializer(page, many=True).data)

    @extend_schema(summary="Apply an earlier revision again, as a new revision", request=s.RollbackSerializer, responses={202: s.DeploymentSerializer, 400: ERR_400, 402: ERR_402, 409: ERR_409})
    @action(detail=True, methods=["post"], url_path="rollback")
    def rollback(self, request, pk=None):
        body = s.RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deployment_rollback(deployment=self.get_object(), actor=self.principal.actor, revision_number=body.validated_data["revision"])
        return Response(s.DeploymentSerializer(self.get_object()).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="The deployment's log", responses=s.DeploymentLogLineSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="logs")
    def logs(self, request, pk=None):
        page = self.paginate_queryset(self.get_object().log_lines.order_by("seq"))
        return self.get_paginated_response(s.DeploymentLogLineSerializer(page, many=True).data)

    @extend_schema(summary="Success rate, durations per step, last deploy and rollbacks", responses=s.DeploymentStatsSerializer)
    @action(detail=True, methods=["get"], url_path="stats")
    def stats(self, request, pk=None):
        return Response(s.DeploymentStatsSerializer(deployment_stats(deployment=self.get_object())).data)
