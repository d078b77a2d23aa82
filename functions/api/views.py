from __future__ import annotations

import base64

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from orchestrio import roles
from orchestrio.api.exceptions import QueryValidationError
from orchestrio.api.schema import ERR_400, ERR_402, ERR_409, ERR_422, ERR_502, ERR_503, ERR_504
from orchestrio.api.viewsets import TenantApiView, TenantScopedViewSet, idempotent
from orchestrio.http import carries_secret

from .. import backends, rules, selectors, services
from ..invoke import invoke, request_envelope
from . import serializers as s


def _query(serializer_class, request):
    query = serializer_class(data=request.query_params)
    if not query.is_valid():
        raise QueryValidationError(query.errors)
    return query.validated_data


def _with_key(function, key):
    function.api_key = key
    response = Response(s.FunctionWithKeySerializer(function).data)
    return carries_secret(response) if key else response


@extend_schema(tags=["functions"])
class FunctionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """/api/v1/functions and /api/v1/functions/{function_id}"""

    queryset = selectors.function_list()
    serializer_class = s.FunctionSerializer
    lookup_field = "function_id"
    lookup_value_regex = "[^/]+"
    not_found_label = "function"
    filter_backends: list = []
    capabilities = {"destroy": roles.DESTROY, "env_vars": roles.TOKENS, "rotate_api_key": roles.TOKENS}
    rate_classes = {
        "create": "write",
        "partial_update": "write",
        "destroy": "write",
        "deploy": "write",
        "invoke": "write",
        "rotate_api_key": "write",
        "env_vars": "write",
    }

    @extend_schema(summary="The tenant's functions")
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        # Whether each runs: asked once for the page (one call to a function instance at most).
        on = backends.get()
        context = {**self.get_serializer_context(), "running": on.running(page), "host": on.host_of(page[0]) if page else None}
        return self.get_paginated_response(s.FunctionSerializer(page, many=True, context=context).data)

    @extend_schema(summary="A function: its draft code, settings, current version and counters")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Create a function (not deployed yet: POST …/deploy); with auth_mode api_key its key is shown once",
        request=s.FunctionCreateSerializer, responses={201: s.FunctionWithKeySerializer, 402: ERR_402, 409: ERR_409, 422: ERR_422, 503: ERR_503},
    )  # fmt: skip
    @idempotent
    def create(self, request):
        body = s.FunctionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        function, key = services.function_create(principal=self.principal, runtime_name=data.pop("runtime"), **data)
        response = _with_key(function, key)
        response.status_code = status.HTTP_201_CREATED
        return response

    @extend_schema(
        summary="Change the draft (code, env merge patch), runtime, auth mode or idle timeout; switching to api_key shows the new key once",
        request=s.FunctionUpdateSerializer, responses={200: s.FunctionWithKeySerializer, 422: ERR_422},
    )  # fmt: skip
    def partial_update(self, request, function_id=None):
        body = s.FunctionUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        function, key = services.function_update(function=self.get_object(), actor=self.principal.actor, data=body.validated_data)
        return _with_key(function, key)

    @extend_schema(summary="Delete the function, its versions and logs (its slug is free again)", responses={204: None})
    def destroy(self, request, function_id=None):
        services.function_delete(function=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Deploy the draft as a new version (or roll back: {\"version\": N}); traffic switches only once it is healthy",
        request=s.FunctionDeploySerializer, responses={201: s.FunctionVersionSerializer, 400: ERR_400, 409: ERR_409, 422: ERR_422, 503: ERR_503},
    )  # fmt: skip
    @action(detail=True, methods=["post"], url_path="deploy")
    @idempotent
    def deploy(self, request, function_id=None):
        body = s.FunctionDeploySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = services.function_deploy(function=self.get_object(), actor=self.principal.actor, rollback_to=body.validated_data["version"])
        return Response(s.FunctionVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="The function's versions, newest first", responses=s.FunctionVersionSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="versions")
    def versions(self, request, function_id=None):
        page = self.paginate_queryset(self.get_object().versions.order_by("-number"))
        return self.get_paginated_response(s.FunctionVersionSerializer(page, many=True).data)

    @extend_schema(
        summary="Invoke the current version with a sample request (counts as an execution)",
        request=s.InvokeSerializer, responses={200: s.FunctionInvokeResultSerializer, 402: ERR_402, 409: ERR_409, 502: ERR_502, 504: ERR_504},
    )  # fmt: skip
    @action(detail=True, methods=["post"], url_path="invoke")
    def invoke(self, request, function_id=None):
        body = s.InvokeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        sample = s.SampleRequestSerializer(data=body.validated_data.get("request") or {})
        sample.is_valid(raise_exception=True)
        data = sample.validated_data
        function = self.get_object()
        query = data["query"]
        envelope = request_envelope(
            method=data["method"], path=data["path"], query=query, query_string="&".join(f"{k}={v}" for k, v in query.items()),
            headers={k.lower(): v for k, v in data["headers"].items()}, body=data["body"].encode("utf-8"),
        )  # fmt: skip
        result = invoke(function, envelope, plan=self.principal.tenant.plan)
        try:
            text, encoding = result.body.decode("utf-8"), "text"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(result.body).decode("ascii"), "base64"
        return Response({
            "status": result.status, "headers": dict(result.headers), "body": text, "body_encoding": encoding,
            "duration_ms": result.duration_ms, "cold_start": result.cold_start, "version": result.version,
        })  # fmt: skip

    @extend_schema(
        summary="The function's logs: its runtimes' output and the control plane's lines, newest last",
        parameters=[s.FunctionLogsQuerySerializer],
        responses=s.FunctionLogsSerializer,
    )
    @action(detail=True, methods=["get"], url_path="logs")
    def logs(self, request, function_id=None):
        query = _query(s.FunctionLogsQuerySerializer, request)
        function = self.get_object()
        return Response({"function_id": function.function_id, "lines": backends.get().read_log(function, tail=query["tail"])})

    @extend_schema(
        summary="Invocations, errors, cold starts and durations per minute",
        parameters=[s.FunctionMetricsQuerySerializer],
        responses=s.FunctionMetricsSerializer,
    )
    @action(detail=True, methods=["get"], url_path="metrics")
    def metrics(self, request, function_id=None):
        query = _query(s.FunctionMetricsQuerySerializer, request)
        return Response(s.FunctionMetricsSerializer(selectors.function_metrics(function=self.get_object(), window=query["window"])).data)

    @extend_schema(summary="The draft's env vars, decrypted (owners and admins; audited)", responses=s.FunctionEnvVarsSerializer)
    @action(detail=True, methods=["get"], url_path="env-vars")
    def env_vars(self, request, function_id=None):
        function = self.get_object()
        env = services.function_env_reveal(function=function, actor=self.principal.actor)
        return carries_secret(Response({"function_id": function.function_id, "env": env}))

    @extend_schema(
        summary="A new API key (shown once); the old one is refused from now on", request=None, responses={200: s.FunctionWithKeySerializer, 400: ERR_400}
    )
    @action(detail=True, methods=["post"], url_path="rotate-api-key")
    def rotate_api_key(self, request, function_id=None):
        function, key = services.function_rotate_api_key(function=self.get_object(), actor=self.principal.actor)
        return _with_key(function, key)


@extend_schema(tags=["functions"])
class FunctionNameCheckView(TenantApiView):
    """GET /api/v1/functions/check-name/{name}: whether a slug is free (slugs are unique on the
    installation, as they are public hostnames)."""

    @extend_schema(
        summary="Whether a function slug is valid and free", responses=s.FunctionNameCheckSerializer,
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH, description="The slug to check.")],
    )  # fmt: skip
    def get(self, request, name: str):
        problem = rules.slug_problem(name)
        if problem is None and selectors.slug_taken(name):
            problem = "taken"
        return Response({"name": name, "available": problem is None, "reason": problem})
