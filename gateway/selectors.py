"""Reads of the gateway's request metrics (gateway/traffic.py writes them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from . import histogram, traffic
from .models import RequestMetrics

# window → (how far back, the points' resolution in seconds)
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), RequestMetrics.MINUTE),
    "24h": (timedelta(hours=24), RequestMetrics.MINUTE),
    "30d": (timedelta(days=30), RequestMetrics.HOUR),
}
HEALTH_WINDOW = timedelta(minutes=5)
DEGRADED_ERROR_RATE = 0.05
UNHEALTHY_ERROR_RATE = 0.5


def _blank() -> dict:
    return {"count": 0, "errors_upstream": 0, "errors_gateway": 0, "histogram": histogram.empty()}


def _summary(point: dict) -> dict:
    errors = point["errors_upstream"] + point["errors_gateway"]
    hist = point["histogram"]
    return {
        "count": point["count"], "errors": errors, "errors_upstream": point["errors_upstream"], "errors_gateway": point["errors_gateway"],
        "error_rate": round(errors / point["count"], 4) if point["count"] else 0.0,
        "p50_ms": _round(histogram.percentile(hist, 0.5)), "p95_ms": _round(histogram.percentile(hist, 0.95)),
        "p99_ms": _round(histogram.percentile(hist, 0.99)),
    }  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _add(target: dict, count: int, errors_upstream: int, errors_gateway: int, hist) -> None:
    target["count"] += count
    target["errors_upstream"] += errors_upstream
    target["errors_gateway"] += errors_gateway
    histogram.add_into(target["histogram"], hist)


def _points(instance, *, since: datetime, resolution: int, unflushed: dict[int, dict]) -> dict[datetime, dict]:
    """The instance's points since `since` at `resolution`, the unflushed counts folded in."""
    points: dict[datetime, dict] = {}
    rows = RequestMetrics.objects.filter(instance=instance, resolution=resolution, start__gte=since - timedelta(seconds=resolution - 1))
    for row in rows.values_list("start", "count", "errors_upstream", "errors_gateway", "histogram"):
        _add(points.setdefault(row[0], _blank()), *row[1:])
    for epoch, point in unflushed.items():
        start = datetime.fromtimestamp(epoch - epoch % resolution, tz=UTC)
        if start + timedelta(seconds=resolution) > since:
            _add(points.setdefault(start, _blank()), point["c"], point["eu"], point["eg"], point["h"])
    return points


def app_health(instance, *, now: datetime | None = None, unflushed: dict[int, dict] | None = None) -> dict:
    """`healthy|degraded|unhealthy|unknown` from the last 5 minutes of proxied traffic: error rate
    above 50 % is unhealthy, above 5 % degraded, else healthy. Without traffic in those minutes,
    the health check's status (`healthy|unhealthy|unknown`)."""
    now = now or timezone.now()
    unflushed = traffic.pending(instance.pk) if unflushed is None else unflushed
    recent = _blank()
    for point in _points(instance, since=now - HEALTH_WINDOW, resolution=RequestMetrics.MINUTE, unflushed=unflushed).values():
        _add(recent, point["count"], point["errors_upstream"], point["errors_gateway"], point["histogram"])
    if not recent["count"]:
        return {"app_health": instance.health_status, "app_health_source": "health_check", "recent_count": 0, "recent_error_rate": 0.0}
    rate = (recent["errors_upstream"] + recent["errors_gateway"]) / recent["count"]
    status = "unhealthy" if rate > UNHEALTHY_ERROR_RATE else "degraded" if rate > DEGRADED_ERROR_RATE else "healthy"
    return {"app_health": status, "app_health_source": "traffic", "recent_count": recent["count"], "recent_error_rate": round(rate, 4)}


def request_metrics(instance, *, window: str = "1h", now: datetime | None = None) -> dict:
    """The instance's request metrics over `window` (one of WINDOWS): a point per minute (hour
    for 30d) that had traffic, oldest first, the window's totals, and `app_health`."""
    now = now or timezone.now()
    span, resolution = WINDOWS[window]
    unflushed = traffic.pending(instance.pk)
    points = _points(instance, since=now - span, resolution=resolution, unflushed=unflushed)
    total = _blank()
    for point in points.values():
        _add(total, point["count"], point["errors_upstream"], point["errors_gateway"], point["histogram"])
    return {
        "instance_id": instance.instance_id, "window": window, "resolution_seconds": resolution,
        "points": [{"start": start, **_summary(point)} for start, point in sorted(points.items())],
        "totals": _summary(total), **app_health(instance, now=now, unflushed=unflushed),
    }  # fmt: skip
