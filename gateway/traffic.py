"""Request metrics without a database write per proxied request (docs/observability.md,
"Request metrics").

Per request, when the proxy is done with it (`Meter.finish`, in `proxy.forward`'s close path), ONE
Redis pipeline of two or three `HINCRBY` on one hash, `PENDING`: the request count, the error
count (if it failed) and the latency's histogram bucket, in fields named
`<minute epoch>|<instance pk>|<c|eu|eg|h<bucket>>`. The latency is the upstream's time to first
byte: from the gateway starting to forward to the instance's response headers (or to the failure)
— the instance's own time plus the connection, not the caller's download speed.

A periodic job (`flush`, every REQUEST_METRICS_FLUSH_SECONDS) renames `PENDING` to a batch key —
atomic, so an increment lands either in the batch or in the fresh `PENDING`, never in between —
then folds the batch into `RequestMetrics` minute and hour rows and the instance's
`RequestMetricsTotal`, recording the batch id in the same transaction, and deletes the batch. A
flush interrupted at any point is finished by the next: a batch whose id is recorded is only
deleted (never counted twice), a batch key left in Redis is found again (SCAN). With the embedded
queue the hash is in the process's memory (fakeredis): stopping it loses at most the last flush
window. A Redis outage drops the counts of the requests made during it (logged), never a request.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from instances.models import Instance
from orchestrio.queue import singleton
from orchestrio.redis import get_redis

from . import histogram
from .models import RequestMetrics, RequestMetricsFlush, RequestMetricsTotal

logger = logging.getLogger(__name__)

PENDING = "orchestrio:traffic:pending"
# instance pk → the unix time of its last proxied request (written in the same pipeline as the
# counts: no extra round trip). The idle sweep reads it (gateway/wake.py); the flushed
# RequestMetricsTotal.last_request_at stands in for it when Redis lost it.
LAST_SEEN = "orchestrio:traffic:last-seen"
# A request is also noted when it starts (so the idle sweep never puts an instance to sleep under
# a request it is answering), at most this often per instance and web process: one HSET.
LAST_SEEN_START_EVERY_SECONDS = 5.0
_started_noted: dict[int, float] = {}
_started_lock = threading.Lock()
BATCH_PREFIX = "orchestrio:traffic:batch:"
MINUTE_RETENTION = timedelta(hours=24)
HOUR_RETENTION = timedelta(days=30)
FLUSH_RECORD_RETENTION = timedelta(days=2)


def record(instance_pk: int, *, ms: float, upstream_error: bool = False, gateway_error: bool = False, at: float | None = None) -> None:
    """Count one proxied request and note it as the instance's last traffic (one Redis round
    trip). Never raises for Redis."""
    now = time.time() if at is None else at
    prefix = f"{int(now // 60) * 60}|{instance_pk}|"
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hset(LAST_SEEN, str(instance_pk), str(int(now)))
        pipe.hincrby(PENDING, prefix + "c", 1)
        if gateway_error:
            pipe.hincrby(PENDING, prefix + "eg", 1)
        elif upstream_error:
            pipe.hincrby(PENDING, prefix + "eu", 1)
        pipe.hincrby(PENDING, f"{prefix}h{histogram.bucket_for(ms)}", 1)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("request metrics unavailable; a request to instance %s not counted: %s", instance_pk, exc)


class Meter:
    """One proxied request's figures, recorded once when it is finished."""

    __slots__ = ("instance_pk", "started", "first_byte", "status", "failed", "done")

    def __init__(self, instance_pk: int):
        self.instance_pk = instance_pk
        self.started = time.perf_counter()
        self.first_byte: float | None = None
        self.status = 0
        self.failed = False
        self.done = False

    def headers(self, status: int) -> None:
        self.first_byte = time.perf_counter()
        self.status = status

    def fail(self) -> None:
        """The gateway's own failure: no answer (502/504), or a stream that broke."""
        self.failed = True

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        end = self.first_byte if self.first_byte is not None else time.perf_counter()
        record(self.instance_pk, ms=(end - self.started) * 1000, upstream_error=self.status >= 500, gateway_error=self.failed)


