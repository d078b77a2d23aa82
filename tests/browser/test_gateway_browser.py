"""A policy made in the console lets a curl (here httpx) reach the instance through the gateway."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_policy_from_the_console_then_call_the_gateway(logged_in_page, live_server, worker):
    page = logged_in_page
    page.goto(f"{live_server.url}/instances/new")
    page.get_by_label("Instance id").fill("gw-browser")
    page.get_by_role("button", name="Create instance").click()
    expect(page.get_by_test_id("state")).to_have_text("running", timeout=30_000)

    # A token to call with.
    page.goto(f"{live_server.url}/tokens")
    page.get_by_label("Name").fill("gateway caller")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").input_value()

    page.goto(f"{live_server.url}/instances/gw-browser/gateway")
    page.get_by_label("Provider", exact=True).select_option("api-key")
    page.get_by_label("Slug").fill("deploy-hook")
    page.get_by_role("button", name="Create policy").click()
    expect(page.get_by_test_id("policies-table")).to_contain_text("/gateway/gw-browser/deploy-hook")

    url = f"{live_server.url}/gateway/gw-browser/deploy-hook"
    ok = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, json={"ref": "main"}, timeout=20)
    assert ok.status_code == 200
    echo = ok.json()
    assert echo["path"] == "/webhooks/deploy-hook" and echo["headers"]["x-gateway-subject"] == token[:12]
    denied = httpx.post(url, json={}, timeout=20)
    assert denied.status_code == 401 and "missing credentials" in denied.json()["detail"]
