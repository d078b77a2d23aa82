"""Alert webhooks: one per tenant, signed, delivered by jobs, retried with backoff for 24 hours.

Each delivery is a row; each attempt is recorded (status, response code, time). The body is the
JSON event; the header `X-Orchestrio-Signature: t=<unix>,v1=<hex>` carries an HMAC-SHA256 of
`"<t>.<body>"` with the tenant's signing secret, so a receiver can check origin and freshness.
Retries are database rows with a due time, picked up by a periodic job: they survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrio import crypto, hooks, outbound
from orchestrio.errors import InvalidState, NotFound, ValidationFailed
from orchestrio.models import Tenant
from orchestrio.queue import enqueue, enqueue_on_commit
from orchestrio.quotas import current_period, executing_tenants, executions_used
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor

from .models import AlertAttempt, AlertConfig, AlertDelivery, QuotaAlertMark

logger = logging.getLogger(__name__)

EVENTS = {
    "instance.error": "an instance went to error",
    "instance.health_down": "a running instance became unhealthy",
    "instance.health_up": "an unhealthy instance recovered",
    "task.failed": "a task failed or timed out",
    "quota.80": "80% of the monthly executions are used",
    "quota.100": "the monthly executions are used up",
    "billing.payment_failed": "a payment failed",
    "invitation.accepted": "someone accepted an invitation and joined the team",
    "alert.test": "a test alert",
}
RETRY_WINDOW = timedelta(hours=24)


def validate_url(url: str) -> str:
    """The webhook URL rules: at most 2048 characters, and orchestrio.outbound's rules for every URL
    a tenant controls (https to public addresses only)."""
    if not isinstance(url, str) or not url:
        raise ValidationFailed("webhook_url is required", field="webhook_url")
    if len(url) > 2048:
        raise ValidationFailed("webhook_url is at most 2048 characters", field="webhook_url")
    try:
        return outbound.validate_outbound_url(url, what="webhook_url")
    except outbound.OutboundRefused as exc:
        raise ValidationFailed(str(exc), field="webhook_url") from None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300) -> bool:
    """What a receiver does (documented in docs/billing.md; used by the tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={parts.get('v1', '')}")


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@transaction.atomic
def alert_config_update(*, tenant, actor: Actor, data: dict) -> tuple[AlertConfig, str | None]:
    """Apply a partial update; returns (config, the signing secret when one was just created)."""
    config, _ = AlertConfig.objects.select_for_update(of=("self",)).get_or_create(tenant=tenant)
    previous_url = config.webhook_url
    if "webhook_url" in data:
        url = data["webhook_url"]
        config.webhook_url = validate_url(url) if url else ""
    if "enabled" in data:
        config.enabled = bool(data["enabled"])
    if config.enabled and not config.webhook_url:
        raise ValidationFailed("alerts cannot be enabled without a webhook_url", field="enabled")
    new_secret = None
    if config.webhook_url and not config.signing_secret_encrypted:
        new_secret = _new_secret()
        config.signing_secret_encrypted = crypto.encrypt(new_secret)
        config.signing_secret_prefix = new_secret[:12]
    config.save()
    # Whether the URL changed, not the URL: members read the audit log, and only owners and admins
    # may see where alerts go (each delivery keeps its URL, for them).
    activity_record(
        actor=actor, action="alerts.update", tenant=tenant, object_type="alert_config", object_id=tenant.pk,
        data={"webhook_url_changed": config.webhook_url != previous_url, "enabled": config.enabled},
    )  # fmt: skip
    return config, new_secret


@transaction.atomic
def alert_secret_rotate(*, tenant, actor: Actor) -> str:
    config = AlertConfig.objects.select_for_update(of=("self",)).filter(tenant=tenant).first()
    if config is None or not config.webhook_url:
        raise InvalidState("set a webhook_url first")
    secret = _new_secret()
    config.signing_secret_encrypted = crypto.encrypt(secret)
    config.signing_secret_prefix = secret[:12]
    config.save(update_fields=["signing_secret_encrypted", "signing_secret_prefix", "updated_at"])
    activity_record(actor=actor, action="alerts.rotate_secret", tenant=tenant, object_type="alert_config", object_id=tenant.pk)
    return secret


def _delivery_id() -> str:
    return "dlv_" + secrets.token_hex(10)


def emit(tenant_id: str, event: str, data: dict, *, force: bool = False) -> AlertDelivery | None:
    """Queue an alert for the tenant's webhook (if it has one enabled). Call inside the transaction
    that made the change: the delivery is sent after it commits."""
    deliveries = emit_many([(tenant_id, event, data)], force=force)
    return deliveries[0] if deliveries else None


def emit_many(alerts: list[tuple[str, str, dict]], *, force: bool = False) -> list[AlertDelivery]:
    """`emit` for many (tenant_id, event, data) at once: one query for the tenants' configs, one
    bulk insert; returns the deliveries queued (alerts of tenants without an enabled webhook are
    dropped)."""
    configs = AlertConfig.objects.in_bulk({tenant_id for tenant_id, _, _ in alerts}, field_name="tenant_id")
    deliveries = []
    for tenant_id, event, data in alerts:
        config = configs.get(tenant_id)
        if config is None or not config.webhook_url or not (config.enabled or force):
            continue
        delivery_id = _delivery_id()
        now = timezone.now()
        payload = {"id": delivery_id, "type": event, "created_at": now, "tenant_id": tenant_id, "summary": EVENTS.get(event, event), "data": data}
        deliveries.append(AlertDelivery(
            id=delivery_id, tenant_id=tenant_id, event=event, payload=json.loads(json.dumps(payload, cls=DjangoJSONEncoder)),
            url=config.webhook_url, next_attempt_at=now, created_at=now,
        ))  # fmt: skip
    AlertDelivery.objects.bulk_create(deliveries)
    for delivery in deliveries:
        enqueue_on_commit("billing.jobs.deliver_alert", delivery.pk)
    return deliveries


def _backoff(attempts: int) -> timedelta:
    base = min(settings.ALERT_RETRY_MAX_SECONDS, settings.ALERT_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def deliver(delivery_id: str) -> str:
    """One attempt (a job). Success ends the delivery; failure schedules the next attempt, until
    24 hours after the event the delivery is given up."""
    with transaction.atomic():
        delivery = AlertDelivery.objects.select_for_update(of=("self",)).filter(pk=delivery_id).first()
        if delivery is None or delivery.status != "pending":
            return "nothing to do"
        if delivery.next_attempt_at and delivery.next_attempt_at > timezone.now() + timedelta(seconds=1):
            return "not due"
        # Claim this attempt so a concurrent runner does not send it too.
        delivery.attempts += 1
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=settings.ALERT_TIMEOUT_SECONDS + 30)
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    config = AlertConfig.objects.filter(tenant_id=delivery.tenant_id).first()
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    secret = crypto.decrypt(config.signing_secret_encrypted) if config and config.signing_secret_encrypted else ""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Orchestrio-Alerts/1.0",
        "X-Orchestrio-Event": delivery.event,
        "X-Orchestrio-Delivery": delivery.pk,
        "X-Orchestrio-Signature": sign(secret, body, int(time.time())),
    }
    started = time.perf_counter()
    code, error = None, ""
    try:
        # The URL passed validation when it was set; its form is checked again (rows from before
        # the rule) and its addresses at the connection (the DNS answer may have changed since).
        outbound.validate_outbound_url(delivery.url, resolve_host=False)
        with outbound.outbound_client(timeout=settings.ALERT_TIMEOUT_SECONDS) as client:
            # Streamed and never read: the receiver's body is not ours to keep or show.
            with client.stream("POST", delivery.url, content=body, headers=headers) as response:
                code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except httpx.HTTPError as exc:
        # A fixed reason only: exception text can carry what an internal service said.
        error = outbound.failure_reason(exc)
    duration = int((time.perf_counter() - started) * 1000)
    now = timezone.now()
    with transaction.atomic():
        delivery = AlertDelivery.objects.select_for_update(of=("self",)).get(pk=delivery_id)
        AlertAttempt.objects.create(delivery=delivery, number=delivery.attempts, at=now, response_code=code, error=error, duration_ms=duration)
        delivery.last_response_code, delivery.last_error = code, error
        if not error:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "succeeded", now, None
        else:
            retry_at = now + _backoff(delivery.attempts)
            if retry_at - delivery.created_at > RETRY_WINDOW:
                delivery.status, delivery.next_attempt_at = "failed", None
            else:
                delivery.next_attempt_at = retry_at
        delivery.save(update_fields=["status", "delivered_at", "next_attempt_at", "last_response_code", "last_error"])
    return delivery.status


