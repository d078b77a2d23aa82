"""Prometheus metrics at `/metrics` (METRICS_ENABLED; see docs/operations.md, "Metrics").

Three sources, so that each figure is right with several web processes on several hosts and
workers in processes of their own:

- HTTP requests are observed by `MetricsMiddleware` in the web process that served them. Under
  gunicorn with several workers, prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`,
  one directory per host) adds up the host's processes; `gunicorn.conf.py` empties it at start.
- Periodic jobs (the health sweep, the reconciler) run in workers, which serve no HTTP: they write
  their figures to one Redis hash (`record_*`), read back at scrape time.
- Fleet state (queues, operations, tasks, instances) is read from Redis and the database at
  scrape time, by `FleetCollector`; the queues' series are django-rq's own (`RQCollector`).

The last two are global: every web process reports the same values for them.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
import time

import redis
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DatabaseError
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_rq.contrib.prometheus import RQCollector
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from .api.exceptions import json_errors
from .errors import Forbidden, NotFound, Unauthorized
from .redis import get_redis

logger = logging.getLogger(__name__)

# --- HTTP requests (per web process) ------------------------------------------------------------

# Long polls (`…/wait`) and the tunnel's streams last minutes; the top buckets are for them.
REQUEST_SECONDS = Histogram(
    "orchestrio_http_request_duration_seconds",
    "Time to the response's headers, by method, URL pattern and status class.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=None,
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Not resolved to a URL pattern: 404s, static files, and requests for an instance's own hostname
# (routed by Host before URL resolution).
UNMATCHED = "unmatched"


def route_label(request) -> str:
    """The URL pattern's name (`api:instance-detail`), or its route when it has none: never the
    raw path, so the label has as many values as there are patterns."""
    match = request.resolver_match
    if match is None:
        return UNMATCHED
    return match.view_name if match.url_name else match.route


class MetricsMiddleware:
    """Times every request. First in MIDDLEWARE, so the time includes the other middleware; not
    installed at all unless METRICS_ENABLED."""

    def __init__(self, get_response):
        if not settings.METRICS_ENABLED:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        REQUEST_SECONDS.labels(
            request.method if request.method in METHODS else "other",
            route_label(request),
            f"{response.status_code // 100}xx",
        ).observe(time.perf_counter() - started)
        return response


# --- Figures from periodic jobs (in Redis) ------------------------------------------------------

JOB_FIGURES_KEY = "orchestrio:metrics"
CORRECTION_PREFIX = "reconciler_corrections:"


def _record(update: dict[str, float], increments: dict[str, int] | None = None) -> None:
    """Write a job's figures; a Redis outage costs the figures, never the job."""
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hset(JOB_FIGURES_KEY, mapping=update)
        for field, amount in (increments or {}).items():
            pipe.hincrby(JOB_FIGURES_KEY, field, amount)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("metrics: could not record %s: %s", ", ".join(update), exc)


def record_health_sweep(*, seconds: float, instances: int) -> None:
    _record({"health_sweep_seconds": seconds, "health_sweep_instances": instances, "health_sweep_finished_at": time.time()})


def record_reconcile(summary: dict) -> None:
    """A finished reconciler run: its corrections by kind (a list counts its items) and errors."""
    corrections = {
        CORRECTION_PREFIX + kind: len(value) if isinstance(value, list) else int(value)
        for kind, value in summary.items()
        if kind != "errors"
    }
    _record(
        {"reconcile_finished_at": time.time()},
        {**corrections, "reconciler_errors": len(summary.get("errors", []))},
    )


# --- Fleet state, read at scrape time -----------------------------------------------------------


