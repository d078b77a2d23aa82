"""`GET /health`: public, not rate-limited; 200 when every check is ok, else 503 with reasons."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rq import Worker

from .redis import get_redis

logger = logging.getLogger(__name__)


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure is reported, none is raised
        logger.warning("health: database check failed: %s", exc)
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def check_redis() -> str:
    try:
        get_redis().ping()
    except Exception as exc:  # noqa: BLE001
        logger.warning("health: redis check failed: %s", exc)
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def check_workers(redis_status: str) -> str:
    if redis_status != "ok":
        return "unknown: redis unavailable"
    try:
        workers = Worker.all(connection=get_redis())
    except Exception as exc:  # noqa: BLE001
        return f"unknown: {type(exc).__name__}"
    now = time.time()
    alive = [w for w in workers if w.last_heartbeat is None or now - w.last_heartbeat.timestamp() < 600]
    if not alive:
        return "no workers running"
    return "ok"


# Facts the apps above the core add to /health without making it fail (registered in their
# AppConfig.ready): name -> function returning a JSON-able value.
_details: dict[str, Callable[[], object]] = {}


def register_detail(name: str, func: Callable[[], object]) -> None:
    _details[name] = func


def health_details() -> dict[str, object]:
    return {name: func() for name, func in _details.items()}


def health_report() -> tuple[bool, dict[str, str]]:
    redis_status = check_redis()
    checks = {
        "api": "ok",
        "database": check_database(),
        "redis": redis_status,
        "workers": check_workers(redis_status),
    }
    return all(value == "ok" for value in checks.values()), checks


@never_cache
@require_GET
def health_view(request):
    healthy, checks = health_report()
    return JsonResponse(
        {"status": "healthy" if healthy else "degraded", "checks": checks, **health_details()},
        status=200 if healthy else 503,
    )
