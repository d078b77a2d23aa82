from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from contextlib import ExitStack

from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from orchestrio.api.exceptions import QueryValidationError, flatten_errors
from orchestrio.api.renderers import JSONRenderer
from orchestrio.api.schema import ERR_400, ERR_402, ERR_403, ERR_408, ERR_409, ERR_429_LONG_POLL, ERR_502, ERR_504
from orchestrio.api.viewsets import PublicApiView, TenantScopedViewSet, idempotent
from orchestrio.errors import InvalidState, NotFound, RequestTimeout, ValidationFailed
from orchestrio.longpoll import long_poll_slot
from orchestrio.models import SubscriptionPlan

from .. import selectors, services
from ..choices import InstanceState, OperationKind
from ..filtersets import BlueprintFilterSet, InstanceFilterSet, OperationFilterSet, TenantOperationFilterSet
from ..agent_client import agent_status
from ..models import Blueprint, Instance, InstancePlan, LogLine, Operation, Region
from ..waiting import DEAD_ENDS, wait_for_state
from .applogs import APP_LOG_EVENT_SCHEMA, EventStreamRenderer, app_logs_record, follow_app_logs

from . import serializers as s

def _query(serializer_class, request):
    query = serializer_class(data=request.query_params)
    if not query.is_valid():
        raise QueryValidationError(query.errors)
    return query.validated_data


def _lifecycle_action(kind: str, summary: str):
    @idempotent
    def handler(self, request, instance_id=None):
        instance = self.get_object()
        services.operation_accept(instance=instance, kind=kind, actor=self.principal.actor)
        return Response(self._record(instance), status=status.HTTP_202_ACCEPTED)

    handler.__name__ = kind
    # extend_schema after action: action() replaces the function's `kwargs`, where the schema lives.
    routed = action(detail=True, methods=["post"], url_path=kind)(handler)
    return extend_schema(summary=summary, request=None, responses={202: s.InstanceSerializer, 400: ERR_400, 402: ERR_402, 409: ERR_409})(routed)


class InstanceScopedViewSet(TenantScopedViewSet):
    """Routes under `instances/{instance_id}`: the tenant's live instance, within a scoped token's
    instance (`instance_scope_field`), else 404. The apps built on instances route their instance
    actions with it (the domains app's custom domain, billing's usage)."""

    queryset = Instance.objects.filter(destroyed_at__isnull=True)
    instance_scope_field = "instance_id"
    lookup_field = "instance_id"
    lookup_value_regex = "[^/]+"
    not_found_label = "instance"

    def get_queryset(self):
        """The list reads a page of ids from the page index, then their records (`list`); every
        other action reads its instance whole, with its record's relations, in one query."""
        queryset = super().get_queryset()
        return queryset if self.action == "list" else selectors.with_record(queryset)

    def check_route_objects(self) -> None:
        if "instance_id" in self.kwargs:
            self._latest(self.kwargs["instance_id"])

    def _latest(self, instance_id: str):
        """Including destroyed instances (DELETE answers `already_deleted`, wait can see `destroyed`)."""
        instance = selectors.live_or_last_destroyed_instance(instances=self.scope_queryset(Instance.objects.all()), instance_id=instance_id)
        if instance is None:
            raise NotFound(f"no instance {instance_id!r} in this tenant")
        return instance


