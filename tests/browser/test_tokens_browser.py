from __future__ import annotations

import re

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_create_token_see_it_once_and_revoke(logged_in_page, live_server):
    page = logged_in_page
    assert page.get_by_test_id("current-tenant").inner_text() == "browser-co"

    page.get_by_role("navigation", name="Console").get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("from the browser")
    page.get_by_role("button", name="Create token").click()

    shown = page.get_by_test_id("new-token").input_value()
    assert shown.startswith("ork_live_")
    assert "shown only once" in page.get_by_test_id("token-created").inner_text()

    # The token works against the API...
    api = httpx.get(f"{live_server.url}/api/v1/tenant", headers={"Authorization": f"Bearer {shown}"})
    assert api.status_code == 200 and api.json()["tenant_id"] == "browser-co"

    # ...and is never shown again.
    page.reload()
    page.goto(f"{live_server.url}/tokens")
    assert shown not in page.content()
    row = page.locator(f"tr[data-token-prefix='{shown[:12]}']")
    assert "active" in row.inner_text()

    # Revoke, with a confirmation step.
    row.get_by_role("link", name="Revoke…").click()
    page.wait_for_url(re.compile(r"/tokens/\d+/revoke$"))  # content() mid-navigation is empty (a busy machine)
    assert "cannot be undone" in page.content()
    page.get_by_role("button", name="Revoke token").click()
    page.wait_for_url(f"{live_server.url}/tokens")
    assert "is revoked" in page.content()
    assert "revoked" in page.locator(f"tr[data-token-prefix='{shown[:12]}']").inner_text()

    refused = httpx.get(f"{live_server.url}/api/v1/tenant", headers={"Authorization": f"Bearer {shown}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_wrong_password_is_refused(page, live_server, console_user):
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill(console_user.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    assert "That email and password do not match an account" in page.content()
