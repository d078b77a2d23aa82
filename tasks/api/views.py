from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from instances.api.parents import INSTANCE
from orchestrio.api.schema import ERR_400, ERR_402, ERR_409
from orchestrio.api.viewsets import TenantScopedViewSet

from .. import services
from ..filtersets import TaskFilterSet
from ..models import Task
from .serializers import TaskDispatchSerializer, TaskSerializer


class _TaskBase(TenantScopedViewSet):
    queryset = Task.objects.select_related("instance")
    instance_scope_field = "instance__instance_id"
    serializer_class = TaskSerializer
    allows_scoped_tokens = True
    not_found_label = "task"


@extend_schema(tags=["tasks"])
class InstanceTaskViewSet(mixins.ListModelMixin, _TaskBase):
    """/api/v1/instances/{instance_id}/tasks"""

    filterset_class = TaskFilterSet
    rate_classes = {"create": "write"}
    parent = INSTANCE

    @extend_schema(summary="The instance's tasks, newest first")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Run a script on the instance (one task at a time)",
        request=TaskDispatchSerializer,
        responses={
            202: TaskSerializer,
            200: OpenApiResponse(TaskSerializer, description="The task an earlier request with this idempotency_key created."),
            400: ERR_400, 402: ERR_402, 409: ERR_409,
        },
    )  # fmt: skip
    def create(self, request, instance_id=None):
        body = TaskDispatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        task, created = services.task_dispatch(instance=self.parent_object, actor=self.principal.actor, **body.validated_data)
        return Response(TaskSerializer(task).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


@extend_schema(tags=["tasks"])
class TaskViewSet(mixins.RetrieveModelMixin, _TaskBase):
    """/api/v1/tasks/{task_id}"""

    lookup_field = "task_id"
    lookup_value_regex = "[^/]+"
    rate_classes = {"cancel": "write"}

    @extend_schema(summary="A task: status, exit code and the last 64 KiB of its output")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(summary="Cancel a queued or running task", request=None, responses={202: TaskSerializer, 400: ERR_400})
    @action(detail=True, methods=["post"], url_path="cancel")
    def cancel(self, request, task_id=None):
        task = services.task_cancel(task=self.get_object(), actor=self.principal.actor)
        return Response(TaskSerializer(task).data, status=status.HTTP_202_ACCEPTED)
