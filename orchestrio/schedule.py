"""Periodic jobs. One scheduler process (`manage.py scheduler`, or a thread of `manage.py serve`
in the embedded mode) enqueues each on the `periodic` queue at its interval; workers run them.

Delayed work (retries with backoff, DNS re-checks) is never scheduled in Redis: it is a database
row with a due time that one of these periodic jobs picks up, so it survives a Redis restart.
Every periodic job is safe to run twice at once (each takes a lock or works row by row).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from django.conf import settings
from django.utils.module_loading import import_string
from rq.cron import CronScheduler
from rq.exceptions import StopRequested

from .redis import get_redis

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    func: str  # dotted path
    interval: int  # seconds
    timeout: int = 300


def periodic_jobs() -> list[PeriodicJob]:
    return [
        PeriodicJob("orchestrio.jobs.purge_idempotency_keys", interval=3600),
        PeriodicJob("instances.jobs.health_sweep", interval=settings.HEALTH_CHECK_INTERVAL_SECONDS, timeout=600),
        PeriodicJob("instances.jobs.readiness_sweep", interval=settings.READINESS_SWEEP_SECONDS, timeout=120),
        PeriodicJob("tasks.jobs.poll_due_tasks", interval=settings.TASK_POLL_SWEEP_SECONDS, timeout=120),
        PeriodicJob("instances.jobs.reconcile", interval=settings.RECONCILER_INTERVAL_SECONDS, timeout=900),
        PeriodicJob("billing.jobs.flush_usage", interval=settings.USAGE_FLUSH_SECONDS, timeout=300),
        PeriodicJob("domains.jobs.check_custom_domains", interval=60, timeout=600),
        PeriodicJob("billing.jobs.retry_alerts", interval=30, timeout=300),
    ]


class Scheduler(CronScheduler):
    """RQ's cron scheduler, kept alive through Redis outages.

    RQ's own loop ends on the first Redis error, which would leave the deployment without a
    reconciler exactly when one is needed. This loop waits (with backoff) and carries on, so once
    Redis answers again the reconciler re-enqueues whatever the outage left queued. In a non-main
    thread it leaves signal handling to the main thread.
    """

    max_backoff_seconds = 10.0

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()

    def start(self) -> None:
        self.log.info("CronScheduler %s: starting...", self.name)
        self._install_signal_handlers()
        backoff = 0.5
        born = False
        try:
            while True:
                try:
                    if not born:
                        self.register_birth()
                        born = True
                    if self.enqueue_jobs():
                        self.save()
                    self.heartbeat()
                    backoff = 0.5
                    sleep_time = self.calculate_sleep_interval()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    self.log.warning("scheduler: Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                    sleep_time, backoff = backoff, min(backoff * 2, self.max_backoff_seconds)
                    born = False  # a restarted Redis has forgotten this scheduler
                if sleep_time > 0:
                    time.sleep(sleep_time)
        except (KeyboardInterrupt, StopRequested):
            self.log.info("CronScheduler %s: stopping", self.name)
        finally:
            try:
                self.register_death()
            except (redis.ConnectionError, redis.TimeoutError):
                pass


def build_scheduler() -> Scheduler:
    scheduler = Scheduler(connection=get_redis(), logging_level=logging.INFO)
    for job in periodic_jobs():
        scheduler.register(
            import_string(job.func), queue_name="periodic", interval=job.interval, job_timeout=job.timeout, result_ttl=600
        )
    return scheduler
