"""`Idempotency-Key` with Stripe's semantics, stored in the database.

Same key, same request within 24 h: the first response is replayed with `Idempotent-Replayed:
true`. Same key, different request: 409. Same key while the first request is still running: 409.
A request that ends in a 5xx or 429 releases its key, so a retry runs again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrio.choices import IdempotencyStatus
from orchestrio.errors import Conflict, ValidationFailed
from orchestrio.models import IdempotencyKey

from .exceptions import IdempotentReplay

HEADER = "Idempotency-Key"


def _fingerprint(request) -> str:
    payload = json.dumps(
        {"method": request.method, "path": request.path, "body": request.data},
        sort_keys=True,
        cls=DjangoJSONEncoder,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def requested_key(request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or "\x00" in key:
        raise ValidationFailed(
            [{"loc": ["header", HEADER], "msg": "Idempotency-Key must be 1–255 characters, none of them NUL", "type": "string_length"}]
        )
    return key


def begin(request, tenant) -> IdempotencyKey | None:
    """Claim the request's key, or raise IdempotentReplay / Conflict. None when no key was sent."""
    key = requested_key(request)
    if key is None:
        return None
    fingerprint = _fingerprint(request)
    now = timezone.now()
    lock_until = now + timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)
    expired_before = now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)

    with transaction.atomic():
        record = IdempotencyKey.objects.select_for_update(of=("self",)).filter(tenant=tenant, key=key).first()
        if record is not None and record.created_at < expired_before:
            record.delete()
            record = None
        if record is None:
            try:
                with transaction.atomic():
                    return IdempotencyKey.objects.create(
                        tenant=tenant,
                        key=key,
                        fingerprint=fingerprint,
                        method=request.method,
                        path=request.path[:512],
                        created_at=now,
                        locked_until=lock_until,
                    )
            except IntegrityError:
                # A concurrent request inserted it first; PostgreSQL waited for it to commit.
                record = IdempotencyKey.objects.select_for_update(of=("self",)).get(tenant=tenant, key=key)

        if record.fingerprint != fingerprint:
            raise Conflict(
                "this Idempotency-Key was already used with a different request "
                f"({record.method} {record.path}); use a new key for a new request"
            )
        if record.status == IdempotencyStatus.COMPLETED:
            raise IdempotentReplay(record.response_status, record.response_body)
        if record.locked_until is not None and record.locked_until > now:
            raise Conflict("a request with this Idempotency-Key is still being processed; retry later")
        # The request that held it died: this one takes over.
        record.locked_until = lock_until
        record.save(update_fields=["locked_until"])
        return record


def finish(record: IdempotencyKey, response) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        return
    body = json.loads(json.dumps(getattr(response, "data", None), cls=DjangoJSONEncoder))
    IdempotencyKey.objects.filter(pk=record.pk).update(
        status=IdempotencyStatus.COMPLETED,
        response_status=response.status_code,
        response_body=body,
        locked_until=None,
    )


def purge_expired() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
