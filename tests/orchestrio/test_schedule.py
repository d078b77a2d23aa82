"""The scheduler is RQ's cron loop (through django-rq), restarted when Redis goes away: it
carries on once Redis answers again instead of ending. (The same with real processes and a real
Redis restart: tests/resilience/test_redis_outage.py.)"""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from rq import Queue
from rq.exceptions import StopRequested

from orchestrio import redis as embedded
from orchestrio.schedule import Scheduler, build_scheduler, periodic_jobs


def tick() -> None:
    """The job the test schedules (never run: the test only counts enqueues)."""


class _StoppableScheduler(Scheduler):
    first_backoff_seconds = 0.02
    max_backoff_seconds = 0.05

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop = threading.Event()

    def calculate_sleep_interval(self) -> float:
        return 0.02

    def heartbeat(self) -> None:
        super().heartbeat()
        if self.stop.is_set():
            raise StopRequested  # what RQ's signal handler raises


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def embedded_server():
    if not settings.EMBEDDED_REDIS:
        pytest.skip("REDIS_URL is set: the outage is simulated on the embedded Redis")
    server = embedded._embedded()
    yield server
    server.connected = True


def test_the_scheduler_rides_out_a_redis_outage(embedded_server):
    connection = embedded.get_redis()
    queue = Queue("periodic", connection=connection)
    queue.empty()
    scheduler = _StoppableScheduler(connection=connection)
    scheduler.register(tick, queue_name="periodic", interval=1)
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    _wait_for(lambda: queue.count == 1)  # an interval job goes out at once

    embedded_server.connected = False  # Redis goes away: RQ's own loop would end here
    time.sleep(1.3)  # the job falls due meanwhile, and its enqueue fails
    assert thread.is_alive()
    embedded_server.connected = True
    _wait_for(lambda: queue.count == 2)
    assert scheduler.name.encode() in connection.zrange("rq:cron_schedulers", 0, -1)  # registered again

    scheduler.stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert scheduler.name.encode() not in connection.zrange("rq:cron_schedulers", 0, -1)  # a clean stop deregisters
    queue.empty()


def test_build_scheduler_registers_every_periodic_job():
    scheduler = build_scheduler()
    assert [(job.func_name, job.interval, job.queue_name) for job in scheduler.get_jobs()] == [
        (job.func, job.interval, "periodic") for job in periodic_jobs()
    ]


def test_a_stop_during_an_outage_stops(embedded_server):
    # SIGTERM while Redis is down: RQ's loop deregisters in its `finally`, which fails on Redis;
    # that failure must not turn the stop into a restart.
    scheduler = Scheduler(connection=embedded.get_redis())
    scheduler.register(tick, queue_name="periodic", interval=60)

    def heartbeat():
        embedded_server.connected = False
        scheduler._request_stop(15, None)

    scheduler.heartbeat = heartbeat
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    embedded_server.connected = True
    Queue("periodic", connection=embedded.get_redis()).empty()