class FleetCollector:
    """Queues from Redis (django-rq's collector), the periodic jobs' figures, and operations,
    tasks and instances from the database (one aggregate query each). A source that does not answer reports
    `orchestrio_<source>_up 0` and leaves its series out; the scrape still succeeds."""

    def describe(self):
        return []  # registering must not query anything

    def collect(self):
        yield from self._from_redis()
        yield from self._from_database()

    def _from_redis(self):
        """The queues (django-rq's RQCollector: `rq_jobs` by queue and status, `rq_workers`, and
        each worker's job counters) and the periodic jobs' figures."""
        up = GaugeMetricFamily("orchestrio_redis_up", "1 when Redis answered this scrape.")
        try:
            queues = list(RQCollector().collect())
            raw = get_redis().hgetall(JOB_FIGURES_KEY)
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from queues
        yield from self._job_figures({key.decode(): float(value) for key, value in raw.items()})

    @staticmethod
    def _job_figures(figures: dict[str, float]):
        gauges = [
            ("health_sweep_seconds", "orchestrio_health_sweep_duration_seconds", "How long the last health sweep took."),
            ("health_sweep_instances", "orchestrio_health_sweep_instances", "Running instances the last health sweep probed."),
            ("health_sweep_finished_at", "orchestrio_health_sweep_last_success_timestamp_seconds", "When the last health sweep finished (Unix time)."),
            ("reconcile_finished_at", "orchestrio_reconciler_last_success_timestamp_seconds", "When the last reconciler run finished (Unix time)."),
        ]
        for field, name, documentation in gauges:
            if field in figures:
                yield GaugeMetricFamily(name, documentation, value=figures[field])
        corrections = CounterMetricFamily(
            "orchestrio_reconciler_corrections", "Corrections the reconciler made, by kind.", labels=["kind"]
        )
        for field, value in sorted(figures.items()):
            if field.startswith(CORRECTION_PREFIX):
                corrections.add_metric([field[len(CORRECTION_PREFIX):]], value)
        yield corrections
        if "reconciler_errors" in figures:
            yield CounterMetricFamily(
                "orchestrio_reconciler_errors", "Provider regions the reconciler could not list.", value=figures["reconciler_errors"]
            )

    def _from_database(self):
        """The figures the apps read from the database (`register_database_figures`), after all
        their queries answered: `orchestrio_database_up` is 0 when one did not."""
        up = GaugeMetricFamily("orchestrio_database_up", "1 when the database answered this scrape.")
        try:
            families = [family for func in _database_figures for family in func()]
        except DatabaseError as exc:
            logger.warning("metrics: database unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


# Functions returning metric families read from the database, registered by the apps in their
# AppConfig.ready (the instances app: operations, instances; tasks: tasks). Each reads all it
# needs before it returns (a DatabaseError is raised then, not while yielding).
_database_figures: list = []


def register_database_figures(func) -> None:
    if func not in _database_figures:
        _database_figures.append(func)


# --- The endpoint -------------------------------------------------------------------------------


@functools.cache
def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every process of this host, from their files
    else:
        registry.register(REQUEST_SECONDS)
    registry.register(FleetCollector())
    return registry


def _address_allowed(address: str | None) -> bool:
    allowed = settings.METRICS_ALLOWED_IPS
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(entry, strict=False) for entry in allowed)


def _token_matches(header: str) -> bool:
    expected = f"Bearer {settings.METRICS_TOKEN}".encode()
    return hmac.compare_digest(header.encode(), expected)


@never_cache
@require_GET
@json_errors
def metrics_view(request):
    """The Prometheus text format. 404 unless METRICS_ENABLED; the socket's address must be in
    METRICS_ALLOWED_IPS (when set), and `Authorization: Bearer <METRICS_TOKEN>` (when set)."""
    if not settings.METRICS_ENABLED:
        raise NotFound("not found")
    if not _address_allowed(request.META.get("REMOTE_ADDR")):
        raise Forbidden("this address may not read metrics")
    if settings.METRICS_TOKEN and not _token_matches(request.headers.get("Authorization", "")):
        raise Unauthorized("metrics need Authorization: Bearer <METRICS_TOKEN>", challenge="Bearer")
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
