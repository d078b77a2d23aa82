"""Live state in the console (issue 16, item 6): the instances list and the instance page follow a
state change made through the API within a few seconds, with no reload (static/console/live.js
polling the pages' server-rendered fragments every CONSOLE_LIVE_INTERVAL_SECONDS, 3 s here)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FEW_SECONDS = 10_000  # the poll interval (3 s) plus a stop on the local provider, with room


@pytest.fixture
def api(live_server, console_user):
    from orchestrio.models import Tenant

    from ..factories import ApiTokenFactory

    token = ApiTokenFactory(tenant=Tenant.objects.get(pk="browser-co"), created_by=console_user, role="owner")

    def call(method: str, path: str, body: dict | None = None) -> httpx.Response:
        response = httpx.request(method, f"{live_server.url}/api/v1/{path}", headers={"Authorization": f"Bearer {token.plaintext}"}, json=body, timeout=20)
        assert response.status_code < 300, response.text
        return response

    call.token = token.plaintext
    return call


def _mark_no_reload(page) -> None:
    page.evaluate("window.__sameDocument = true")


def _assert_no_reload(page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_the_instance_page_follows_the_api(logged_in_page, live_server, worker, api):
    page = logged_in_page
    api("POST", "instances", {"instance_id": "live-detail"})
    page.goto(f"{live_server.url}/instances/live-detail")
    _mark_no_reload(page)

    # Provisioning → running: the header, the notice, the record and the operations all follow.
    expect(page.get_by_test_id("state")).to_have_text("running", timeout=30_000)
    expect(page.get_by_test_id("provisioning")).to_have_count(0)
    expect(page.get_by_test_id("operation")).to_be_hidden()
    expect(page.get_by_test_id("operations").locator("tbody tr").first).to_contain_text("succeeded")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_enabled()

    # The Traffic tab (request metrics): a request through the tunnel shows in its figures, drawn
    # as charts, and the next one arrives live.
    def tunnel():
        assert httpx.get(f"{live_server.url}/tunnel/live-detail/", headers={"Authorization": f"Bearer {api.token}"}, timeout=20).status_code == 200

    tunnel()
    page.get_by_role("link", name="Traffic", exact=True).click()
    count = page.get_by_test_id("traffic-totals").locator('[data-field="count"]')
    expect(count).to_have_text("1")
    expect(page.get_by_test_id("app-health")).to_have_text("healthy")
    expect(page.locator('[data-traffic-chart="requests"] canvas')).to_have_count(1)
    expect(page.locator('[data-traffic-chart="p95"] canvas')).to_have_count(1)
    _mark_no_reload(page)
    tunnel()
    expect(count).to_have_text("2", timeout=FEW_SECONDS)
    expect(page.locator('[data-traffic-chart="requests"]')).to_have_attribute("aria-label", re.compile("2 requests"))
    _assert_no_reload(page)
    page.go_back()
    _mark_no_reload(page)

    # A stop through the API: the header says stopped and the Operations table does not stay "running".
    api("POST", "instances/live-detail/stop")
    expect(page.get_by_test_id("state")).to_have_text("stopped", timeout=FEW_SECONDS)
    latest = page.get_by_test_id("operations").locator("tbody tr").first
    expect(latest).to_contain_text("stop")
    expect(latest).to_contain_text("succeeded", timeout=FEW_SECONDS)
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Check health now")).to_be_disabled()  # outside the live parts, follows too
    expect(page.get_by_test_id("log")).to_contain_text("stopped")
    _assert_no_reload(page)


def test_the_instances_list_follows_the_api(logged_in_page, live_server, worker, api):
    page = logged_in_page
    api("POST", "instances", {"instance_id": "live-list"})
    page.goto(f"{live_server.url}/instances/")
    _mark_no_reload(page)
    row = page.locator('tr[data-instance="live-list"]')
    expect(row.locator(".state")).to_have_text("running", timeout=30_000)

    api("POST", "instances/live-list/stop")
    expect(row.locator(".state")).to_have_text("stopped", timeout=FEW_SECONDS)

    # A new instance made elsewhere appears in the list too.
    api("POST", "instances", {"instance_id": "live-list-2"})
    expect(page.locator('tr[data-instance="live-list-2"]')).to_be_visible(timeout=FEW_SECONDS)
    _assert_no_reload(page)


def test_the_monitoring_tab_draws_the_stats_and_follows_them(logged_in_page, live_server, worker, api):
    from datetime import timedelta

    from django.utils import timezone

    from instances import services

    page = logged_in_page
    csp_errors = []
    page.on("console", lambda message: csp_errors.append(message.text) if "Content Security Policy" in message.text else None)
    api("POST", "instances", {"instance_id": "live-stats"})
    page.goto(f"{live_server.url}/instances/live-stats")
    expect(page.get_by_test_id("state")).to_have_text("running", timeout=30_000)
    services.instance_stats_sample()  # what the periodic job does each minute
    page.get_by_role("link", name="Monitoring").click()
    _mark_no_reload(page)
    canvases = page.locator("[data-stats-chart] canvas")
    expect(canvases).to_have_count(2)
    assert all(box["width"] > 100 and box["height"] > 50 for box in (canvases.nth(i).bounding_box() for i in range(2)))
    expect(page.locator('[data-field="cpu"]')).to_have_text("measured from the next sample")  # one sample: no rate yet
    expect(page.get_by_test_id("app-log")).to_be_attached()

    services.instance_stats_sample(now=timezone.now() + timedelta(minutes=1))  # the next minute's point
    expect(page.locator('[data-field="cpu"]')).to_have_text(re.compile(r"^\d+(\.\d)? %$"), timeout=FEW_SECONDS)
    expect(page.locator('[data-stats-chart="cpu_percent"]')).to_have_attribute("aria-label", re.compile(r"over 2 points, latest \d"))  # redrawn
    _assert_no_reload(page)
    assert not csp_errors, csp_errors
