import django_filters

from .choices import TaskStatus
from .models import Task


class TaskFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TaskStatus.choices)
    operation_code = django_filters.CharFilter()

    class Meta:
        model = Task
        fields = ["status", "operation_code"]
