"""The domain exception family. Services (and the plain views: proxies, webhooks) raise these;
`orchestrio.api.exceptions.domain_error_parts` turns each into the API contract's status, body and
headers — for DRF's exception handler and, through `json_errors`, for plain Django views — and
the console turns them into messages. Nothing else maps errors to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400
    default_detail = "The request cannot be performed."

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        self.extra = extra
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(DomainError):
    """Input refused before any rule applies (a webhook whose signature does not verify)."""

    status_code = 400


class InvalidState(DomainError):
    """A state precondition is not met (stop a stopped instance)."""

    status_code = 400


class PlanLimitReached(DomainError):
    status_code = 402
    default_detail = "Your plan's limit is reached."

    def __init__(self, detail: str, *, limit: str, plan: str, **extra: Any) -> None:
        super().__init__(detail, limit=limit, plan=plan, **extra)


class Unauthorized(DomainError):
    """Credentials missing or refused where DRF's authentication does not run (the proxies)."""

    status_code = 401
    default_detail = "Authentication credentials were not provided or are not valid."

    def __init__(self, detail: str | None = None, *, challenge: str) -> None:
        super().__init__(detail)
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class Forbidden(DomainError):
    status_code = 403
    default_detail = "You are not allowed to do this."


class NotFound(DomainError):
    status_code = 404
    default_detail = "Not found."


class Conflict(DomainError):
    status_code = 409
    default_detail = "Conflict."


class TooManyRequests(DomainError):
    """Too many at once (open long polls), not too many per minute (the rate limits): 429."""

    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RequestTimeout(DomainError):
    """A wait ran out before its condition held (→ 408)."""

    status_code = 408


class PayloadTooLarge(DomainError):
    status_code = 413


class ValidationFailed(DomainError):
    """Input that passed the serializer but fails a rule only the service knows (→ 422)."""

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]] | str, *, field: str | None = None) -> None:
        if isinstance(errors, str):
            errors = [{"loc": ["body", field] if field else ["body"], "msg": errors, "type": "value_error"}]
        self.errors = errors
        super().__init__(errors[0]["msg"] if errors else "invalid input")

    def body(self) -> dict[str, Any]:
        return {"detail": self.errors}


class UpstreamError(DomainError):
    """The instance (or Stripe) answered badly."""

    status_code = 502
    default_detail = "The upstream service answered with an error."


class UpstreamTimeout(DomainError):
    status_code = 504
    default_detail = "The upstream service did not answer in time."


class ServiceUnavailable(DomainError):
    """A dependency is down or disabled (queue, billing not configured)."""

    status_code = 503
    default_detail = "A dependency of this request is unavailable."
