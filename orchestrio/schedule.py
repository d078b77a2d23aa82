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
from django_rq.cron import DjangoCronScheduler
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
        PeriodicJob("orchestrio.jobs.trim_notifications", interval=3600),
        PeriodicJob("instances.jobs.health_sweep", interval=settings.HEALTH_CHECK_INTERVAL_SECONDS, timeout=600),
        PeriodicJob("instances.jobs.sample_stats", interval=settings.STATS_SAMPLE_SECONDS, timeout=120),
        PeriodicJob("instances.jobs.readiness_sweep", interval=settings.READINESS_SWEEP_SECONDS, timeout=120),
        PeriodicJob("tasks.jobs.poll_due_tasks", interval=settings.TASK_POLL_SWEEP_SECONDS, timeout=120),
        PeriodicJob("addons.jobs.poll_due_addon_operations", interval=settings.ADDONS_AWS_POLL_SECONDS, timeout=120),
        PeriodicJob("instances.jobs.reconcile", interval=settings.RECONCILER_INTERVAL_SECONDS, timeout=900),
        PeriodicJob("billing.jobs.flush_usage", interval=settings.USAGE_FLUSH_SECONDS, timeout=300),
        PeriodicJob("runtime.jobs.collect_agent_usage", interval=settings.AGENT_USAGE_SECONDS, timeout=300),
        PeriodicJob("gateway.jobs.flush_request_metrics", interval=settings.REQUEST_METRICS_FLUSH_SECONDS, timeout=300),
        PeriodicJob("gateway.jobs.sleep_idle_instances", interval=settings.IDLE_SWEEP_SECONDS, timeout=300),
        PeriodicJob("domains.jobs.check_custom_domains", interval=60, timeout=600),
        PeriodicJob("billing.jobs.retry_alerts", interval=30, timeout=300),
        PeriodicJob("addons.jobs.backup_sweep", interval=settings.ADDONS_BACKUP_SWEEP_SECONDS, timeout=300),
        PeriodicJob("functions.jobs.stop_idle_functions", interval=settings.FUNCTIONS_IDLE_SWEEP_SECONDS, timeout=120),
        PeriodicJob("functions.jobs.flush_function_metrics", interval=settings.FUNCTIONS_METRICS_FLUSH_SECONDS, timeout=120),
    ]


class Scheduler(DjangoCronScheduler):
    """django-rq's cron scheduler (RQ's CronScheduler checked against RQ_QUEUES), kept alive
    through Redis outages.

    RQ's `start()` is the loop; it ends on the first Redis error, which would leave the deployment
    without a reconciler exactly when one is needed. So a Redis error restarts it (with backoff):
    once Redis answers again the scheduler registers again and the reconciler re-enqueues whatever
    the outage left queued. A job whose enqueue failed is still due and goes out on the restart.
    In a non-main thread it leaves signal handling to the main thread.
    """

    first_backoff_seconds = 0.5
    max_backoff_seconds = 10.0

    stopping = False

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()

    def _request_stop(self, signum, frame):
        self.stopping = True  # a stop stays a stop even if deregistering then fails on Redis
        super()._request_stop(signum, frame)

    def start(self) -> None:
        backoff = self.first_backoff_seconds
        while True:
            started = time.monotonic()
            try:
                super().start()
                return  # stopped: a signal or Ctrl-C
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self.stopping:
                    return
                if time.monotonic() - started > self.max_backoff_seconds:
                    backoff = self.first_backoff_seconds  # it ran a while: a new outage
                self.log.warning("scheduler: Redis unavailable (%s); restarting in %.1fs", exc, backoff)
            try:
                time.sleep(backoff)
            except (KeyboardInterrupt, StopRequested):
                return
            backoff = min(backoff * 2, self.max_backoff_seconds)


def build_scheduler() -> Scheduler:
    # Our client (with its socket timeouts, so a Redis that stops answering raises instead of
    # hanging the loop); django-rq checks each job's queue is on the same server.
    scheduler = Scheduler(connection=get_redis(), logging_level=logging.INFO)
    for job in periodic_jobs():
        scheduler.register(
            import_string(job.func), queue_name="periodic", interval=job.interval, job_timeout=job.timeout, result_ttl=600
        )
    return scheduler
