"""The API's error table (docs: API.md "Errors") as exceptions.

Every error answer raises a subclass of `ApiError` carrying the status, the body's `detail`, the
whole body and the response; 402 adds `limit` and `plan`, 409 the running `operation`, 422 the
validation `errors`, 429 and 503 `retry_after`. A request that never got an answer raises
`TransportError`.
"""

from __future__ import annotations

from typing import Any

import httpx


class OrchestrioError(Exception):
    """Base of everything the client raises."""


class TransportError(OrchestrioError):
    """No answer: connection refused, DNS, TLS, or the request timed out."""


class ApiError(OrchestrioError):
    status: int = 0

    def __init__(self, response: httpx.Response, body: Any) -> None:
        self.response = response
        self.status = response.status_code
        self.body = body
        self.detail = body.get("detail") if isinstance(body, dict) else (body or response.reason_phrase)
        request = response.request
        super().__init__(f"{self.status} {request.method} {request.url.path}: {self.message}")

    @property
    def message(self) -> str:
        if isinstance(self.detail, list):
            return "; ".join(_issue(issue) for issue in self.detail) or "validation failed"
        return str(self.detail)


class BadRequest(ApiError):
    """400: a state precondition is not met (stop a stopped instance)."""


class AuthenticationError(ApiError):
    """401: token missing, malformed, unknown, expired or revoked."""


class PlanLimitError(ApiError):
    """402: a plan limit is reached, or the plan is too low for the feature."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        super().__init__(response, body)
        body = body if isinstance(body, dict) else {}
        self.limit: str | None = body.get("limit")
        self.plan: str | None = body.get("plan")


class PermissionDenied(ApiError):
    """403: authenticated but not allowed (role, token scope)."""


class NotFound(ApiError):
    """404: no such object in this tenant (another tenant's objects are 404 too)."""


class WaitTimeout(ApiError):
    """408: a long poll (`instances_wait_retrieve`) ended before the state was reached."""


class Conflict(ApiError):
    """409: another operation is running, a name is taken, or an idempotency-key conflict."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        super().__init__(response, body)
        self.operation: dict | None = body.get("operation") if isinstance(body, dict) else None


class PayloadTooLarge(ApiError):
    """413: the body is over the size limit."""


class ValidationError(ApiError):
    """422: the body or query failed validation; `errors` lists `{loc, msg, type}`."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        super().__init__(response, body)
        self.errors: list[dict] = self.detail if isinstance(self.detail, list) else []


class RateLimited(ApiError):
    """429: rate limit (or a long-poll/stream cap); `retry_after` seconds."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        super().__init__(response, body)
        self.retry_after: float | None = retry_after(response)


class ServerError(ApiError):
    """5xx: the control plane failed (a 500 is a bug: report it)."""


class BadGateway(ServerError):
    """502: the instance (or Stripe) answered badly."""


class ServiceUnavailable(ServerError):
    """503: a dependency is down or disabled (queue, billing not configured)."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        super().__init__(response, body)
        self.retry_after: float | None = retry_after(response)


class GatewayTimeout(ServerError):
    """504: the instance (or Stripe) did not answer in time."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: AuthenticationError,
    402: PlanLimitError,
    403: PermissionDenied,
    404: NotFound,
    408: WaitTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    502: BadGateway,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


def error_for(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    cls = BY_STATUS.get(response.status_code) or (ServerError if response.status_code >= 500 else ApiError)
    return cls(response, body)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        from datetime import datetime, timezone

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _issue(issue: Any) -> str:
    if not isinstance(issue, dict):
        return str(issue)
    loc = ".".join(str(part) for part in issue.get("loc", []) if part != "body")
    return f"{loc}: {issue.get('msg', '')}" if loc else str(issue.get("msg", ""))