@extend_schema(tags=["instances"])
class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's operations across its instances, newest first (a token scoped to one
    instance sees that instance's). Destroyed instances' operations stay: they are history."""

    queryset = Operation.objects.select_related("instance").only(
        "id", "kind", "status", "requested_by", "created_at", "started_at", "finished_at", "error_code", "error_message",
        "reason", "instance__instance_id", "instance__destroyed_at",
    ).order_by("-created_at", "-id")  # fmt: skip
    serializer_class = s.TenantOperationSerializer
    filterset_class = TenantOperationFilterSet
    instance_scope_field = "instance__instance_id"
    lookup_value_regex = "[0-9]+"
    not_found_label = "operation"
    allows_scoped_tokens = {"list", "retrieve"}

    @extend_schema(summary="The tenant's operations across its instances, newest first")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="One operation")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)


@extend_schema(tags=["instances"])
class InstanceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, InstanceScopedViewSet):
    serializer_class = s.InstanceSerializer
    filterset_class = InstanceFilterSet
    allows_scoped_tokens = {
        "list", "retrieve", "destroy", "wait", "operations", "logs", "app_logs", "stats", "health", "runtime", "config",
        "stop", "start", "restart", "suspend", "resume", "sleep", "wake", "resize", "by_idempotency_key", "partial_update",
    }  # fmt: skip
    capabilities = {
        "destroy": "destroy", "cleanup": "destroy", "rotate_agent_key": "tokens",
    }  # fmt: skip
    rate_classes = {
        "create": "write", "destroy": "write", "resize": "write", "cleanup": "write", "rotate_agent_key": "write",
        "stop": "lifecycle", "start": "lifecycle", "restart": "lifecycle", "suspend": "lifecycle", "resume": "lifecycle",
        "sleep": "lifecycle", "wake": "lifecycle", "partial_update": "write",
    }  # fmt: skip

    def _record(self, instance) -> dict:
        """The instance's record as it is now (after the action that changed it)."""
        return s.InstanceSerializer(selectors.with_record(Instance.objects.filter(pk=instance.pk)).get()).data

    @extend_schema(summary="List live instances")
    def list(self, request, *args, **kwargs):
        listed = self.filter_queryset(self.get_queryset())
        ids = self.paginate_queryset(listed.values_list("instance_id", flat=True))
        records = selectors.instances_with_record_in_order(tenant=self.principal.tenant, instance_ids=ids)
        return self.get_paginated_response(s.InstanceSerializer(records, many=True).data)

    @extend_schema(summary="An instance's full record")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Create an instance (provisioned by a background job)",
        request=s.InstanceCreateSerializer,
        responses={201: s.InstanceSerializer, 402: ERR_402, 403: ERR_403, 409: ERR_409},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, description="1–255 characters")],
    )
    @idempotent
    def create(self, request):
        body = s.InstanceCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        instance = services.instance_create(
            principal=self.principal, idempotency_key=request.headers.get("Idempotency-Key"), **body.validated_data
        )
        return Response(self._record(instance), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Destroy an instance (202; again while destroying or after: 200 with already_deleted)",
        request=None,
        responses={202: s.DestroyResultSerializer, 200: s.DestroyResultSerializer, 409: ERR_409},
    )
    def destroy(self, request, instance_id=None):
        instance = self._latest(instance_id)
        instance, operation = services.operation_accept(instance=instance, kind=OperationKind.DESTROY, actor=self.principal.actor)
        if operation is None:
            return Response({"instance_id": instance.instance_id, "state": instance.state, "already_deleted": True})
        return Response({"instance_id": instance.instance_id, "state": instance.state}, status=status.HTTP_202_ACCEPTED)

    stop = _lifecycle_action(OperationKind.STOP, "Stop a running instance")
    start = _lifecycle_action(OperationKind.START, "Start a stopped instance (or retry one in error)")
    restart = _lifecycle_action(OperationKind.RESTART, "Restart: stop then start, as one operation")
    suspend = _lifecycle_action(OperationKind.SUSPEND, "Suspend (hibernate where the plan allows it)")
    resume = _lifecycle_action(OperationKind.RESUME, "Resume a suspended instance")
    sleep = _lifecycle_action(OperationKind.SLEEP, "Put a running instance to sleep (suspended; the next request to it wakes it)")
    wake = _lifecycle_action(OperationKind.WAKE, "Wake an asleep instance")

    @extend_schema(
        summary="Change the instance's own settings (its idle timeout)",
        request=s.InstanceUpdateSerializer,
        responses={200: s.InstanceSerializer},
    )
    def partial_update(self, request, instance_id=None):
        instance = self.get_object()
        body = s.InstanceUpdateSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        services.instance_update(instance=instance, actor=self.principal.actor, fields=dict(body.validated_data))
        return Response(self._record(instance))

    @extend_schema(summary="Resize to another plan or instance type", request=s.ResizeSerializer, responses={202: s.InstanceSerializer, 400: ERR_400, 409: ERR_409})
    @action(detail=True, methods=["put"], url_path="resize")
    def resize(self, request, instance_id=None):
        instance = self.get_object()
        body = s.ResizeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.instance_resize(
            instance=instance, actor=self.principal.actor, plan_id=body.validated_data.get("plan_id"),
            new_instance_type=body.validated_data.get("new_instance_type"),
        )  # fmt: skip
        return Response(self._record(instance), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Long-poll until the instance is in `state`",
        description="Open waits are capped per token (or console user), per tenant and per server (429 with Retry-After beyond); "
        "a wait that can answer at once takes no slot.",
        parameters=[s.WaitQuerySerializer],
        responses={200: s.InstanceSerializer, 400: ERR_400, 408: ERR_408, 429: ERR_429_LONG_POLL},
    )
    @action(detail=True, methods=["get"], url_path="wait")
    def wait(self, request, instance_id=None):
        query = _query(s.WaitQuerySerializer, request)
        instance = self._latest(instance_id)
        target = query["state"]
        state, reached = instance.state, instance.state == target
        if not reached and state not in DEAD_ENDS:
            # Only a request that must wait holds a slot (and its thread) while it waits.
            with long_poll_slot(self.principal, "wait") as slot:
                state, reached = wait_for_state(instance.pk, target, query["timeout"], heartbeat=slot.renew)
        if reached:
            return Response(self._record(instance))
        if state in DEAD_ENDS:
            raise InvalidState(f"{instance.instance_id} is {state} and can no longer become {target}")
        raise RequestTimeout(f"timed out after {query['timeout']}s waiting for {target}; {instance.instance_id} is {state}")

    @extend_schema(summary="The instance's operations, newest first", responses=s.OperationSerializer(many=True), parameters=[OpenApiParameter("status", str), OpenApiParameter("kind", str)])
    @action(detail=True, methods=["get"], url_path="operations", filterset_class=None)
    def operations(self, request, instance_id=None):
        instance = self.get_object()
        filterset = OperationFilterSet(request.query_params, queryset=instance.operations.all().order_by("-created_at", "-id"))
        if not filterset.is_valid():
            raise QueryValidationError(dict(filterset.errors))
        queryset = filterset.qs
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.OperationSerializer(page, many=True).data)

    @extend_schema(summary="Lifecycle log lines in seq order", responses=s.LogLineSerializer(many=True), parameters=[s.LogQuerySerializer])
    @action(detail=True, methods=["get"], url_path="logs", filterset_class=None)
    def logs(self, request, instance_id=None):
        query = _query(s.LogQuerySerializer, request)
        instance = self.get_object()
        lines = LogLine.objects.filter(instance=instance).order_by("seq")
        if "after_seq" in query:
            lines = lines.filter(seq__gt=query["after_seq"])
        page = self.paginate_queryset(lines)
        return self.get_paginated_response(s.LogLineSerializer(page, many=True).data)

    @extend_schema(
        summary="The instance's own stdout/stderr (its agent's ring buffer); `follow=true`: server-sent events",
        parameters=[s.AppLogQuerySerializer],
        responses={
            (200, "application/json"): s.AppLogsSerializer,
            (200, "text/event-stream"): OpenApiResponse(APP_LOG_EVENT_SCHEMA, description="follow=true: `event: status|line|end|error`, each `data` one JSON object (docs/observability.md)"),
            400: ERR_400, 429: ERR_429_LONG_POLL, 502: ERR_502, 504: ERR_504,
        },
    )  # fmt: skip
    @action(detail=True, methods=["get"], url_path="app-logs", filterset_class=None, renderer_classes=[JSONRenderer, EventStreamRenderer])
    def app_logs(self, request, instance_id=None):
        query = _query(s.AppLogQuerySerializer, request)
        instance = self.get_object()
        follow, timeout = query.pop("follow"), min(query.pop("timeout"), settings.APP_LOG_FOLLOW_MAX_SECONDS)
        last_event = request.headers.get("Last-Event-ID", "")
        if last_event.isdigit():
            query["after"] = max(query["after"], int(last_event))
        body = services.instance_app_logs(instance=instance, **query)
        record = app_logs_record(instance, body)
        if not follow:
            return Response(s.AppLogsSerializer(record).data)
        slot = ExitStack()
        held = slot.enter_context(long_poll_slot(self.principal, "log follow"))
        follow_query = {key: value for key, value in query.items() if key not in ("since", "tail")}
        stream = follow_app_logs(instance, record, follow_query, timeout=timeout, renew=held.renew, on_close=slot.close)
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"
        return response

    @extend_schema(
        summary="The instance's stats over a window: CPU, memory, network and disk rates, uptime, restarts",
        parameters=[s.StatsQuerySerializer], responses={200: s.StatsSerializer},
    )  # fmt: skip
    @action(detail=True, methods=["get"], url_path="stats", filterset_class=None)
    def stats(self, request, instance_id=None):
        query = _query(s.StatsQuerySerializer, request)
        return Response(s.StatsSerializer(selectors.instance_stats(instance=self.get_object(), window=query["window"])).data)

    @extend_schema(summary="Probe the instance's health endpoint now", responses={200: s.HealthProbeSerializer, 400: ERR_400})
    @action(detail=True, methods=["get"], url_path="health", filterset_class=None)
    def health(self, request, instance_id=None):
        return Response(services.instance_health_check(instance=self.get_object()))

    @extend_schema(summary="The agent's status merged with the control plane's view", responses=s.RuntimeSerializer)
    @action(detail=True, methods=["get"], url_path="runtime", filterset_class=None)
    def runtime(self, request, instance_id=None):
        instance = self.get_object()
        agent = agent_status(instance) if instance.state == InstanceState.RUNNING else None
        return Response(s.RuntimeSerializer(selectors.instance_runtime(instance, agent=agent)).data)

    @extend_schema(
        methods=["GET"], summary="The instance's platform config", responses=s.ConfigSerializer,
    )  # fmt: skip
    @extend_schema(
        methods=["PATCH"],
        summary="Merge-patch the config (RFC 7396); ?apply=true pushes it to the running instance",
        request=OpenApiTypes.OBJECT,
        parameters=[s.ConfigQuerySerializer],
        responses={200: s.ConfigSerializer, 400: ERR_400, 502: ERR_502, 504: ERR_504},
    )
    @action(detail=True, methods=["get", "patch"], url_path="config", filterset_class=None)
    def config(self, request, instance_id=None):
        instance = self.get_object()
        if instance.state in (InstanceState.DESTROYING, InstanceState.DESTROYED):
            # DELETE took the config with it: neither readable nor writable from then on.
            raise NotFound(f"{instance.instance_id} is {instance.state}: its config was deleted with it")
        if request.method == "GET":
            return Response({"instance_id": instance.instance_id, "config": instance.config or {}})
        query = _query(s.ConfigQuerySerializer, request)
        if not isinstance(request.data, dict):
            raise ValidationFailed("the body must be a JSON object (a JSON merge patch)")
        if query["apply"] and instance.state != InstanceState.RUNNING:
            raise InvalidState(f"cannot apply config: {instance.instance_id} is {instance.state}, not running")
        instance = services.instance_config_update(instance=instance, patch=request.data, actor=self.principal.actor)
        body = {"instance_id": instance.instance_id, "config": instance.config, "applied": False}
        if query["apply"]:
            result = services.instance_config_apply(instance=instance, actor=self.principal.actor)
            body.update(applied=True, agent_config_digest=result.get("digest"))
        return Response(body)

    @extend_schema(summary="Destroy every instance in error", request=None, responses=s.CleanupResultSerializer)
    @action(detail=False, methods=["post"], url_path="cleanup", filterset_class=None)
    def cleanup(self, request):
        return Response(services.instance_cleanup(principal=self.principal))

    @extend_schema(summary="Issue a new agent key and push it to the running agent", request=None, responses={200: s.RotateKeyResultSerializer, 400: ERR_400, 409: ERR_409, 502: ERR_502, 504: ERR_504})
    @action(detail=True, methods=["post"], url_path="rotate-agent-key", filterset_class=None)
    def rotate_agent_key(self, request, instance_id=None):
        instance = services.instance_rotate_agent_key(instance=self.get_object(), actor=self.principal.actor)
        return Response({"instance_id": instance.instance_id, "rotated_at": instance.agent_key_rotated_at})

    @extend_schema(
        summary="Find the instance a create with this Idempotency-Key made",
        description="Keys are the caller's own (per API token, or per console user): another principal's create with the same key is not found.",
        responses=s.ByIdempotencyKeySerializer,
    )
    @action(detail=False, methods=["get"], url_path=r"by-idempotency-key/(?P<key>[^/]{1,255})", filterset_class=None)
    def by_idempotency_key(self, request, key=None):
        instance = selectors.instance_by_idempotency_key(principal=self.principal, key=key)
        if instance is None or (self.principal.instance_scope not in (None, instance.instance_id)):
            return Response({"found": False, "instance_id": None, "state": None, "provisioning_stage": None, "logs": []})
        logs = list(LogLine.objects.filter(instance=instance).order_by("seq")[:200])
        return Response(
            {
                "found": True,
                "instance_id": instance.instance_id,
                "state": instance.state,
                "provisioning_stage": logs[-1].stage if logs else None,
                "logs": s.LogLineSerializer(logs, many=True).data,
            }
        )


