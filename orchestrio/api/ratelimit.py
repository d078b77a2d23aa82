"""Rate limits with django-ratelimit's counters in the shared cache (Redis, or the embedded one).

Each endpoint keeps its own counter per caller (token, console user, or IP when anonymous) at the
rate of its class (`settings.RATE_LIMITS`); on top, every tenant caller has a per-minute ceiling
from its subscription plan. The tighter of the two is reported in `X-RateLimit-Limit` and
`X-RateLimit-Remaining`; a limited request gets 429 with `Retry-After`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from orchestrio.tenancy import Principal, client_ip

logger = logging.getLogger(__name__)


@dataclass
class Usage:
    limit: int
    remaining: int
    reset: int  # seconds until the window ends
    limited: bool


def _usage(request, *, group: str, key: str, rate: str, increment: bool = True) -> Usage | None:
    try:
        usage = get_usage(request, group=group, key=lambda _g, _r: key, rate=rate, increment=increment)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Fail open: a Redis outage degrades rate limiting, it does not take the API down.
        logger.warning("rate limit counters unavailable: %s", exc)
        return None
    if usage is None:
        return None
    return Usage(
        limit=usage["limit"],
        remaining=max(0, usage["limit"] - usage["count"]),
        reset=max(1, usage["time_left"]),
        limited=usage["should_limit"],
    )


def attach(request, usage: Usage | None) -> None:
    """Remember the tightest usage seen for this request (for the response headers)."""
    if usage is None:
        return
    request = getattr(request, "_request", request)
    current: Usage | None = getattr(request, "ratelimit_usage", None)
    if current is None or usage.limited or (not current.limited and usage.remaining < current.remaining):
        request.ratelimit_usage = usage


class RateLimited(Throttled):
    def __init__(self, wait: int, reason: str) -> None:
        super().__init__(wait=wait)
        self.reason = reason


def caller_key(request) -> str:
    principal = request.auth
    if isinstance(principal, Principal):
        return principal.ratelimit_key
    return f"ip:{client_ip(request) or 'unknown'}"


class EndpointRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: int | None = None

    def allow_request(self, request, view) -> bool:
        rate_class = view.get_rate_class() if hasattr(view, "get_rate_class") else None
        if rate_class is None:
            return True
        key = caller_key(request)
        action = getattr(view, "action", None) or request.method.lower()
        usages = [
            _usage(request, group=f"ep:{view.__class__.__name__}.{action}", key=key, rate=settings.RATE_LIMITS[rate_class])
        ]
        principal = request.auth
        if isinstance(principal, Principal):
            per_minute = principal.tenant.plan.api_requests_per_minute
            if per_minute:
                usages.append(_usage(request, group="plan", key=key, rate=f"{per_minute}/m"))
        for usage in usages:
            attach(request, usage)
        limited = [u for u in usages if u is not None and u.limited]
        if limited:
            self._wait = max(u.reset for u in limited)
            return False
        return True

    def wait(self) -> int | None:
        return self._wait


def _auth_failure_usage(request, *, increment: bool) -> Usage | None:
    return _usage(
        request,
        group="auth-failure",
        key=f"ip:{client_ip(request) or 'unknown'}",
        rate=settings.RATE_LIMITS["auth_failure"],
        increment=increment,
    )


def auth_failures_exceeded(request) -> Usage | None:
    """The usage when this IP has failed authentication too often in the current window, else None."""
    usage = _auth_failure_usage(request, increment=False)
    return usage if usage is not None and usage.remaining <= 0 else None


def record_auth_failure(request) -> None:
    attach(request, _auth_failure_usage(request, increment=True))