def note_start(instance_pk: int) -> None:
    """A proxied request to the instance begins: note it as traffic now (throttled per process;
    the request's end is noted again with its counts). Never raises for Redis."""
    now = time.time()
    with _started_lock:
        if now - _started_noted.get(instance_pk, 0.0) < LAST_SEEN_START_EVERY_SECONDS:
            return
        _started_noted[instance_pk] = now
        if len(_started_noted) > 100_000:  # a bound on what a process remembers
            _started_noted.clear()
    try:
        get_redis().hset(LAST_SEEN, str(instance_pk), str(int(now)))
    except redis.RedisError as exc:
        logger.warning("last traffic of instance %s not noted: %s", instance_pk, exc)


def last_seen(instance_pks: list[int]) -> dict[int, datetime]:
    """When each instance last had a proxied request, as far as Redis knows ({} when it is down)."""
    if not instance_pks:
        return {}
    try:
        values = get_redis().hmget(LAST_SEEN, [str(pk) for pk in instance_pks])
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("last traffic unavailable (the flushed metrics stand in): %s", exc)
        return {}
    out = {}
    for pk, value in zip(instance_pks, values):
        if value is not None:
            try:
                out[pk] = datetime.fromtimestamp(int(value), tz=UTC)
            except ValueError:
                continue
    return out


# --- reading what is not flushed yet -----------------------------------------------------------


def _parse(field: bytes | str) -> tuple[int, int, str]:
    text = field.decode() if isinstance(field, bytes) else field
    minute, pk, kind = text.split("|")
    return int(minute), int(pk), kind


def _decode(key) -> str:
    return key.decode() if isinstance(key, bytes) else key


def pending(instance_pk: int) -> dict[int, dict]:
    """The instance's counts not flushed yet, by minute epoch: `{"c", "eu", "eg", "h"}`."""
    client = get_redis()
    out: dict[int, dict] = {}
    try:
        keys = [PENDING, *(_decode(k) for k in client.scan_iter(match=BATCH_PREFIX + "*", count=100))]
        for key in keys:
            for field, value in client.hscan_iter(key, match=f"*|{instance_pk}|*", count=500):
                minute, pk, kind = _parse(field)
                if pk == instance_pk:
                    _add(out.setdefault(minute, _blank()), kind, int(value))
    except (redis.ConnectionError, redis.TimeoutError):
        return {}
    return out


def _blank() -> dict:
    return {"c": 0, "eu": 0, "eg": 0, "h": histogram.empty()}


def _add(point: dict, kind: str, value: int) -> None:
    if kind.startswith("h"):
        index = int(kind[1:])
        if 0 <= index < histogram.SIZE:
            point["h"][index] += value
    elif kind in point:
        point[kind] += value


# --- the flush ----------------------------------------------------------------------------------


def _start(epoch: int, resolution: int) -> datetime:
    return datetime.fromtimestamp(epoch - epoch % resolution, tz=UTC)


def _fold(points: dict[tuple[int, int], dict], resolution: int, instance_pks: set[int]) -> None:
    """Add the batch's minute points into the rows of one resolution (locked while read)."""
    by_row: dict[tuple[int, datetime], dict] = {}
    for (epoch, pk), point in points.items():
        if pk not in instance_pks:
            continue
        row = by_row.setdefault((pk, _start(epoch, resolution)), _blank())
        for kind in ("c", "eu", "eg"):
            row[kind] += point[kind]
        histogram.add_into(row["h"], point["h"])
    if not by_row:
        return
    existing = {
        (row.instance_id, row.start): row
        for row in RequestMetrics.objects.select_for_update().filter(
            resolution=resolution, instance_id__in={pk for pk, _ in by_row}, start__in={start for _, start in by_row}
        )
    }
    changed, created = [], []
    for (pk, start), point in by_row.items():
        row = existing.get((pk, start))
        if row is None:
            created.append(RequestMetrics(
                instance_id=pk, resolution=resolution, start=start, count=point["c"], errors_upstream=point["eu"],
                errors_gateway=point["eg"], histogram=point["h"],
            ))  # fmt: skip
            continue
        row.count += point["c"]
        row.errors_upstream += point["eu"]
        row.errors_gateway += point["eg"]
        row.histogram = histogram.merge(row.histogram, point["h"])
        changed.append(row)
    RequestMetrics.objects.bulk_update(changed, ["count", "errors_upstream", "errors_gateway", "histogram"])
    RequestMetrics.objects.bulk_create(created)


