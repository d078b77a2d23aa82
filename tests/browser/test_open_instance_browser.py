"""Issue 16 item 4 in a real browser: the owner's Open button reaches the instance's own host
(which answers 401 to the bare address), and the console's session never goes there."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from ..factories import ApiTokenFactory
from ..gateway.upstream import start_site
from ..helpers import Api

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_open_takes_the_owner_to_the_instance_and_nothing_else_does(logged_in_page, live_server, console_user, settings):
    settings.PUBLIC_URL = live_server.url  # access_url takes the console's scheme and port
    port = urlsplit(live_server.url).port
    tenant = console_user.memberships.get().tenant
    api = Api(ApiTokenFactory(tenant=tenant, created_by=console_user, role="owner").plaintext, tenant=tenant, user=console_user)
    start_site(api, "open-me", {"/": {"headers": [["Content-Type", "text/html"]], "body": "<h1 id='front'>the instance's own page</h1>"}})
    address = f"http://open-me.instances.localhost:{port}"

    page = logged_in_page
    page.goto(f"{live_server.url}/instances/open-me")
    expect(page.get_by_test_id("access-url")).to_have_text(address)
    bare = page.context.new_page()
    assert bare.goto(address + "/").status == 401  # the address alone, logged in or not: no credentials there
    bare.close()

    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Open").click()
    instance_page = opened.value
    instance_page.wait_for_load_state()
    expect(instance_page.locator("#front")).to_have_text("the instance's own page")
    assert instance_page.url == address + "/"  # the grant is gone from the address bar

    cookies = {c["name"]: c for c in page.context.cookies(address)}
    assert set(cookies) == {"orchestrio_instance_pass"}, cookies  # not the console's session
    assert cookies["orchestrio_instance_pass"]["httpOnly"] and cookies["orchestrio_instance_pass"]["domain"] == "open-me.instances.localhost"
    instance_page.reload()
    expect(instance_page.locator("#front")).to_be_visible()
