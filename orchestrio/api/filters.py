from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend

from .exceptions import QueryValidationError


class FilterBackend(DjangoFilterBackend):
    """django-filter, with invalid query values reported as 422 at `["query", name]`."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            raise QueryValidationError(dict(filterset.errors))
        return filterset.qs
