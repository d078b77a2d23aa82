"""Billing state changes: Stripe Checkout and Portal sessions, and Stripe's webhook events."""

from __future__ import annotations

import logging
from datetime import datetime, timezone as dt_timezone

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from orchestrio import hooks
from orchestrio.errors import BadRequest, InvalidState, ServiceUnavailable, ValidationFailed
from orchestrio.models import SubscriptionPlan, Tenant
from orchestrio.services import activity_record, tenant_plan_change
from orchestrio.tenancy import Actor, Principal

from .models import StripeEvent, Subscription
from .stripe_client import call, client

logger = logging.getLogger(__name__)
STRIPE = Actor.system("stripe")
ACTIVE_STATUSES = {"active", "trialing", "past_due"}


def _console(path: str) -> str:
    return f"{settings.PUBLIC_URL}{path}"


def _customer(principal: Principal) -> str:
    """The tenant's Stripe customer, created once."""
    with transaction.atomic():
        subscription, _ = Subscription.objects.select_for_update(of=("self",)).get_or_create(tenant=principal.tenant)
        if subscription.stripe_customer_id:
            return subscription.stripe_customer_id
        email = principal.user.email if principal.user is not None else ""
        customer = call(
            client().v1.customers.create,
            params={"name": principal.tenant.name, "email": email or None, "metadata": {"tenant_id": principal.tenant.pk}},
            options={"idempotency_key": f"orchestrio-customer-{principal.tenant.pk}"},
        )
        subscription.stripe_customer_id = customer.id
        subscription.save(update_fields=["stripe_customer_id", "updated_at"])
        return customer.id


def checkout_session_create(*, principal: Principal, plan_id: str) -> str:
    client()  # 503 before anything else when billing is not configured
    plan = SubscriptionPlan.objects.filter(pk=plan_id).first()
    if plan is None or not plan.is_public or plan.price_cents_per_month == 0:
        raise ValidationFailed(f"{plan_id!r} is not a plan you can buy", field="plan")
    if not plan.stripe_price_id:
        raise ServiceUnavailable(f"the {plan.name} plan has no Stripe price configured (set it in the admin)")
    if principal.tenant.plan_id == plan.pk:
        raise InvalidState(f"you are on the {plan.name} plan already; manage it in the billing portal")
    customer = _customer(principal)
    session = call(
        client().v1.checkout.sessions.create,
        params={
            "mode": "subscription",
            "customer": customer,
            "client_reference_id": principal.tenant.pk,
            "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
            "success_url": _console("/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}"),
            "cancel_url": _console("/billing?checkout=cancelled"),
            "metadata": {"tenant_id": principal.tenant.pk, "plan": plan.pk},
            "subscription_data": {"metadata": {"tenant_id": principal.tenant.pk, "plan": plan.pk}},
        },
    )
    activity_record(actor=principal.actor, action="billing.checkout", tenant=principal.tenant, object_type="subscription", object_id=principal.tenant.pk, data={"plan": plan.pk})
    return session.url


def portal_session_create(*, principal: Principal) -> str:
    client()
    subscription = Subscription.objects.filter(tenant=principal.tenant).first()
    if subscription is None or not subscription.stripe_customer_id:
        raise InvalidState("there is no Stripe customer for this tenant yet: subscribe with checkout first")
    session = call(client().v1.billing_portal.sessions.create, params={"customer": subscription.stripe_customer_id, "return_url": _console("/billing")})
    return session.url


# --- webhooks ----------------------------------------------------------------------------------


class WebhookError(BadRequest):
    """The request is not a genuine Stripe event (bad signature, too old, not JSON): 400."""


def construct_event(*, payload: bytes, signature: str | None):
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise ServiceUnavailable("Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET is unset)")
    try:
        return stripe.Webhook.construct_event(payload, signature or "", settings.STRIPE_WEBHOOK_SECRET, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS)
    except ValueError as exc:
        raise WebhookError("the payload is not a Stripe event") from exc
    except stripe.SignatureVerificationError as exc:
        raise WebhookError(f"signature verification failed: {exc.user_message or exc}") from exc


def _ts(value) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=dt_timezone.utc) if value else None


def _tenant_for(obj: dict) -> Tenant | None:
    metadata = obj.get("metadata") or {}
    tenant_id = obj.get("client_reference_id") or metadata.get("tenant_id")
    if tenant_id:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is not None:
            return tenant
    customer = obj.get("customer")
    if customer:
        subscription = Subscription.objects.select_related("tenant").filter(stripe_customer_id=customer).first()
        if subscription is not None:
            return subscription.tenant
    return None


