"""Create an instance in the console and watch it reach running; stop it; destroy it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_create_watch_stop_destroy(logged_in_page, live_server, worker):
    page = logged_in_page
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Instances").click()
    page.get_by_role("link", name="New instance").click()
    page.get_by_label("Instance id").fill("browser-made")
    page.get_by_label("Labels").fill("env=demo")
    page.get_by_role("button", name="Create instance").click()

    # The detail page updates itself: pending/provisioning → running and healthy, without a reload.
    page.wait_for_url(f"{live_server.url}/instances/browser-made")
    state = page.get_by_test_id("state")
    expect(state).to_have_text("running", timeout=30_000)
    expect(page.get_by_test_id("health")).to_have_text("healthy", timeout=10_000)
    expect(page.get_by_test_id("log")).to_contain_text("running and healthy")

    # Stop (with a confirmation dialog).
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(state).to_have_text("stopped", timeout=30_000)
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled()

    # A wrong move gets a clear message: resume is refused for a stopped instance.
    # (The button is disabled in the UI; the console view answers the same as the API.)
    page.evaluate("document.querySelector('[data-show-in=suspended]').disabled = false")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".messages .message-error")).to_contain_text("cannot resume browser-made: it is stopped")

    # Destroy, typing the id to confirm.
    page.get_by_role("link", name="Destroy…").click()
    page.get_by_label("Type").fill("browser-made")
    page.get_by_role("button", name="Destroy instance").click()
    page.wait_for_url(f"{live_server.url}/instances/")
    expect(page.locator(".messages .message-success")).to_contain_text("Destroying browser-made")

    from instances.models import Instance

    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Instance.objects.get(instance_id="browser-made").state != "destroyed":
        time.sleep(0.2)
    assert Instance.objects.get(instance_id="browser-made").state == "destroyed"


def test_plan_limit_is_explained(logged_in_page, live_server, console_user):
    from orchestrio.models import SubscriptionPlan
    from orchestrio.models import Tenant

    SubscriptionPlan.objects.filter(pk=Tenant.objects.get(pk="browser-co").plan_id).update(max_instances=0)
    page = logged_in_page
    page.goto(f"{live_server.url}/instances/new")
    page.get_by_label("Instance id").fill("over-limit")
    page.get_by_role("button", name="Create instance").click()
    expect(page.get_by_role("alert")).to_contain_text("plan allows 0 instances")
