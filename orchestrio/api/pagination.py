from __future__ import annotations

from rest_framework import pagination

from .exceptions import QueryValidationError


def _query_int(request, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryValidationError({name: [f"{name} must be an integer"]}) from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise QueryValidationError({name: [f"{name} must be {bounds}"]})
    return value


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """`?limit=` (default 50, max 200) and `?offset=`; out-of-range values are 422, not ignored."""

    default_limit = 50
    max_limit = 200

    def get_limit(self, request):
        return _query_int(request, self.limit_query_param, self.default_limit, minimum=1, maximum=self.max_limit)

    def get_offset(self, request):
        return _query_int(request, self.offset_query_param, 0, minimum=0)

    def paginate_queryset(self, queryset, request, view=None):
        """As DRF's, except that a page with fewer rows than the limit is the last one, so the
        count is known from it without a COUNT query (most lists, like the blueprints, fit in one
        page). An empty page beyond the start still counts, to report the total."""
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        rows = list(queryset[self.offset : self.offset + self.limit])
        if len(rows) < self.limit and (rows or self.offset == 0):
            self.count = self.offset + len(rows)
        else:
            self.count = self.get_count(queryset)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        return rows

    def get_schema_operation_parameters(self, view):
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "default": 0},
        }
        return [
            {**parameter, "schema": {**parameter["schema"], **bounds.get(parameter["name"], {})}}
            for parameter in super().get_schema_operation_parameters(view)
        ]
