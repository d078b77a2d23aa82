"""Stripe through the real SDK against a stub of its HTTP API; webhooks signed for real."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.models import StripeEvent, Subscription
from orchestrio.models import ActivityEvent

from ..helpers import assert_error, assert_validation_error
from .conftest import event, post_webhook, signed

pytestmark = pytest.mark.usefixtures("stripe_stub")


def test_checkout_creates_the_customer_once_and_a_session(api, stripe_stub, tenant, owner):
    tenant.plan_id = "starter"
    tenant.save()
    response = api.post("billing/checkout", {"plan": "pro"})
    assert response.status_code == 200 and response.json()["url"].endswith("/pay/cs_test_abc")
    customer, session = stripe_stub.requests
    assert customer["path"] == "/v1/customers"
    assert customer["form"]["metadata[tenant_id]"] == "acme-corp" and customer["form"]["name"] == "Acme Corp"
    assert customer["headers"]["Idempotency-Key"] == "orchestrio-customer-acme-corp"
    assert customer["headers"]["Authorization"] == "Bearer sk_test_orchestrio"
    form = session["form"]
    assert session["path"] == "/v1/checkout/sessions"
    assert form["mode"] == "subscription" and form["customer"] == "cus_test123" and form["client_reference_id"] == "acme-corp"
    assert form["line_items[0][price]"] == "price_pro_monthly" and form["line_items[0][quantity]"] == "1"
    assert form["success_url"].startswith("http://127.0.0.1:8000/billing?checkout=success")
    assert form["metadata[plan]"] == "pro"
    # A second checkout reuses the customer.
    api.post("billing/checkout", {"plan": "team"})
    assert [r["path"] for r in stripe_stub.requests].count("/v1/customers") == 1
    assert Subscription.objects.get(tenant=tenant).stripe_customer_id == "cus_test123"


def test_checkout_validation_and_same_plan(api):
    assert_validation_error(api.post("billing/checkout", {"plan": "platinum"}), ("body", "plan"))
    assert_validation_error(api.post("billing/checkout", {"plan": "starter"}), ("body", "plan"))
    assert_error(api.post("billing/checkout", {"plan": "pro"}), 400, contains="already")  # the fixture tenant is on pro


def test_portal_needs_a_customer(api, stripe_stub, tenant):
    assert_error(api.post("billing/portal"), 400, contains="no Stripe customer")
    Subscription.objects.create(tenant=tenant, stripe_customer_id="cus_test123")
    response = api.post("billing/portal")
    assert response.status_code == 200 and "/portal/" in response.json()["url"]
    assert stripe_stub.requests[-1]["form"] == {"customer": "cus_test123", "return_url": "http://127.0.0.1:8000/billing"}


def test_members_may_not_buy(member_api):
    assert_error(member_api.post("billing/checkout", {"plan": "team"}), 403)
    assert_error(member_api.post("billing/portal"), 403)


def test_without_a_key_billing_is_503(api, settings):
    settings.STRIPE_SECRET_KEY = None
    assert_error(api.post("billing/checkout", {"plan": "team"}), 503, contains="not configured")
    assert_error(api.post("billing/portal"), 503)


def test_stripe_failure_is_502(api, stripe_stub, tenant):
    tenant.plan_id = "starter"
    tenant.save()
    stripe_stub.fail_with = 500
    assert_error(api.post("billing/checkout", {"plan": "pro"}), 502, contains="Stripe")


# --- webhooks ---------------------------------------------------------------------------------------


@pytest.fixture
def customer(tenant):
    tenant.plan_id = "starter"
    tenant.save()
    return Subscription.objects.create(tenant=tenant, stripe_customer_id="cus_test123")


def _subscription(status="active", price="price_pro_monthly", **extra):
    return {"id": "sub_1", "object": "subscription", "customer": "cus_test123", "status": status,
            "current_period_start": 1767225600, "current_period_end": 1769904000, "cancel_at_period_end": False,
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": price}}]}, **extra}  # fmt: skip


def test_signature_valid_tampered_expired(customer):
    client = Client()
    payload = event("invoice.paid", {"id": "in_1", "customer": "cus_test123"})
    assert post_webhook(client, payload).status_code == 200
    body, signature = signed(event("invoice.paid", {"id": "in_1", "customer": "cus_test123"}, event_id="evt_2"))
    tampered = body.replace(b"in_1", b"in_9")
    response = client.post("/billing/stripe/webhook", tampered, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert response.status_code == 400 and "signature" in response.json()["detail"]
    expired = post_webhook(client, event("invoice.paid", {"customer": "cus_test123"}, event_id="evt_3"), timestamp=1_600_000_000)
    assert expired.status_code == 400
    wrong_secret = post_webhook(client, event("invoice.paid", {"customer": "cus_test123"}, event_id="evt_4"), secret="whsec_other")
    assert wrong_secret.status_code == 400
    missing = client.post("/billing/stripe/webhook", body, content_type="application/json")
    assert missing.status_code == 400
    assert list(StripeEvent.objects.values_list("id", flat=True)) == ["evt_1"]


def test_webhooks_not_configured_is_503(settings):
    settings.STRIPE_WEBHOOK_SECRET = None
    assert post_webhook(Client(), event("invoice.paid", {})).status_code == 503


def test_checkout_completed_moves_the_tenant_to_the_plan(customer, tenant):
    session = {"id": "cs_1", "object": "checkout.session", "customer": "cus_test123", "subscription": "sub_1", "client_reference_id": "acme-corp", "metadata": {"tenant_id": "acme-corp", "plan": "team"}}
    assert post_webhook(Client(), event("checkout.session.completed", session)).status_code == 200
    tenant.refresh_from_db()
    assert tenant.plan_id == "team"
    record = Subscription.objects.get(tenant=tenant)
    assert record.stripe_subscription_id == "sub_1" and record.status == "active"
    assert ActivityEvent.objects.get(action="tenant.plan_change").data == {"from": "starter", "to": "team", "reason": "checkout completed"}


@pytest.mark.parametrize("kind", ["customer.subscription.created", "customer.subscription.updated"])
def test_subscription_created_and_updated(customer, tenant, kind):
    post_webhook(Client(), event(kind, _subscription(price="price_team_monthly")))
    tenant.refresh_from_db()
    record = Subscription.objects.get(tenant=tenant)
    assert tenant.plan_id == "team" and record.status == "active" and record.current_period_end.year == 2026


def test_subscription_item_period_of_newer_api_versions(customer, tenant):
    sub = _subscription()
    del sub["current_period_start"], sub["current_period_end"]
    sub["items"]["data"][0].update(current_period_start=1767225600, current_period_end=1769904000)
    post_webhook(Client(), event("customer.subscription.updated", sub))
    assert Subscription.objects.get(tenant=tenant).current_period_start is not None


def test_subscription_deleted_returns_to_starter(customer, tenant):
    post_webhook(Client(), event("customer.subscription.created", _subscription(), event_id="evt_a"))
    post_webhook(Client(), event("customer.subscription.deleted", _subscription(status="canceled"), event_id="evt_b"))
    tenant.refresh_from_db()
    assert tenant.plan_id == "starter" and Subscription.objects.get(tenant=tenant).status == "canceled"


def test_unpaid_subscription_drops_the_plan(customer, tenant):
    post_webhook(Client(), event("customer.subscription.updated", _subscription(status="unpaid")))
    tenant.refresh_from_db()
    assert tenant.plan_id == "starter"


def test_invoice_payment_failed_and_paid(customer, tenant):
    from billing import alerts

    alerts.alert_config_update(tenant=tenant, actor=alerts.Actor.system("t"), data={"webhook_url": "https://hooks.example/alerts", "enabled": True})
    post_webhook(Client(), event("invoice.payment_failed", {"id": "in_2", "customer": "cus_test123", "amount_due": 4900, "attempt_count": 1}, event_id="evt_f"))
    record = Subscription.objects.get(tenant=tenant)
    assert record.status == "past_due" and record.last_payment_failed_at is not None
    from billing.models import AlertDelivery

    assert AlertDelivery.objects.get().event == "billing.payment_failed"
    post_webhook(Client(), event("invoice.paid", {"id": "in_2", "customer": "cus_test123"}, event_id="evt_p"))
    record.refresh_from_db()
    assert record.status == "active" and record.last_payment_failed_at is None


def test_duplicate_delivery_is_processed_once(customer, tenant):
    payload = event("customer.subscription.created", _subscription(price="price_team_monthly"), event_id="evt_dup")
    first = post_webhook(Client(), payload)
    tenant.plan_id = "starter"  # if it ran again, it would move the tenant back to team
    tenant.save()
    second = post_webhook(Client(), payload)
    assert first.status_code == second.status_code == 200
    assert second.json()["outcome"].startswith("duplicate")
    tenant.refresh_from_db()
    assert tenant.plan_id == "starter"
    assert StripeEvent.objects.count() == 1


def test_events_for_unknown_customers_are_recorded_and_ignored(db):
    response = post_webhook(Client(), event("invoice.paid", {"customer": "cus_nobody"}, event_id="evt_x"))
    assert response.status_code == 200 and "no tenant" in response.json()["outcome"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_event_are_processed_once(stripe_stub):
    import threading

    from django.db import connection

    from ..factories import TenantFactory

    tenant = TenantFactory(id="concurrent-co", plan_id="starter")
    Subscription.objects.create(tenant=tenant, stripe_customer_id="cus_test123")
    payload = event("invoice.payment_failed", {"id": "in_c", "customer": "cus_test123"}, event_id="evt_concurrent")
    barrier = threading.Barrier(8)
    outcomes = []

    def deliver():
        barrier.wait()
        outcomes.append(post_webhook(Client(), payload).json()["outcome"])
        connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for o in outcomes if not o.startswith("duplicate")) == 1
    assert StripeEvent.objects.filter(pk="evt_concurrent").count() == 1
