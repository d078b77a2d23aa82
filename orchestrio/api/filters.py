from __future__ import annotations

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend

from .exceptions import QueryValidationError


class FilterBackend(DjangoFilterBackend):
    """django-filter, with invalid query values reported as 422 at `["query", name]`."""

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is None or not any(name in request.query_params for name in filterset_class.base_filters):
            # A filterset filters only by the parameters it names: with none given it would build
            # and validate its form (3 ms for the instance list) to change nothing.
            return queryset
        filterset = filterset_class(**self.get_filterset_kwargs(request, queryset, view))
        if not filterset.is_valid():
            raise QueryValidationError(dict(filterset.errors))
        return filterset.qs


class BooleanQueryField(forms.Field):
    """`true` or `false` (empty: not given). django-filter's own field reads any other value as
    "no filter", so `?revoked=yes` silently listed everything."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("must be true or false", code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = BooleanQueryField
