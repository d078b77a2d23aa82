"""Long-polling for an instance state without holding a database connection while waiting.

The waiter subscribes to the instance's Redis channel (state changes are published on commit),
checks the database once, closes its connection, and sleeps on the subscription; each
notification (or a periodic safety re-check, in case a message was missed or Redis is down)
costs one short query. The request's thread is the only resource held, which is what a threaded
WSGI server's concurrency model needs for any request; how many threads waits may hold is capped
(orchestrio/longpoll.py, used by the view), and `heartbeat` (the slot's renewal) is called every
few seconds while it waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from django.db import connection

from orchestrio.redis import get_redis

from .choices import InstanceState
from .lifecycle import channel
from .models import Instance

logger = logging.getLogger(__name__)
RECHECK_SECONDS = 5.0
DEAD_ENDS = (InstanceState.ERROR, InstanceState.DESTROYED)


def _state(pk: int) -> str:
    state = Instance.objects.filter(pk=pk).values_list("state", flat=True).first()
    if not connection.in_atomic_block:
        connection.close()  # do not hold a connection while waiting
    return state


def wait_for_state(pk: int, target: str | frozenset[str], timeout: float, *, heartbeat: Callable[[], None] | None = None) -> tuple[str, bool]:
    """(current state, reached). Returns early when the instance reaches a dead end instead.
    `target` may be a set of states: reached when the instance is in any of them."""
    targets = frozenset({target}) if isinstance(target, str) else frozenset(target)
    deadline = time.monotonic() + timeout
    pubsub = None
    try:
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(pk))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("wait falls back to polling: %s", exc)
        pubsub = None
    try:
        state = _state(pk)
        while True:
            if state in targets:
                return state, True
            if state in DEAD_ENDS:
                return state, False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return state, False
            if heartbeat is not None:
                heartbeat()
            pause = min(remaining, RECHECK_SECONDS)
            if pubsub is not None:
                try:
                    pubsub.get_message(timeout=pause)  # a state change (or the safety re-check) wakes us
                except (redis.ConnectionError, redis.TimeoutError):
                    pubsub = None
            else:
                time.sleep(min(pause, 1.0))
            state = _state(pk)
    finally:
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001
                pass
