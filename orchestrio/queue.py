"""Enqueueing background jobs: the one place that talks to RQ on the producing side.

Jobs are enqueued after the transaction that recorded their work commits. If Redis is down at
that moment the work is not lost: it stays recorded in the database as `queued`, and the
reconciler (a periodic job) enqueues whatever has no live job once Redis answers again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import django_rq
import redis
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue(func: Callable | str, *args: Any, queue: str = "default", job_id: str | None = None, timeout: int | None = None, **kwargs: Any) -> str | None:
    """Enqueue now; returns the job id, or None when Redis is unreachable (logged)."""
    try:
        job = django_rq.get_queue(queue).enqueue(
            func, *args, job_id=job_id, job_timeout=timeout, result_ttl=3600, failure_ttl=7 * 86400, **kwargs
        )
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("queue unavailable; %s stays recorded for the reconciler: %s", job_id or func, exc)
        return None
    return job.id


def enqueue_on_commit(func: Callable | str, *args: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: enqueue(func, *args, **kwargs), robust=True)


def _job_status(job_id: str):
    """RQ's status of the job; "" when RQ has no such job, None when Redis is unreachable."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        return Job.fetch(job_id, connection=django_rq.get_connection("default")).get_status(refresh=True)
    except NoSuchJobError:
        return ""
    except (redis.ConnectionError, redis.TimeoutError):
        return None


def job_is_alive(job_id: str) -> bool | None:
    """Whether RQ still has this job queued or started (None when Redis is unreachable)."""
    from rq.job import JobStatus

    status = _job_status(job_id)
    return None if status is None else status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def job_is_waiting(job_id: str) -> bool | None:
    """Whether RQ still has this job waiting for a worker (None when Redis is unreachable). Unlike
    `job_is_alive`, a started job is not waiting: if its worker died, RQ reports it started for a
    long while, so a caller that must tell a dead job from a live one reads the job's lease."""
    from rq.job import JobStatus

    status = _job_status(job_id)
    return None if status is None else status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


LEASE_PREFIX = "orchestrio:lease:"


@contextmanager
def lease(name: str, ttl: int):
    """Hold `name` in Redis while the block runs, refreshed every ttl/3 seconds by a thread.

    The reconciler reads leases: a running job whose lease expired has died (its worker was
    killed), so its work is picked up again. If Redis is unreachable the block still runs.
    """
    from .redis import get_redis

    key = LEASE_PREFIX + name
    stop = threading.Event()
    client = get_redis()

    def refresh() -> None:
        while not stop.wait(max(ttl / 3, 0.2)):
            try:
                client.set(key, "1", ex=ttl)
            except (redis.ConnectionError, redis.TimeoutError):
                pass

    try:
        client.set(key, "1", ex=ttl)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("could not take lease %s: %s", name, exc)
    thread = threading.Thread(target=refresh, name=f"lease-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        try:
            client.delete(key)
        except (redis.ConnectionError, redis.TimeoutError):
            pass


def lease_alive(name: str) -> bool | None:
    from .redis import get_redis

    try:
        return bool(get_redis().exists(LEASE_PREFIX + name))
    except (redis.ConnectionError, redis.TimeoutError):
        return None


@contextmanager
def singleton(name: str, ttl: int):
    """Run the block only if no other process is running it (a Redis lock); yields whether it got it."""
    from .redis import get_redis

    lock = get_redis().lock(f"orchestrio:singleton:{name}", timeout=ttl, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - expired meanwhile: another run may hold it now
                pass