def retry_due(limit: int = 200) -> int:
    """The periodic job: enqueue deliveries whose next attempt is due."""
    due = list(AlertDelivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now()).values_list("pk", flat=True)[:limit])
    for pk in due:
        enqueue("billing.jobs.deliver_alert", pk)
    return len(due)


@transaction.atomic
def redeliver(*, delivery: AlertDelivery, actor: Actor) -> AlertDelivery:
    """Send a delivery again (a new one with the same event), whatever became of the first."""
    copy = emit(delivery.tenant_id, delivery.event, {**delivery.payload.get("data", {}), "redelivery_of": delivery.pk}, force=True)
    if copy is None:
        raise InvalidState("set a webhook_url first")
    activity_record(actor=actor, action="alerts.redeliver", tenant=delivery.tenant_id, object_type="alert_delivery", object_id=delivery.pk, data={"new": copy.pk})
    return copy


def send_test(*, tenant, actor: Actor) -> AlertDelivery:
    with transaction.atomic():
        delivery = emit(tenant.pk, "alert.test", {"message": f"a test alert sent by {actor.label}"}, force=True)
        if delivery is None:
            raise InvalidState("set a webhook_url first")
        activity_record(actor=actor, action="alerts.test", tenant=tenant, object_type="alert_delivery", object_id=delivery.pk)
    return delivery


def delivery_for(tenant, delivery_id: str) -> AlertDelivery:
    delivery = AlertDelivery.objects.filter(tenant=tenant, pk=delivery_id).first()
    if delivery is None:
        raise NotFound(f"no alert delivery {delivery_id!r} in this tenant")
    return delivery


def quota_alerts() -> int:
    """Alert tenants at 80% and 100% of their monthly executions, once per period each. Looks at
    tenants with executions since yesterday (the others' usage did not move)."""
    active = executing_tenants(timezone.now() - timedelta(days=1))
    sent = 0
    for tenant in Tenant.objects.filter(pk__in=active, plan__executions_per_month__isnull=False).select_related("plan"):
        start, end = current_period(tenant.pk)
        quota = tenant.plan.executions_per_month
        used = executions_used(tenant.pk, start, end)
        for threshold in (80, 100):
            if quota and used * 100 >= quota * threshold:
                try:
                    with transaction.atomic():
                        QuotaAlertMark.objects.create(tenant=tenant, period_start=start, threshold=threshold)
                        # The one event source (alert webhooks, notifications): orchestrio/hooks.py.
                        hooks.tenant_event(tenant.pk, f"quota.{threshold}", {"executions": used, "quota": quota, "period_start": start, "period_end": end})
                        sent += 1
                except IntegrityError:
                    continue
    return sent
