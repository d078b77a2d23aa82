"""Base classes every API view derives from: tenant scoping, rate classes, idempotency."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework.views import APIView

from orchestrio import roles
from orchestrio.errors import NotFound
from orchestrio.tenancy import Principal

from . import idempotency
from .parsers import JSONParser


def idempotent(handler):
    """Mark a POST handler as honouring `Idempotency-Key`."""
    handler.idempotent = True
    return handler


class ApiViewMixin:
    # Rate class for every action of the view (`write`, `lifecycle`, `domain_read`, `read`,
    # `public`), or per action in `rate_classes`; default: `read` for safe methods, else `write`.
    rate_class: str | None = None
    rate_classes: dict[str, str | None] = {}
    # The capability each action needs (orchestrio/roles.py): reads `read`, writes `operate`
    # unless declared here, by action (a plain APIView: by method name).
    capabilities: dict[str, roles.Declaration] = {}
    allows_scoped_tokens = False
    parser_classes = [JSONParser]

    @property
    def principal(self) -> Principal:
        return self.request.auth

    def check_route_objects(self) -> None:
        """Raise NotFound when the URL names an object this tenant does not have (the role
        check calls it before refusing). Views whose paths name objects override it."""

    def get_rate_class(self) -> str | None:
        action = getattr(self, "action", None)
        if action in self.rate_classes:
            return self.rate_classes[action]
        if self.rate_class is not None:
            return self.rate_class
        return "read" if self.request.method in SAFE_METHODS else "write"

    def _handler(self):
        action = getattr(self, "action", None)
        if action:
            return getattr(self, action, None)
        return getattr(self, self.request.method.lower(), None)

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if any("\x00" in str(value) for value in kwargs.values()):
            raise NotFound("no such object: ids contain no NUL characters")  # and PostgreSQL cannot compare one
        if request.method == "POST" and getattr(self._handler(), "idempotent", False):
            if isinstance(request.auth, Principal):
                request._request.idempotency_record = idempotency.begin(request, request.auth)

    def finalize_response(self, request, response, *args: Any, **kwargs: Any):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(request._request, "idempotency_record", None)
        if record is not None:
            request._request.idempotency_record = None
            idempotency.finish(record, response)
        return response


class PublicApiView(ApiViewMixin, APIView):
    """No authentication; rate-limited per IP."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    rate_class = "public"


class TenantApiView(ApiViewMixin, APIView):
    pass


class TenantScopedViewSet(ApiViewMixin, viewsets.GenericViewSet):
    """Every query is filtered by the caller's tenant; another tenant's object is 404."""

    not_found_label = "object"

    def check_route_objects(self) -> None:
        if (self.lookup_url_kwarg or self.lookup_field) in self.kwargs:
            self.get_object()

    def get_queryset(self):
        return super().get_queryset().filter(tenant=self.principal.tenant)

    def get_object(self):
        queryset = self.get_queryset()
        lookup_url_kwarg = self.lookup_url_kwarg or self.lookup_field
        value = self.kwargs[lookup_url_kwarg]
        try:
            obj = queryset.get(**{self.lookup_field: value})
        except (queryset.model.DoesNotExist, ValueError, TypeError):
            raise NotFound(f"no {self.not_found_label} {value!r} in this tenant") from None
        self.check_object_permissions(self.request, obj)
        return obj
