"""Long-lived requests (long polls today; log and task-output follows, wake-on-request later): how
many may be open at once, and by whom.

The web servers are threaded (waitress in `make run`, gunicorn's gthread workers in production):
a request holds one thread of a fixed pool for as long as it runs, and a long poll runs for as
long as it waits. Unbounded, a few callers' waits take every thread and `/health`, the console
and every other tenant queue behind them. So a long-lived request runs inside
`long_poll_slot(principal, kind)`, which admits it only while

- its principal (the API token, or the console user) holds fewer than LONG_POLL_MAX_PER_PRINCIPAL,
- its tenant holds fewer than LONG_POLL_MAX_PER_TENANT, both across every web process, and
- this web process holds fewer than its server's threads minus LONG_POLL_RESERVED_THREADS: those
  threads are never given to long-lived requests, so the rest is always served;

else it raises TooManyRequests (429 with Retry-After). Every kind counts against the same caps:
they bound threads, which every kind holds alike; `kind` names the request in the refusal.
`long_lived_slot` is the same for a caller that is not a Principal (a gateway caller).

The principal's and the tenant's slots are sorted sets in Redis (member: one slot; score: when
its lease ends, on Redis's own clock), checked and taken by one Lua script, so that racing
requests in any number of processes and threads never pass a cap together. A holder renews its
lease while it waits (`Slot.renew`), so the slots of a process that is killed are free again
within LONG_POLL_LEASE_SECONDS. The process's own count is a counter under a lock. With Redis
unreachable only the process's cap applies (logged): the reserve still holds.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

from .errors import TooManyRequests
from .redis import get_redis
from .tenancy import Principal

logger = logging.getLogger(__name__)

# A refused caller may try again this soon: slots free up as waits end, which nobody can predict.
RETRY_AFTER_SECONDS = 5

# KEYS: the sets to take a slot in; ARGV: the slot, the lease (ms), then each set's cap. Returns 0
# when taken, else the (1-based) index of the first set that is full.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now_ms + lease, ARGV[1])
  redis.call('PEXPIRE', key, lease)
end
return 0
"""
# KEYS: the sets holding the slot; ARGV: the slot, the lease (ms).
_RENEW = """
local now = redis.call('TIME')
local until_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, until_ms, ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return 0
"""

_lock = threading.Lock()
_held_here = 0
_server_threads: int | None = None


def set_server_threads(threads: int | None) -> None:
    """Called by the web server that runs this process (`manage.py serve`, gunicorn.conf.py) with
    the number of threads it serves requests on; None (the default: the test client, runserver)
    means unknown, and then only the principal and tenant caps apply."""
    global _server_threads
    _server_threads = threads
    capacity = process_capacity()
    if capacity == 0:
        logger.warning(
            "long polls are refused in this process: it serves %s threads and LONG_POLL_RESERVED_THREADS keeps %s for other requests",
            threads, settings.LONG_POLL_RESERVED_THREADS,
        )  # fmt: skip


def process_capacity() -> int | None:
    """How many long-lived requests this process may hold at once, or None when unbounded."""
    if _server_threads is None:
        return None
    return max(0, _server_threads - settings.LONG_POLL_RESERVED_THREADS)


class Slot:
    """One admitted long-lived request. `renew()` as it waits (cheap: it talks to Redis at most
    every third of a lease)."""

    def __init__(self, member: str, keys: list[str]) -> None:
        self.member = member
        self.keys = keys
        self._renewed = time.monotonic()

    def renew(self) -> None:
        lease = settings.LONG_POLL_LEASE_SECONDS
        if not self.keys or time.monotonic() - self._renewed < lease / 3:
            return
        try:
            _script(_RENEW)(keys=self.keys, args=[self.member, lease * 1000])
            self._renewed = time.monotonic()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("long-poll slot not renewed: %s", exc)

    def release(self) -> None:
        if not self.keys:
            return
        try:
            pipe = get_redis().pipeline(transaction=False)
            for key in self.keys:
                pipe.zrem(key, self.member)
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("long-poll slot not released (its lease will end it): %s", exc)


def _script(source: str):
    """The script, run by its SHA1 (EVALSHA; loaded on first use by each Redis)."""
    return get_redis().register_script(source)


def _server_full(capacity: int, kind: str) -> TooManyRequests:
    return TooManyRequests(
        f"this server is holding as many long polls and streams as it allows ({capacity}); its other threads are kept "
        f"for everyone's other requests. Retry this {kind} after {RETRY_AFTER_SECONDS} seconds",
        retry_after=RETRY_AFTER_SECONDS,
    )


def _check_here(kind: str) -> None:
    """Refuse at once when this process is full (before anything is taken elsewhere)."""
    capacity = process_capacity()
    with _lock:
        if capacity is not None and _held_here >= capacity:
            raise _server_full(capacity, kind)


def _take_here(kind: str) -> None:
    global _held_here
    capacity = process_capacity()
    with _lock:
        if capacity is not None and _held_here >= capacity:
            raise _server_full(capacity, kind)
        _held_here += 1