def _change_plan(tenant: Tenant, plan: SubscriptionPlan, reason: str) -> None:
    # The one home of a plan change (and its audit row): the core's, which the admin uses too.
    tenant_plan_change(tenant=tenant, plan_id=plan.pk, actor=STRIPE, reason=reason)


def _plan_of(sub: dict) -> SubscriptionPlan | None:
    items = ((sub.get("items") or {}).get("data")) or []
    for item in items:
        price = (item.get("price") or {}).get("id")
        plan = SubscriptionPlan.objects.filter(stripe_price_id=price).first() if price else None
        if plan is not None:
            return plan
    plan_id = (sub.get("metadata") or {}).get("plan")
    return SubscriptionPlan.objects.filter(pk=plan_id).first() if plan_id else None


def _period(sub: dict) -> tuple:
    start, end = sub.get("current_period_start"), sub.get("current_period_end")
    items = ((sub.get("items") or {}).get("data")) or []
    if not start and items:  # newer API versions keep the period on the items
        start, end = items[0].get("current_period_start"), items[0].get("current_period_end")
    return _ts(start), _ts(end)


def _apply_subscription(tenant: Tenant, sub: dict, *, deleted: bool = False) -> str:
    record, _ = Subscription.objects.select_for_update(of=("self",)).get_or_create(tenant=tenant)
    record.stripe_customer_id = sub.get("customer") or record.stripe_customer_id
    record.stripe_subscription_id = sub.get("id") or record.stripe_subscription_id
    record.status = "canceled" if deleted else (sub.get("status") or record.status)
    record.cancel_at_period_end = bool(sub.get("cancel_at_period_end"))
    start, end = _period(sub)
    record.current_period_start, record.current_period_end = start or record.current_period_start, end or record.current_period_end
    record.save()
    starter = SubscriptionPlan.objects.get(pk=settings.DEFAULT_SUBSCRIPTION_PLAN)
    if deleted or record.status not in ACTIVE_STATUSES:
        _change_plan(tenant, starter, f"subscription {record.status}")
        return f"{tenant.pk}: subscription {record.status}; back on {starter.pk}"
    plan = _plan_of(sub)
    if plan is not None:
        _change_plan(tenant, plan, f"subscription {record.status}")
        return f"{tenant.pk}: {record.status} on {plan.pk}"
    return f"{tenant.pk}: {record.status} (price not matched to a plan)"


def _handle(event) -> tuple[Tenant | None, str]:
    kind = event["type"]
    obj = event["data"]["object"]
    obj = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    tenant = _tenant_for(obj)
    if tenant is None:
        return None, f"no tenant for this {kind}"
    if kind == "checkout.session.completed":
        record, _ = Subscription.objects.select_for_update(of=("self",)).get_or_create(tenant=tenant)
        record.stripe_customer_id = obj.get("customer") or record.stripe_customer_id
        record.stripe_subscription_id = obj.get("subscription") or record.stripe_subscription_id
        if record.status in ("none", "canceled", "incomplete_expired"):
            record.status = "active"
        record.save()
        plan = SubscriptionPlan.objects.filter(pk=(obj.get("metadata") or {}).get("plan")).first()
        if plan is not None:
            _change_plan(tenant, plan, "checkout completed")
        return tenant, f"{tenant.pk}: checkout completed" + (f" for {plan.pk}" if plan else "")
    if kind in ("customer.subscription.created", "customer.subscription.updated"):
        return tenant, _apply_subscription(tenant, obj)
    if kind == "customer.subscription.deleted":
        return tenant, _apply_subscription(tenant, obj, deleted=True)
    if kind == "invoice.paid":
        Subscription.objects.filter(tenant=tenant).exclude(status="canceled").update(status="active", last_payment_failed_at=None)
        return tenant, f"{tenant.pk}: invoice paid"
    if kind == "invoice.payment_failed":
        from django.utils import timezone

        Subscription.objects.filter(tenant=tenant).update(status="past_due", last_payment_failed_at=timezone.now())
        # The one event source: alert webhooks and the owners' and admins' notifications hear it.
        hooks.tenant_event(tenant.pk, "billing.payment_failed", {"invoice": obj.get("id"), "amount_due": obj.get("amount_due"), "attempt_count": obj.get("attempt_count")})
        return tenant, f"{tenant.pk}: payment failed"
    return tenant, f"ignored {kind}"


def stripe_event_handle(*, event) -> str:
    """Process one verified event exactly once, even when Stripe delivers it twice at once."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = StripeEvent.objects.create(id=event["id"], type=event["type"])
        except IntegrityError:
            return "duplicate: already processed"
        tenant, outcome = _handle(event)
        record.tenant, record.outcome = tenant, outcome[:255]
        record.save(update_fields=["tenant", "outcome"])
    logger.info("stripe event %s (%s): %s", event["id"], event["type"], outcome)
    return outcome