@extend_schema(tags=["blueprints"])
class BlueprintViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Blueprint.objects.order_by("name")
    serializer_class = s.BlueprintSerializer
    filterset_class = BlueprintFilterSet
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    not_found_label = "blueprint"
    capabilities = {"destroy": "destroy", "validate": "read"}

    def scope_queryset(self, queryset):
        # The tenant's own and the built-in ones, filtered in place: combining two querysets with
        # `&` cost 0.1 ms of CPU per list (bench/request_cpu.py).
        return selectors.blueprint_visible(tenant=self.principal.tenant, queryset=queryset)

    @extend_schema(summary="Create a blueprint (camelCase or snake_case)", request=s.BlueprintWriteSerializer, responses={201: s.BlueprintSerializer, 409: ERR_409})
    @idempotent
    def create(self, request):
        body = s.BlueprintWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        blueprint = services.blueprint_create(principal=self.principal, name=data.pop("name"), **data)
        return Response(s.BlueprintSerializer(blueprint).data, status=status.HTTP_201_CREATED)

    def _update(self, request, partial: bool):
        blueprint = self.get_object()
        body = s.BlueprintWriteSerializer(blueprint, data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        if data.get("name", blueprint.name) != blueprint.name:
            raise ValidationFailed("a blueprint cannot be renamed", field="name")
        data.pop("name", None)
        blueprint = services.blueprint_update(principal=self.principal, blueprint=blueprint, fields=data)
        return Response(s.BlueprintSerializer(blueprint).data)

    @extend_schema(summary="Replace a blueprint's settings", request=s.BlueprintWriteSerializer, responses={200: s.BlueprintSerializer, 403: ERR_403})
    def update(self, request, name=None):
        return self._update(request, partial=False)

    @extend_schema(summary="Change some of a blueprint's settings", request=s.BlueprintWriteSerializer, responses={200: s.BlueprintSerializer, 403: ERR_403})
    def partial_update(self, request, name=None):
        return self._update(request, partial=True)

    @extend_schema(summary="Delete a blueprint (409 while live instances use it)", responses={204: None, 403: ERR_403, 409: ERR_409})
    def destroy(self, request, name=None):
        services.blueprint_delete(principal=self.principal, blueprint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Check a blueprint without saving it",
        description="The body is a blueprint as for POST /blueprints; whatever is wrong with it is reported in `errors` (200). "
        "Only a body that is not a JSON object is refused (422).",
        request=OpenApiTypes.OBJECT,
        responses=s.BlueprintValidationSerializer,
    )
    @action(detail=False, methods=["post"], url_path="validate", filterset_class=None)
    def validate(self, request):
        if not isinstance(request.data, dict):
            raise ValidationFailed("the body must be a JSON object: the blueprint to check")
        body = s.BlueprintWriteSerializer(data=request.data)
        valid = body.is_valid()
        errors = [] if valid else flatten_errors(body.errors, ["body"])
        data = body.validated_data if valid else s.snake_case_keys(request.data)
        name = data.get("name")
        if valid and name and selectors.blueprint_visible(tenant=self.principal.tenant).filter(name=name).exists():
            errors.append({"loc": ["body", "name"], "msg": f"a blueprint named {name!r} exists", "type": "conflict"})
        problem = services.blueprint_command_problem(command=data.get("command"))
        if problem:
            errors.append({"loc": ["body", "command"], "msg": problem, "type": "value_error"})
        if valid:
            fleet_problem = services.blueprint_fleet_problem(
                provider_api=data.get("provider_api", "RunInstances"), machine_types=data.get("machine_types"),
                on_demand_percentage=data.get("on_demand_percentage"), allocation_strategy=data.get("allocation_strategy"),
            )  # fmt: skip
            if fleet_problem:
                errors.append({"loc": ["body", fleet_problem[0]], "msg": fleet_problem[1], "type": "value_error"})
        warnings = blueprint_warnings(data)
        return Response({"valid": not errors, "errors": errors, "warnings": warnings})


def blueprint_warnings(data: dict) -> list[str]:
    warnings = []
    if not data.get("image_id"):
        warnings.append("no image_id: AWS instances need an AMI (the local provider ignores it)")
    if not data.get("subnet_ids"):
        warnings.append("no subnet_ids: EC2 launches into the region's default VPC")
    if not data.get("security_group_ids"):
        warnings.append("no security_group_ids: the default security group must let the control plane reach the agent port")
    if not data.get("iam_instance_profile"):
        warnings.append("no iam_instance_profile: tasks on AWS need an instance profile that allows SSM")
    if not data.get("task_roots"):
        warnings.append("no task_roots: tasks may run a script from any absolute path")
    return warnings


class CatalogueView(PublicApiView):
    @extend_schema(
        operation_id="plans_list",
        summary="Instance plans and subscription plans",
        responses=s.CatalogueSerializer,
        tags=["catalogue"],
    )
    def get(self, request):
        data = {
            "instance_plans": InstancePlan.objects.filter(available=True),
            "subscription_plans": SubscriptionPlan.objects.filter(is_public=True),
        }
        return Response(s.CatalogueSerializer(data).data)


class RegionListView(PublicApiView, ListAPIView):
    serializer_class = s.RegionSerializer
    queryset = Region.objects.all()
    filter_backends: list = []

    @extend_schema(operation_id="regions_list", summary="Regions and their providers", tags=["catalogue"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
