"""Base classes every API view derives from: tenant scoping, rate classes, idempotency."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.db.models import QuerySet

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


@dataclass(frozen=True)
class Parent:
    """The object a nested route's URL names (`/instances/{instance_id}/tasks`: the instance),
    resolved once per request (`TenantScopedViewSet.parent`) under the same tenant and
    token-instance scope as the route's own objects, else 404. `field` is the nested model's
    foreign key to it."""

    queryset: QuerySet
    url_kwarg: str
    lookup_field: str
    field: str
    label: str
    tenant_field: str = "tenant"
    instance_scope_field: str | None = None


def scoped(queryset: QuerySet, principal: Principal, *, tenant_field: str, instance_scope_field: str | None) -> QuerySet:
    """`queryset` narrowed to the principal's tenant and, for a token scoped to one instance, to
    that instance: `instance_scope_field` is the lookup of the instance id (`instance_id` on an
    instance, `instance__instance_id` through a foreign key, where the instance must also be the
    live one with that id). With no `instance_scope_field` the model belongs to no instance."""
    queryset = queryset.filter(**{tenant_field: principal.tenant})
    scope = principal.instance_scope
    if scope is not None and instance_scope_field is not None:
        queryset = queryset.filter(**{instance_scope_field: scope})
        relation, _, _ = instance_scope_field.rpartition("__")
        if relation:
            queryset = queryset.filter(**{f"{relation}__destroyed_at__isnull": True})
    return queryset


class TenantScopedViewSet(ApiViewMixin, viewsets.GenericViewSet):
    """Every query is scoped from declarations: `queryset` filtered by the caller's tenant
    (`tenant_field`) and, for a token scoped to one instance, by that instance
    (`instance_scope_field`, see `scoped`); a nested route (`parent`) resolves its parent once
    and lists only its objects. Another tenant's object, or one outside the token's instance, is
    404. Views with a visibility rule of their own override `scope_queryset`."""

    not_found_label = "object"
    tenant_field = "tenant"
    instance_scope_field: str | None = None
    parent: Parent | None = None

    def check_route_objects(self) -> None:
        if self.parent is not None:
            self.parent_object  # noqa: B018 (resolving it is the check)
        if (self.lookup_url_kwarg or self.lookup_field) in self.kwargs:
            self.get_object()

    @cached_property
    def parent_object(self):
        """The nested route's parent, in the caller's scope, else NotFound: read once per request."""
        parent = self.parent
        value = self.kwargs[parent.url_kwarg]
        queryset = scoped(parent.queryset.all(), self.principal, tenant_field=parent.tenant_field, instance_scope_field=parent.instance_scope_field)
        found = queryset.filter(**{parent.lookup_field: value}).first()
        if found is None:
            raise NotFound(f"no {parent.label} {value!r} in this tenant")
        return found

    def scope_queryset(self, queryset: QuerySet) -> QuerySet:
        return scoped(queryset, self.principal, tenant_field=self.tenant_field, instance_scope_field=self.instance_scope_field)

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular's schema: no request to scope by
            return queryset.none()
        queryset = self.scope_queryset(queryset)
        if self.parent is not None:
            queryset = queryset.filter(**{self.parent.field: self.parent_object})
        return queryset

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
