import re
from datetime import timedelta

import django_filters
from django.db.models import Q
from django_filters.fields import IsoDateTimeField

from .api.filters import BooleanFilter
from .choices import ActorType
from .models import ActivityEvent, ApiToken

_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")


class UntilField(IsoDateTimeField):
    """An ISO 8601 time, or a date alone meaning through the end of that day (UTC): the console's
    date range picks days, and "until 1 December" includes 1 December."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is not None and isinstance(value, str) and _DATE_ONLY.match(value):
            moment += timedelta(days=1)
        return moment


class UntilFilter(django_filters.IsoDateTimeFilter):
    field_class = UntilField


class ActivityEventFilterSet(django_filters.FilterSet):
    """The audit log's filters, the same for the API (`GET /api/v1/activity`) and the console's
    Activity page."""

    q = django_filters.CharFilter(method="filter_q", max_length=200, label="Search", help_text="Words that each appear in the entry's action, object type, object id, actor or IP (case-insensitive).")
    action = django_filters.CharFilter(max_length=64)
    object_type = django_filters.CharFilter(max_length=64)
    object_id = django_filters.CharFilter(max_length=128)
    instance = django_filters.CharFilter(method="filter_instance", max_length=63, label="Instance", help_text="An instance id: the instance's entries and those recorded under it (its tasks, gateway policies, custom domain, deployment).")
    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains", max_length=254, label="Who", help_text="Part of the actor's label: a user's email, a token prefix, `system`.")
    actor_type = django_filters.ChoiceFilter(choices=ActorType.choices)
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", label="From", help_text="Entries at or after this ISO 8601 time (a date alone: that day's start, UTC).")
    until = UntilFilter(field_name="created_at", lookup_expr="lt", label="To", help_text="Entries before this ISO 8601 time (a date alone: through the end of that day, UTC).")

    class Meta:
        model = ActivityEvent
        fields = ["action", "object_type", "object_id", "actor_type"]

    def filter_q(self, queryset, name, value):
        """Any word of the search in what an entry shows: its action, object, actor or IP."""
        for word in value.split()[:8]:
            queryset = queryset.filter(
                Q(action__icontains=word)
                | Q(object_type__icontains=word)
                | Q(object_id__icontains=word)
                | Q(actor_label__icontains=word)
                | Q(ip_address__startswith=word)
            )
        return queryset

    def filter_instance(self, queryset, name, value):
        """What concerns one instance: the instance itself, and what the services record under its
        id (its tasks, custom domain, gateway policies, deployment: `data.instance_id`)."""
        return queryset.filter(Q(object_type="instance", object_id=value) | Q(data__instance_id=value))


class ApiTokenFilterSet(django_filters.FilterSet):
    revoked = BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)
    mode = django_filters.ChoiceFilter(choices=[("live", "live"), ("test", "test")])

    class Meta:
        model = ApiToken
        fields = ["mode"]
