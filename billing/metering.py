"""Usage metering without a database write per proxied request.

Each proxied request increments a field of one Redis hash (`HINCRBY`, a single round trip). A
periodic job (`flush_usage`, every USAGE_FLUSH_SECONDS) renames the hash to a batch key — new
increments go to a fresh hash — adds the batch to `UsageCounter` rows and records the batch id in
the same transaction, then deletes the batch key. A flush interrupted at any point is finished
by the next one: a batch whose id is recorded is only deleted, so nothing is counted twice, and a
batch key left in Redis is found again (SCAN), so nothing is lost while Redis keeps its data.
With the embedded queue the counters live in memory: stopping the process loses at most the
increments of the last flush window.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import date

import redis
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from instances.models import Instance
from orchestrio.models import Tenant
from orchestrio.redis import get_redis

from .models import UsageCounter, UsageFlush

logger = logging.getLogger(__name__)
PENDING = "orchestrio:usage:pending"
BATCH_PREFIX = "orchestrio:usage:batch:"


def record_execution(tenant_id: str, instance_pk: int | None, count: int = 1) -> None:
    field = f"{timezone.now():%Y-%m-%d}|{tenant_id}|{instance_pk or ''}|executions"
    try:
        get_redis().hincrby(PENDING, field, count)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("usage counter unavailable; %d execution(s) of %s not counted: %s", count, tenant_id, exc)


def _parse(field: bytes | str) -> tuple[date, str, int | None, str]:
    text = field.decode() if isinstance(field, bytes) else field
    day, tenant_id, instance_pk, kind = text.split("|")
    return date.fromisoformat(day), tenant_id, int(instance_pk) if instance_pk else None, kind


def pending_counts(tenant_id: str, start: date, end: date, instance_pk: int | None = None) -> int:
    """Executions not flushed yet (in the pending hash or an unfinished batch) for a tenant."""
    client = get_redis()
    total = 0
    try:
        keys = [PENDING, *client.scan_iter(match=BATCH_PREFIX + "*", count=100)]
        for key in keys:
            for field, value in client.hgetall(key).items():
                day, tenant, instance, _ = _parse(field)
                if tenant == tenant_id and start <= day < end and (instance_pk is None or instance == instance_pk):
                    total += int(value)
    except (redis.ConnectionError, redis.TimeoutError):
        return 0
    return total


def _apply_batch(batch_key: str) -> int:
    client = get_redis()
    batch_id = batch_key[len(BATCH_PREFIX):]
    raw = client.hgetall(batch_key)
    totals: dict[tuple, int] = defaultdict(int)
    for field, value in raw.items():
        totals[_parse(field)] += int(value)
    known_tenants = set(Tenant.objects.filter(pk__in={key[1] for key in totals}).values_list("pk", flat=True))
    known_instances = set(Instance.objects.filter(pk__in={key[2] for key in totals if key[2]}).values_list("pk", flat=True))
    with transaction.atomic():
        try:
            with transaction.atomic():
                UsageFlush.objects.create(batch=batch_id)
        except IntegrityError:
            client.delete(batch_key)  # applied before; the delete was what failed
            return 0
        for (day, tenant_id, instance_pk, kind), count in totals.items():
            if tenant_id not in known_tenants:
                continue
            instance_pk = instance_pk if instance_pk in known_instances else None
            updated = UsageCounter.objects.filter(tenant_id=tenant_id, instance_id=instance_pk, day=day, kind=kind).update(count=F("count") + count)
            if not updated:
                UsageCounter.objects.create(tenant_id=tenant_id, instance_id=instance_pk, day=day, kind=kind, count=count)
    client.delete(batch_key)
    return sum(totals.values())


def flush_usage() -> int:
    """Move pending counters into the database (the periodic job)."""
    client = get_redis()
    try:
        batch_key = BATCH_PREFIX + uuid.uuid4().hex
        try:
            client.rename(PENDING, batch_key)
        except redis.ResponseError:
            batch_key = None  # nothing pending
        flushed = 0
        for key in list(client.scan_iter(match=BATCH_PREFIX + "*", count=100)):
            flushed += _apply_batch(key.decode() if isinstance(key, bytes) else key)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("usage flush postponed: %s", exc)
        return 0
    return flushed
