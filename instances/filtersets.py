import re

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

from .choices import HealthStatus, InstanceState, OperationKind, OperationStatus, Provider
from .models import Blueprint, Instance, Operation

LABEL_FILTER_RE = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?:[^\x00]{0,255}$")


class LabelListField(forms.Field):
    widget = forms.MultipleHiddenInput  # reads every `label=` of the query string

    def clean(self, value):
        values = [item for item in (value or []) if item]
        for item in values:
            if not LABEL_FILTER_RE.match(item):
                raise forms.ValidationError(f"label filters look like key:value, not {item!r}")
        return values


@extend_schema_field({"type": "array", "items": {"type": "string", "example": "env:prod"}})
class LabelFilter(django_filters.Filter):
    """`label=key:value`, repeatable: every given label must match."""

    field_class = LabelListField

    def filter(self, qs, value):
        for item in value or []:
            key, _, wanted = item.partition(":")
            qs = qs.filter(**{f"labels__{key}": wanted})
        return qs


class InstanceFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=InstanceState.choices)
    blueprint_name = django_filters.CharFilter(field_name="blueprint__name")
    region = django_filters.CharFilter(field_name="region_id")
    provider = django_filters.ChoiceFilter(choices=Provider.choices)
    health_status = django_filters.ChoiceFilter(choices=HealthStatus.choices)
    plan_id = django_filters.CharFilter(field_name="plan_id")
    label = LabelFilter(help_text="key:value; repeat for several (all must match)")

    class Meta:
        model = Instance
        fields = ["state", "blueprint_name", "region", "provider", "health_status", "plan_id"]


class OperationFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OperationStatus.choices)
    kind = django_filters.ChoiceFilter(choices=OperationKind.choices)

    class Meta:
        model = Operation
        fields = ["status", "kind"]


class TenantOperationFilterSet(django_filters.FilterSet):
    """`GET /operations`: the tenant's operations across its instances (destroyed ones included:
    it is their history). `since`/`until` bound `created_at` (ISO 8601)."""

    status = django_filters.MultipleChoiceFilter(choices=OperationStatus.choices, help_text="repeat for several")
    kind = django_filters.MultipleChoiceFilter(choices=OperationKind.choices, help_text="repeat for several")
    instance_id = django_filters.CharFilter(field_name="instance__instance_id", max_length=63)
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", help_text="ISO 8601, inclusive")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt", help_text="ISO 8601, exclusive")

    class Meta:
        model = Operation
        fields = ["status", "kind", "instance_id", "since", "until"]


class BlueprintFilterSet(django_filters.FilterSet):
    provider_api = django_filters.CharFilter()

    class Meta:
        model = Blueprint
        fields = ["provider_api"]
