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
        """As DRF's, except that a first page with fewer rows than the limit is the whole list, so
        its count is known without the COUNT query (most lists, like the blueprints, fit in one
        page). Other pages count first, as DRF does: an offset beyond the count reads nothing (nor
        sends the database an offset it cannot take)."""
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        if self.offset == 0:
            rows = list(queryset[: self.limit])
            self.count = len(rows) if len(rows) < self.limit else self.get_count(queryset)
        else:
            self.count = self.get_count(queryset)
            rows = [] if self.offset >= self.count else list(queryset[self.offset : self.offset + self.limit])
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        return rows