def _fold_totals(points: dict[tuple[int, int], dict], instance_pks: set[int]) -> None:
    per_instance: dict[int, dict] = {}
    last: dict[int, int] = {}
    for (epoch, pk), point in points.items():
        if pk not in instance_pks:
            continue
        total = per_instance.setdefault(pk, _blank())
        for kind in ("c", "eu", "eg"):
            total[kind] += point[kind]
        histogram.add_into(total["h"], point["h"])
        last[pk] = max(last.get(pk, 0), epoch)
    existing = {row.instance_id: row for row in RequestMetricsTotal.objects.select_for_update().filter(instance_id__in=per_instance)}
    changed, created = [], []
    for pk, point in per_instance.items():
        at = datetime.fromtimestamp(last[pk] + 59, tz=UTC)  # the minute's end: "traffic until then"
        row = existing.get(pk)
        if row is None:
            created.append(RequestMetricsTotal(
                instance_id=pk, count=point["c"], errors_upstream=point["eu"], errors_gateway=point["eg"], histogram=point["h"], last_request_at=at
            ))  # fmt: skip
            continue
        row.count += point["c"]
        row.errors_upstream += point["eu"]
        row.errors_gateway += point["eg"]
        row.histogram = histogram.merge(row.histogram, point["h"])
        row.last_request_at = max(row.last_request_at, at)
        changed.append(row)
    RequestMetricsTotal.objects.bulk_update(changed, ["count", "errors_upstream", "errors_gateway", "histogram", "last_request_at"])
    RequestMetricsTotal.objects.bulk_create(created)


def _apply_batch(client, batch_key: str) -> int:
    batch_id = batch_key[len(BATCH_PREFIX):]
    points: dict[tuple[int, int], dict] = defaultdict(_blank)
    for field, value in client.hgetall(batch_key).items():
        try:
            minute, pk, kind = _parse(field)
        except ValueError:
            continue
        _add(points[(minute, pk)], kind, int(value))
    instance_pks = set(Instance.objects.filter(pk__in={pk for _, pk in points}).values_list("pk", flat=True))
    with transaction.atomic():
        try:
            with transaction.atomic():
                RequestMetricsFlush.objects.create(batch=batch_id)
        except IntegrityError:
            client.delete(batch_key)  # folded in before; the delete was what failed
            return 0
        _fold(points, RequestMetrics.MINUTE, instance_pks)
        _fold(points, RequestMetrics.HOUR, instance_pks)
        _fold_totals(points, instance_pks)
    client.delete(batch_key)
    return sum(point["c"] for (_, pk), point in points.items() if pk in instance_pks)


def prune(now: datetime | None = None) -> int:
    """Retention: minute rows for 24 h, hour rows for 30 days."""
    now = now or timezone.now()
    deleted = RequestMetrics.objects.filter(resolution=RequestMetrics.MINUTE, start__lt=now - MINUTE_RETENTION).delete()[0]
    deleted += RequestMetrics.objects.filter(resolution=RequestMetrics.HOUR, start__lt=now - HOUR_RETENTION).delete()[0]
    RequestMetricsFlush.objects.filter(created_at__lt=now - FLUSH_RECORD_RETENTION).delete()
    return deleted


def flush(now: datetime | None = None) -> dict:
    """Fold pending counts into the database, then apply retention (the periodic job). One flush
    at a time (a singleton lock); a second one at once returns at once."""
    client = get_redis()
    try:
        with singleton("request-metrics-flush", ttl=max(settings.REQUEST_METRICS_FLUSH_SECONDS * 4, 60)) as mine:
            if not mine:
                return {"flushed": 0, "pruned": 0, "skipped": "another flush is running"}
            try:
                client.rename(PENDING, BATCH_PREFIX + uuid.uuid4().hex)
            except redis.ResponseError:
                pass  # nothing pending
            flushed = 0
            for key in list(client.scan_iter(match=BATCH_PREFIX + "*", count=100)):
                flushed += _apply_batch(client, _decode(key))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("request metrics flush postponed: %s", exc)
        return {"flushed": 0, "pruned": prune(now)}
    return {"flushed": flushed, "pruned": prune(now)}
