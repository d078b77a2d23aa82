import django_filters

from .api.filters import BooleanFilter
from .choices import ActorType
from .models import ActivityEvent, ApiToken


class ActivityEventFilterSet(django_filters.FilterSet):
    action = django_filters.CharFilter()
    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    actor_type = django_filters.ChoiceFilter(choices=ActorType.choices)
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ActivityEvent
        fields = ["action", "object_type", "object_id", "actor_type"]


class ApiTokenFilterSet(django_filters.FilterSet):
    revoked = BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)
    mode = django_filters.ChoiceFilter(choices=[("live", "live"), ("test", "test")])

    class Meta:
        model = ApiToken
        fields = ["mode"]
