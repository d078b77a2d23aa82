"""`Idempotency-Key` with Stripe's semantics, stored in the database.

A key belongs to the principal that sent it (the API token, or the console user: `Principal.key`),
as Stripe scopes keys per API key: another principal of the same tenant using the same key makes
a fresh request, and never sees the first one's response (which may be an admin's new token).
Same principal, key and request within 24 h: the first response is replayed with
`Idempotent-Replayed: true`. Same key, different request: 409. Same key while the first request
is still running: 409. A request that ends in a 5xx or 429 releases its key, so a retry runs
again; so does a streamed response (an event stream), which cannot be stored to be replayed. A response that carries a secret (`orchestrio.http.carries_secret`) is stored encrypted
and replayed with `Cache-Control: no-store`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrio import crypto
from orchestrio.choices import IdempotencyStatus
from orchestrio.errors import Conflict, ValidationFailed
from orchestrio.http import is_secret
from orchestrio.models import IdempotencyKey
from orchestrio.tenancy import Principal

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


# The principal of rows recorded before keys were scoped per principal (migration 0002).
UNKNOWN_PRINCIPAL = ""


def begin(request, principal: Principal) -> IdempotencyKey | None:
    """Claim the request's key for its principal, or raise IdempotentReplay / Conflict. None when
    no key was sent."""
    key = requested_key(request)
    if key is None:
        return None
    tenant, who = principal.tenant, principal.key
    fingerprint = _fingerprint(request)
    now = timezone.now()
    lock_until = now + timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)
    expired_before = now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    mine = IdempotencyKey.objects.select_for_update(of=("self",)).filter(tenant=tenant, key=key)

    with transaction.atomic():
        rows = {row.principal: row for row in mine.filter(principal__in=(who, UNKNOWN_PRINCIPAL))}
        legacy = rows.get(UNKNOWN_PRINCIPAL)
        if legacy is not None and legacy.created_at >= expired_before:
            # Whose it was is unknown: replay it to nobody, and run nothing twice. (Such rows are
            # gone IDEMPOTENCY_KEY_TTL_HOURS after the upgrade; this branch can go with them.)
            raise Conflict("this Idempotency-Key was used before keys were scoped per principal; use a new key for a new request")
        record = rows.get(who)
        if record is not None and record.created_at < expired_before:
            record.delete()
            record = None
        if record is None:
            try:
                with transaction.atomic():
                    return IdempotencyKey.objects.create(
                        tenant=tenant,
                        principal=who,
                        key=key,
                        fingerprint=fingerprint,
                        method=request.method,
                        path=request.path[:512],
                        created_at=now,
                        locked_until=lock_until,
                    )
            except IntegrityError:
                # A concurrent request inserted it first; PostgreSQL waited for it to commit.
                record = mine.get(principal=who)

        if record.fingerprint != fingerprint:
            raise Conflict(
                "this Idempotency-Key was already used with a different request "
                f"({record.method} {record.path}); use a new key for a new request"
            )
        if record.status == IdempotencyStatus.COMPLETED:
            if record.response_body_encrypted:
                raise IdempotentReplay(record.response_status, json.loads(crypto.decrypt(record.response_body_encrypted)), secret=True)
            raise IdempotentReplay(record.response_status, record.response_body)
        if record.locked_until is not None and record.locked_until > now:
            raise Conflict("a request with this Idempotency-Key is still being processed; retry later")
        # The request that held it died: this one takes over.
        record.locked_until = lock_until
        record.save(update_fields=["locked_until"])
        return record


def finish(record: IdempotencyKey, response) -> None:
    if response.status_code >= 500 or response.status_code == 429 or getattr(response, "streaming", False):
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        return
    body = json.loads(json.dumps(getattr(response, "data", None), cls=DjangoJSONEncoder))
    stored = {"response_body": body, "response_body_encrypted": ""}
    if is_secret(response):
        # The replay shows the secret again, to the same principal; at rest it is encrypted.
        stored = {"response_body": None, "response_body_encrypted": crypto.encrypt(json.dumps(body))}
    IdempotencyKey.objects.filter(pk=record.pk).update(
        status=IdempotencyStatus.COMPLETED,
        response_status=response.status_code,
        locked_until=None,
        **stored,
    )


def purge_expired() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
