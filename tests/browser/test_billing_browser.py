"""Upgrade from the console: Checkout (the stub of Stripe), then Stripe's webhook changes the plan."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import expect

from ..billing.conftest import event, post_webhook, stripe_stub  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_upgrade_through_checkout(logged_in_page, live_server, stripe_stub):  # noqa: F811
    from orchestrio.models import Tenant

    Tenant.objects.filter(pk="browser-co").update(plan_id="starter")
    page = logged_in_page
    page.goto(f"{live_server.url}/billing/")
    expect(page.locator("[data-plan=starter]")).to_contain_text("current plan")
    page.get_by_role("button", name="Upgrade to Pro").click()
    expect(page.get_by_role("heading")).to_have_text("Stripe Checkout (stub)")
    assert stripe_stub.requests[-1]["form"]["client_reference_id"] == "browser-co"

    # Stripe confirms the payment with a signed webhook.
    session = {"id": "cs_1", "object": "checkout.session", "customer": "cus_test123", "subscription": "sub_1", "client_reference_id": "browser-co", "metadata": {"plan": "pro"}}
    assert post_webhook(Client(), event("checkout.session.completed", session)).status_code == 200
    page.goto(f"{live_server.url}/billing/?checkout=success")
    expect(page.locator("[data-plan=pro]")).to_contain_text("current plan")
    expect(page.locator(".messages")).to_contain_text("Thank you")
    page.get_by_role("button", name="Manage billing (Stripe portal)").click()
    expect(page.get_by_role("heading")).to_have_text("Stripe Checkout (stub)")  # the stub serves every hosted page
