"""The one place where errors become HTTP responses (API.md's error table): DRF's exception
handler for the API, and `json_errors` for the plain Django views (proxies, webhooks, the edge's
TLS ask), both through `domain_error_parts`."""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from orchestrio.errors import DomainError
from orchestrio.http import carries_secret

logger = logging.getLogger("orchestrio.api")


class QueryValidationError(exceptions.ValidationError):
    """A validation error about the query string (→ 422 with `loc` starting at "query")."""


class IdempotentReplay(Exception):
    """Carries the stored response of an earlier request with the same Idempotency-Key."""

    def __init__(self, status_code: int, body: Any, *, secret: bool = False) -> None:
        self.status_code = status_code
        self.body = body
        self.secret = secret  # the first response carried a secret: so does its replay


def flatten_errors(detail: Any, loc: list, default_type: str = "value_error") -> list[dict[str, Any]]:
    """DRF's nested error detail → a flat list of {loc, msg, type}."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            sub = loc if key in ("non_field_errors", "__all__") else [*loc, key]
            out.extend(flatten_errors(value, sub, default_type))
        return out
    if isinstance(detail, list):
        # A list of messages for one field, or a list of per-item errors (ListField / many=True).
        if all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail):
            return [
                {"loc": loc, "msg": str(item), "type": getattr(item, "code", None) or default_type}
                for item in detail
            ]
        out = []
        for index, item in enumerate(detail):
            if item:
                out.extend(flatten_errors(item, [*loc, index], default_type))
        return out
    return [{"loc": loc, "msg": str(detail), "type": getattr(detail, "code", None) or default_type}]


def validation_response(errors: list[dict[str, Any]]) -> Response:
    return Response({"detail": errors}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)


def domain_error_parts(exc: DomainError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A domain error's status, body and headers (API.md's error table)."""
    if exc.status_code >= 500:
        logger.warning("upstream failure: %s", exc.detail)
    return exc.status_code, exc.body(), exc.headers()


def domain_error_response(exc: DomainError) -> JsonResponse:
    status_code, body, headers = domain_error_parts(exc)
    return JsonResponse(body, status=status_code, headers=headers)


def json_errors(view):
    """For a plain Django view: a domain error it raises answers as the API would."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except DomainError as exc:
            return domain_error_response(exc)

    return wrapped


def exception_handler(exc: Exception, context: dict) -> Response:
    headers: dict[str, str] = {}

    if isinstance(exc, IdempotentReplay):
        response = Response(exc.body, status=exc.status_code, headers={"Idempotent-Replayed": "true"})
        return carries_secret(response) if exc.secret else response

    if isinstance(exc, DomainError):
        status_code, body, headers = domain_error_parts(exc)
        return Response(body, status=status_code, headers=headers)

    if isinstance(exc, QueryValidationError):
        return validation_response(flatten_errors(exc.detail, ["query"]))
    if isinstance(exc, exceptions.ValidationError):
        return validation_response(flatten_errors(exc.detail, ["body"]))
    if isinstance(exc, exceptions.ParseError):
        return validation_response([{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}])

    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if str(exc) else None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        request = context.get("request")
        view = context.get("view")
        if request is not None and view is not None:
            # Bad credentials were counted where they were refused (orchestrio.auth); missing ones
            # guess nothing and are not counted.
            header = view.get_authenticate_header(request)
            if header:
                headers["WWW-Authenticate"] = header
        # Always 401 (DRF would turn it into 403 when no authenticator offers a header).
        return Response({"detail": str(exc.detail)}, status=status.HTTP_401_UNAUTHORIZED, headers=headers)

    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(max(1, int(exc.wait)))
        detail = exc.detail
        if isinstance(exc, exceptions.Throttled):
            reason = getattr(exc, "reason", "rate limit exceeded")
            detail = f"{reason}; retry after {headers.get('Retry-After', 'a few')} seconds"
        if not isinstance(detail, str):
            detail = str(detail)
        return Response({"detail": detail}, status=exc.status_code, headers=headers)

    response = database_or_queue_error_response(exc)
    if response is not None:
        return response

    logger.exception("unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "API")
    return Response({"detail": "internal error; it has been logged"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def database_or_queue_error_response(exc: Exception) -> Response | None:
    """An unreachable database or Redis is a 503 with a reason, never a 500 page."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable: %s", exc)
        return Response({"detail": "database unavailable; retry shortly"}, status=503, headers={"Retry-After": "5"})
    if isinstance(exc, DatabaseError) and "connection" in str(exc).lower():
        logger.error("database connection error: %s", exc)
        return Response({"detail": "database unavailable; retry shortly"}, status=503, headers={"Retry-After": "5"})
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        logger.error("redis unavailable: %s", exc)
        return Response({"detail": "queue unavailable; retry shortly"}, status=503, headers={"Retry-After": "5"})
    return None
