"""Reading fleet requests: the status derived from their operations, in the query."""

from __future__ import annotations

from django.db.models import Case, CharField, Count, F, Prefetch, Q, QuerySet, Value, When

from instances.choices import OperationStatus

from .choices import RequestStatus
from .models import FleetRequest, FleetRequestItem

# An item with no operation had nothing to do (already destroyed or being destroyed): it is done.
_SUCCEEDED = Q(items__operation__status=OperationStatus.SUCCEEDED) | Q(items__operation__isnull=True)
_FAILED = Q(items__operation__status=OperationStatus.FAILED)
_STARTED = Q(items__operation__status__in=(OperationStatus.RUNNING, OperationStatus.SUCCEEDED, OperationStatus.FAILED)) | Q(
    items__operation__isnull=True
)


def with_status(queryset: QuerySet[FleetRequest]) -> QuerySet[FleetRequest]:
    """Each request with `total`, `succeeded`, `failed`, `started` and its `status`
    (choices.RequestStatus), computed by the database: filterable (`?status=`) and constant in
    queries whatever the page holds; newest first."""
    return queryset.annotate(
        total=Count("items"),
        succeeded=Count("items", filter=_SUCCEEDED),
        failed=Count("items", filter=_FAILED),
        started=Count("items", filter=_STARTED),
    ).annotate(
        status=Case(
            When(total=F("succeeded"), then=Value(RequestStatus.COMPLETE)),
            When(total=F("failed"), then=Value(RequestStatus.FAILED)),
            When(total=F("succeeded") + F("failed"), then=Value(RequestStatus.PARTIAL)),
            When(started=0, then=Value(RequestStatus.PENDING)),
            default=Value(RequestStatus.IN_PROGRESS),
            output_field=CharField(),
        )
    ).order_by("-created_at", "-id")  # an aggregate drops the model's ordering


def with_items(queryset: QuerySet[FleetRequest]) -> QuerySet[FleetRequest]:
    """`with_status` and each request's instances with their operations (one more query)."""
    items = FleetRequestItem.objects.select_related("instance", "operation").order_by("position")
    return with_status(queryset).select_related("returns", "batch").prefetch_related(Prefetch("items", queryset=items, to_attr="ordered_items"))
