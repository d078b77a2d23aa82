"""Rate limits: fixed-window counters in Redis (the real one, or the embedded one).

Each endpoint keeps its own counter per caller (token, console user, or IP when anonymous) at the
rate of its class (`settings.RATE_LIMITS`); on top, every tenant caller has a per-minute ceiling
from its subscription plan. The tighter of the two is reported in `X-RateLimit-Limit` and
`X-RateLimit-Remaining`; a limited request gets 429 with `Retry-After`.

All the counters a request needs are read and incremented in one pipeline (one round trip to
Redis). As in django-ratelimit, whose windows these are, each caller's window is offset by a hash
of its key so that windows do not all end at once.

Failed authentication is counted per source address, with one counter shared by every surface
that takes credentials (the API, the tunnel, the gateway, an instance's hostname): past
`RATE_LIMITS["auth_failure"]`, further bad credentials from that source get 429 instead of 401.
Only failures touch that counter, and only after the credentials were checked: a valid token is
never refused for its neighbours' failures (a NAT'd office shares one address), and a valid
request costs no extra round trip for it.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from dataclasses import dataclass

import redis
from django.conf import settings
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from orchestrio.redis import get_redis
from orchestrio.tenancy import Principal, client_ip

logger = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class Usage:
    limit: int
    remaining: int
    reset: int  # seconds until the window ends
    limited: bool


@dataclass(frozen=True)
class Counter:
    group: str  # what is counted (an endpoint, the plan ceiling, the gateway…)
    key: str  # for whom (token:…, user:…, ip:…)
    rate: str  # "60/m"
    increment: bool = True  # False: only read the count


def _parse_rate(rate: str) -> tuple[int, int]:
    count, _, unit = rate.partition("/")
    return int(count), PERIODS[unit[-1:] or "s"] * int(unit[:-1] or 1)


def count(counters: list[Counter]) -> list[Usage | None]:
    """The usage of each counter after this request, in one Redis round trip. Fails open: with
    Redis unreachable (or RATELIMIT_ENABLE off) every usage is None and nothing is limited."""
    if not counters or not settings.RATELIMIT_ENABLE:
        return [None] * len(counters)
    now = int(time.time())
    windows = []
    try:
        pipe = get_redis().pipeline(transaction=False)
        for counter in counters:
            limit, period = _parse_rate(counter.rate)
            end = now - now % period + zlib.crc32(counter.key.encode()) % period
            if end <= now:
                end += period
            name = "orchestrio:rl:" + hashlib.sha256(f"{counter.group}|{counter.rate}|{counter.key}|{end}".encode()).hexdigest()
            if counter.increment:
                pipe.incr(name)
                pipe.expireat(name, end + 1)
            else:
                pipe.get(name)
            windows.append((limit, end))
        replies = iter(pipe.execute())
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Fail open: a Redis outage degrades rate limiting, it does not take the API down.
        logger.warning("rate limit counters unavailable: %s", exc)
        return [None] * len(counters)
    usages = []
    for counter, (limit, end) in zip(counters, windows):
        used = int(next(replies) or 0)
        if counter.increment:
            next(replies)  # EXPIREAT's reply
        usages.append(Usage(limit=limit, remaining=max(0, limit - used), reset=max(1, end - now), limited=used > limit))
    return usages


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


def caller_key(request, principal: Principal | None = None) -> str:
    principal = principal if principal is not None else request.auth
    if isinstance(principal, Principal):
        return principal.key
    return f"ip:{client_ip(request) or 'unknown'}"


class EndpointRateThrottle(BaseThrottle):
    """The endpoint's counter for the caller, and the plan's per-minute ceiling for a tenant
    caller, in one round trip."""

    def __init__(self) -> None:
        self._wait: int | None = None

    @staticmethod
    def counters(request, view, principal: Principal | None) -> list[Counter]:
        rate_class = view.get_rate_class() if hasattr(view, "get_rate_class") else None
        if rate_class is None:
            return []
        key = caller_key(request, principal)
        action = getattr(view, "action", None) or request.method.lower()
        counters = [Counter(group=f"ep:{view.__class__.__name__}.{action}", key=key, rate=settings.RATE_LIMITS[rate_class])]
        if isinstance(principal, Principal):
            per_minute = principal.tenant.plan.api_requests_per_minute
            if per_minute:
                counters.append(Counter(group="plan", key=key, rate=f"{per_minute}/m"))
        return counters

    def allow_request(self, request, view) -> bool:
        usages = count(self.counters(request, view, request.auth))
        for usage in usages:
            attach(request, usage)
        limited = [u for u in usages if u is not None and u.limited]
        if limited:
            self._wait = max(u.reset for u in limited)
            return False
        return True

    def wait(self) -> int | None:
        return self._wait


AUTH_FAILURE_DETAIL = "too many failed authentication attempts from this address"


def auth_failure(request) -> Usage | None:
    """Count one failed authentication (credentials presented and refused: malformed, unknown,
    expired, revoked, or not accepted here) against the request's source, on any surface, in one
    round trip. Returns the usage when the source is now past its limit: the caller answers 429
    (`AUTH_FAILURE_DETAIL`, `Retry-After: usage.reset`) instead of 401. Never called for valid
    credentials."""
    key = f"ip:{client_ip(request) or 'unknown'}"
    usage = count([Counter(group="auth-failure", key=key, rate=settings.RATE_LIMITS["auth_failure"])])[0]
    attach(request, usage)
    return usage if usage is not None and usage.limited else None

