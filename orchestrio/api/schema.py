"""OpenAPI: the error bodies of API.md, and the responses every endpoint documents by default.

Each operation gets 401/403 (authenticated endpoints), 404 (paths with a parameter), 413
(bodies), 422 (bodies and query strings) and 429 (rate-limited endpoints) without repeating them in every
`extend_schema`; state-specific errors (400, 402, 409, 502–504) are declared where they happen,
with the constants below.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in words a user can act on.")


class ValidationIssueSerializer(serializers.Serializer):
    loc = serializers.ListField(
        child=serializers.JSONField(), help_text='Where: e.g. ["body", "instance_id"] or ["query", "limit"].'
    )
    msg = serializers.CharField()
    type = serializers.CharField()


class ValidationErrorSerializer(serializers.Serializer):
    detail = ValidationIssueSerializer(many=True)


class PlanLimitErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    limit = serializers.CharField(help_text="Which limit: instances, running_instances, tokens, executions, …")
    plan = serializers.CharField(help_text="The tenant's current subscription plan.")


class ConflictErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    operation = serializers.JSONField(
        required=False, help_text="The unfinished operation (or task) that blocks this one, where it applies."
    )


def _error(serializer, description: str) -> OpenApiResponse:
    return OpenApiResponse(response=serializer, description=description)


ERR_400 = _error(ErrorSerializer, "A state precondition is not met.")
ERR_401 = _error(ErrorSerializer, "Token missing, malformed, unknown, expired or revoked.")
ERR_402 = _error(PlanLimitErrorSerializer, "A plan limit is reached, or the plan is too low for the feature.")
ERR_403 = _error(ErrorSerializer, "Authenticated but not allowed (role, token scope).")
ERR_404 = _error(ErrorSerializer, "No such object in this tenant.")
ERR_408 = _error(ErrorSerializer, "The wait timed out first.")
ERR_409 = _error(ConflictErrorSerializer, "Another operation is running, the name is taken, or an idempotency-key conflict.")
ERR_413 = _error(ErrorSerializer, "The request body is over the size limit (REQUEST_MAX_BODY_BYTES).")
ERR_422 = _error(ValidationErrorSerializer, "The request body or query fails validation.")
ERR_429 = _error(ErrorSerializer, "Rate limit exceeded; see Retry-After.")
ERR_429_LONG_POLL = _error(ErrorSerializer, "Rate limit exceeded, or too many open long polls for this token, its tenant or this server; see Retry-After.")
ERR_502 = _error(ErrorSerializer, "The instance (or Stripe) answered badly.")
ERR_503 = _error(ErrorSerializer, "A dependency is down or disabled.")
ERR_504 = _error(ErrorSerializer, "The instance (or Stripe) did not answer in time.")


def message_response(name: str, **fields) -> type[serializers.Serializer]:
    return inline_serializer(name=name, fields=fields)


def _empty_means_absent(parameter: dict) -> bool:
    """Query strings are read by django-filter, the paginator or a DRF serializer, and all three
    read an optional `?name=` as if it were not given (in a list parameter, it is an empty item)."""
    return parameter["in"] == "query" and not parameter.get("required") and parameter.get("schema", {}).get("type") != "array"


class AutoSchema(SpectacularAutoSchema):
    def _takes_query(self) -> bool:
        """Filters, pagination, or query parameters from `extend_schema` (serializers are exploded
        into query parameters): any of them can fail validation."""
        if self._get_filter_parameters() or self._get_pagination_parameters():
            return True
        return any(
            not isinstance(parameter, OpenApiParameter) or parameter.location == OpenApiParameter.QUERY
            for parameter in self.get_override_parameters()
        )

    def _get_parameters(self):
        return [
            {**parameter, "allowEmptyValue": True} if _empty_means_absent(parameter) else parameter
            for parameter in super()._get_parameters()
        ]

    def _is_public(self) -> bool:
        return not self.view.get_authenticators() or all(
            isinstance(permission, AllowAny) for permission in self.view.get_permissions()
        )

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        defaults: dict[str, OpenApiResponse] = {}
        if not self._is_public():
            defaults["401"] = ERR_401
            defaults["403"] = ERR_403
        if "{" in self.path:
            defaults["404"] = ERR_404
        takes_body = self.method in ("POST", "PUT", "PATCH")
        if takes_body:
            defaults["413"] = ERR_413
        if takes_body or self._takes_query():
            defaults["422"] = ERR_422
        view_rate = self.view.get_rate_class() if hasattr(self.view, "get_rate_class") else None
        if view_rate is not None:
            defaults["429"] = ERR_429
        for code, response in defaults.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return responses


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "orchestrio.auth.ApiTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ork_live_… or ork_test_…",
            "description": "An API token from the console's API tokens page or POST /api/v1/api-tokens.",
        }


class ConsoleSessionAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "orchestrio.auth.ConsoleSessionAuthentication"
    name = "consoleSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "The console's session (unsafe methods also need the X-CSRFToken header).",
        }
