import django_filters

from .choices import RequestKind, RequestStatus
from .models import FleetRequest


class FleetRequestFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=RequestStatus.choices, help_text="repeat for several")
    kind = django_filters.ChoiceFilter(choices=RequestKind.choices)

    class Meta:
        model = FleetRequest
        fields = ["status", "kind"]
