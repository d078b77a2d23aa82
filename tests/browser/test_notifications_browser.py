"""The notification bell in a real browser (issue 18 item 5): an event raised after the page
loaded shows in the top bar's count without a reload (static/console/live.js polling the bell's
fragment), the bell opens the Notifications page, and Mark read / Mark all read clear the count.
One page for every check (browser tests are the suite's expensive ones)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_bell_follows_events_and_the_page_marks_them_read(logged_in_page, live_server):
    from orchestrio import notifications

    page = logged_in_page
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    bell = page.get_by_test_id("bell")
    expect(bell).to_be_visible()
    expect(page.get_by_test_id("bell-count")).to_have_count(0)
    page.evaluate("window.__sameDocument = true")

    notifications.notify([("browser-co", "instance.health_down", {"instance_id": "web-1", "failures": 3, "detail": "HTTP 503"})])
    notifications.notify([("browser-co", "quota.80", {"executions": 80, "quota": 100})])
    expect(page.get_by_test_id("bell-count")).to_have_text("2", timeout=10_000)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"

    bell.click()
    page.wait_for_url(f"{live_server.url}/notifications")
    rows = page.get_by_test_id("notification")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("80% of this period's executions are used")
    expect(rows.nth(1)).to_contain_text("web-1 is unhealthy")
    rows.first.get_by_role("button", name="Mark read").click()
    expect(page.get_by_test_id("bell-count")).to_have_text("1")
    page.get_by_test_id("read-all").click()
    expect(page.get_by_test_id("bell-count")).to_have_count(0)
    expect(page.get_by_role("button", name="Mark read")).to_have_count(0)
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