def _release_here() -> None:
    global _held_here
    with _lock:
        _held_here -= 1


def _take_shared(tenant_id: str, caller_key: str, caller_label: str, kind: str) -> Slot:
    # One hash tag per tenant: both sets live on the same Redis Cluster slot, as the script needs.
    keys = [f"orchestrio:lp:{{{tenant_id}}}:caller:{caller_key}", f"orchestrio:lp:{{{tenant_id}}}:tenant"]
    caps = [settings.LONG_POLL_MAX_PER_PRINCIPAL, settings.LONG_POLL_MAX_PER_TENANT]
    member = uuid.uuid4().hex
    try:
        full = _script(_TAKE)(keys=keys, args=[member, settings.LONG_POLL_LEASE_SECONDS * 1000, *caps])
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("long-poll caps per caller and tenant unavailable (only this process's applies): %s", exc)
        return Slot(member, [])
    if full == 1:
        raise TooManyRequests(
            f"{caller_label} already holds {caps[0]} open long polls and streams, the most allowed at once; "
            f"close one, or retry this {kind} after {RETRY_AFTER_SECONDS} seconds",
            retry_after=RETRY_AFTER_SECONDS,
        )
    if full == 2:
        raise TooManyRequests(
            f"tenant {tenant_id} already holds {caps[1]} open long polls and streams across its tokens and users, "
            f"the most allowed at once; retry this {kind} after {RETRY_AFTER_SECONDS} seconds",
            retry_after=RETRY_AFTER_SECONDS,
        )
    return Slot(member, keys)


@contextmanager
def long_lived_slot(*, tenant_id: str, caller_key: str, caller_label: str, kind: str) -> Iterator[Slot]:
    """Hold one long-lived request's slot for the block, or raise TooManyRequests when a cap is
    reached. The caller is whoever the caps count per (`Principal.key` in the API; a gateway
    caller's rate-limit key, say, for a proxied stream); `caller_label` and `kind` ("wait", "log
    follow", …) are what the refusal says."""
    # This process is counted only once the shared slots are taken, so a request that a shared
    # cap refuses is never counted here, even for a moment (a concurrent request could take that
    # moment's count for a full server). Rechecked as it is taken: two may race past the first look.
    _check_here(kind)
    slot = _take_shared(tenant_id, caller_key, caller_label, kind)
    try:
        _take_here(kind)
    except TooManyRequests:
        slot.release()
        raise
    try:
        yield slot
    finally:
        slot.release()
        _release_here()


_held_by_tenant: dict[str, int] = {}


def proxy_share() -> int | None:
    """How many proxied requests of one tenant this process serves at once: PROXY_MAX_PER_TENANT,
    or by default half of what long-lived requests may hold (so two tenants' slow instances
    cannot take every thread between them either); None when the server's threads are unknown."""
    capacity = process_capacity()
    if settings.PROXY_MAX_PER_TENANT:
        return settings.PROXY_MAX_PER_TENANT if capacity is None else min(settings.PROXY_MAX_PER_TENANT, capacity)
    return None if capacity is None else max(1, capacity // 2)


def proxy_slot(*, tenant_id: str) -> Callable[[], None]:
    """Admit one proxied request (gateway, tunnel, an instance's hostname) to a tenant's instance,
    which holds this thread for as long as the instance takes to answer: it counts against this
    process's long-lived capacity (the reserve stays free) and against the tenant's share of it.
    No network round trip: the threads being protected are this process's. Returns the release
    (call it when the response is closed; calling it again does nothing), or raises
    TooManyRequests."""
    global _held_here
    capacity, share = process_capacity(), proxy_share()
    with _lock:
        held = _held_by_tenant.get(tenant_id, 0)
        if share is not None and held >= share:
            raise TooManyRequests(
                f"{held} requests to this tenant's instances are already in progress on this server, the most it serves at "
                f"once for one tenant; retry after {RETRY_AFTER_SECONDS} seconds",
                retry_after=RETRY_AFTER_SECONDS,
            )
        if capacity is not None and _held_here >= capacity:
            raise _server_full(capacity, "request")
        _held_here += 1
        _held_by_tenant[tenant_id] = held + 1
    released = False

    def release() -> None:
        nonlocal released
        global _held_here
        with _lock:
            if released:
                return
            released = True
            _held_here -= 1
            left = _held_by_tenant.get(tenant_id, 1) - 1
            if left > 0:
                _held_by_tenant[tenant_id] = left
            else:
                _held_by_tenant.pop(tenant_id, None)

    return release


def long_poll_slot(principal: Principal, kind: str):
    """`long_lived_slot` for an API request: counted per principal (the token, or the console
    user) and its tenant."""
    label = "this API token" if principal.token is not None else "you (this console user)"
    return long_lived_slot(tenant_id=principal.tenant.pk, caller_key=principal.key, caller_label=label, kind=kind)
