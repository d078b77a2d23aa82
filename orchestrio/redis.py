"""The one place that decides which Redis the process talks to.

With `REDIS_URL` set, everything (queue, cache, rate-limit counters, state notifications) uses
that server. Without it, the *embedded mode*: one in-memory Redis (fakeredis) shared by every
thread of this process. That is why `manage.py serve` runs the web server, the worker and the
scheduler in one process: the queue is only visible inside it. It is meant for development and
demos; it loses queued jobs when the process exits (operations they belonged to are finished by
the reconciler on the next start).
"""

from __future__ import annotations

import threading

import fakeredis
import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_lock = threading.Lock()
_embedded_server: fakeredis.FakeServer | None = None
_embedded_clients: dict[type, redis.Redis] = {}
_real_clients: dict[str, redis.Redis] = {}


def _embedded() -> fakeredis.FakeServer:
    global _embedded_server
    with _lock:
        if _embedded_server is None:
            _embedded_server = fakeredis.FakeServer()
        return _embedded_server


def _embedded_client(cls: type) -> redis.Redis:
    """One client per process and class: building one costs more than most commands."""
    client = _embedded_clients.get(cls)
    if client is None:
        server = _embedded()
        with _lock:
            client = _embedded_clients.get(cls)
            if client is None:
                client = _embedded_clients[cls] = cls(server=server)
    return client


def get_redis() -> redis.Redis:
    """A client for the configured Redis (bytes responses, as RQ expects)."""
    url = settings.REDIS_URL
    if not url:
        return _embedded_client(fakeredis.FakeStrictRedis)
    client = _real_clients.get(url)
    if client is None:
        # Under the lock: a second client built by a racing thread would be dropped, and a
        # dropped client closes its pool's sockets (Redis.__del__) under whoever still uses them.
        with _lock:
            client = _real_clients.get(url)
            if client is None:
                client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)
                _real_clients[url] = client
    return client


class _EmbeddedCacheClient(RedisCacheClient):
    def get_client(self, key=None, *, write=False):
        return _embedded_client(fakeredis.FakeRedis)


class EmbeddedRedisCache(RedisCache):
    """Django's Redis cache backend on the embedded in-memory Redis.

    Shared by every thread of the process, which in the embedded mode is the whole deployment, so
    rate-limit counters are exact there.
    """

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _EmbeddedCacheClient

    def get_master_client(self) -> redis.Redis:
        """The client django-rq uses for a queue configured with `USE_REDIS_CACHE` (the interface
        it looks for on a cache backend, as django-redis-cache offers): the same one as
        `get_redis()`, with bytes responses as RQ expects."""
        return _embedded_client(fakeredis.FakeStrictRedis)
