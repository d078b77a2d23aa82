"""A function's request metrics, without a database write per invocation.

Each invocation adds to fields of one Redis hash (one pipelined round trip): per function and
UTC minute its count, errors, cold starts, total duration and one bucket of the gateway's
mergeable latency histogram (gateway/histogram.py: the p50/p95/p99 the instances' request metrics
give, within one bucket's 19 %). `flush` (a periodic job, every
FUNCTIONS_METRICS_FLUSH_SECONDS) renames the hash to a batch of its own, so new invocations go to
a fresh one, adds the batch to `FunctionMetricMinute` rows and to the function's counters, then
deletes it. With Redis unreachable the points are dropped (logged), as billing's counters are.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import redis
from django.db import transaction
from django.db.models import F, Q

from gateway import histogram
from orchestrio.redis import get_redis

from .models import Function, FunctionMetricMinute

logger = logging.getLogger(__name__)
PENDING = "orchestrio:functions:metrics:pending"
BATCH_PREFIX = "orchestrio:functions:metrics:batch:"
LOCK = "orchestrio:functions:metrics:flush-lock"
FIELDS = ("count", "errors", "cold_starts", "duration_ms_total")


def record(function_pk: int, *, duration_ms: int, error: bool, cold: bool) -> None:
    minute = int(datetime.now(UTC).timestamp()) // 60 * 60
    prefix = f"{function_pk}|{minute}|"
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(PENDING, prefix + "count", 1)
        if error:
            pipe.hincrby(PENDING, prefix + "errors", 1)
        if cold:
            pipe.hincrby(PENDING, prefix + "cold_starts", 1)
        pipe.hincrby(PENDING, prefix + "duration_ms_total", max(0, duration_ms))
        pipe.hincrby(PENDING, prefix + f"h{histogram.bucket_for(max(0, duration_ms))}", 1)
        pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("function metrics unavailable; an invocation of function %s not counted: %s", function_pk, exc)


def flush() -> int:
    """Move pending points to the database; returns how many (function, minute) rows changed."""
    client = get_redis()
    # One flush at a time (two would both add a batch before either deletes it). A flush that dies
    # between its commit and the batch's deletion counts that batch again on the next one: at most
    # FUNCTIONS_METRICS_FLUSH_SECONDS of invocations, and only in these metrics (billing's
    # executions are counted by billing's own flush, which records its batches).
    if not client.set(LOCK, "1", nx=True, ex=120):
        return 0
    try:
        return _flush(client)
    finally:
        client.delete(LOCK)


def _flush(client) -> int:
    batch = BATCH_PREFIX + uuid.uuid4().hex
    try:
        client.rename(PENDING, batch)
    except redis.ResponseError:
        pass  # nothing pending
    changed = 0
    for key in list(client.scan_iter(match=BATCH_PREFIX + "*", count=100)):
        points: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
        latencies: dict[tuple[int, int], list[int]] = defaultdict(histogram.empty)
        for field, value in client.hgetall(key).items():
            text = field.decode() if isinstance(field, bytes) else field
            pk, minute, name = text.split("|", 2)
            if name in FIELDS:
                points[(int(pk), int(minute))][name] += int(value)
            elif name.startswith("h") and name[1:].isdigit() and int(name[1:]) < histogram.SIZE:
                latencies[(int(pk), int(minute))][int(name[1:])] += int(value)
        known = set(Function.objects.filter(pk__in={pk for pk, _ in points}).values_list("pk", flat=True))
        with transaction.atomic():
            for (pk, minute), figures in points.items():
                if pk not in known:
                    continue  # deleted since
                at = datetime.fromtimestamp(minute, UTC)
                latency = latencies.get((pk, minute)) or histogram.empty()
                row, created = FunctionMetricMinute.objects.get_or_create(function_id=pk, minute=at, defaults={**figures, "latency_histogram": latency})
                if not created:
                    # The row locked while its histogram is merged (a JSON list has no F() sum).
                    row = FunctionMetricMinute.objects.select_for_update().get(pk=row.pk)
                    FunctionMetricMinute.objects.filter(pk=row.pk).update(
                        count=F("count") + figures["count"], errors=F("errors") + figures["errors"], cold_starts=F("cold_starts") + figures["cold_starts"],
                        duration_ms_total=F("duration_ms_total") + figures["duration_ms_total"], latency_histogram=histogram.merge(row.latency_histogram, latency),
                    )  # fmt: skip
                Function.objects.filter(pk=pk).update(
                    invocations=F("invocations") + figures["count"], errors=F("errors") + figures["errors"],
                    cold_starts=F("cold_starts") + figures["cold_starts"],
                )  # fmt: skip
                Function.objects.filter(Q(last_invoked_at__isnull=True) | Q(last_invoked_at__lt=at), pk=pk).update(last_invoked_at=at)
                changed += 1
            transaction.on_commit(lambda k=key: client.delete(k))
    return changed
