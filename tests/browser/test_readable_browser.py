"""Readable state in a real browser (issue 16 item 7), on one logged-in page: the config's
key/value editor and the allow-rule rows write the JSON the server saves, the status badge
carries an icon, and the Billing page's usage charts draw (uPlot, vendored) under the console's
CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_row_editors_save_and_usage_charts_draw(logged_in_page, live_server, console_user):
    from gateway.models import GatewayPolicy
    from instances.models import Instance

    from ..factories import InstanceFactory

    page = logged_in_page
    csp_errors = []
    page.on("console", lambda message: csp_errors.append(message.text) if "Content Security Policy" in message.text else None)
    InstanceFactory(instance_id="kv-browser", tenant=console_user.memberships.get().tenant, state="stopped", config={"greeting": "hi", "workers": 2})

    page.goto(f"{live_server.url}/instances/kv-browser")
    state = page.get_by_test_id("state")
    expect(state).to_have_text("stopped")
    assert state.evaluate("el => getComputedStyle(el, '::before').content") not in ("", "none", "normal")  # an icon, not only a colour

    editor = page.locator('[data-kv-editor="object"]')
    expect(page.locator("#id_config")).to_be_hidden()  # the rows replace the textarea
    rows = editor.locator("[data-kv-row]")
    expect(rows).to_have_count(2)
    rows.nth(0).locator(".kv-value").fill("hello")  # greeting (keys come sorted)
    rows.nth(1).get_by_role("button", name="Remove workers").click()
    editor.get_by_role("button", name="Add a row").click()
    new = editor.locator("[data-kv-row]").last
    new.get_by_label("Key", exact=True).fill("debug")
    new.get_by_label("Type").select_option("boolean")
    new.locator(".kv-value").fill("yes")
    page.get_by_role("button", name="Save config").click()
    expect(editor.get_by_role("alert")).to_contain_text("write true or false")  # not sent: nothing to guess
    new.locator(".kv-value").fill("true")
    editor.get_by_role("button", name="Edit as JSON").click()  # the power user's view: the same data
    expect(page.locator("#id_config")).to_be_visible()
    assert '"debug": true' in page.locator("#id_config").input_value()
    editor.get_by_role("button", name="Edit as rows").click()
    page.get_by_role("button", name="Save config").click()
    expect(page.locator(".message-success")).to_contain_text("Config saved")
    assert Instance.objects.get(instance_id="kv-browser").config == {"greeting": "hello", "debug": True}

    # Allow rules as rows of claim = value(s): two rules, the first with two alternatives.
    page.goto(f"{live_server.url}/instances/kv-browser/gateway")
    rules = page.locator('[data-kv-editor="rules"]')
    rules.get_by_role("button", name="Add a rule").click()
    rules.locator(".rule-claim").last.fill("repository")
    rules.locator(".rule-values").last.fill("acme/app, acme/web")
    rules.get_by_role("button", name="Add a rule").click()
    rules.locator(".rule-claim").last.fill("sub")
    rules.locator(".rule-values").last.fill("repo:acme/x:ref:main")
    page.get_by_label("Provider", exact=True).select_option("github-oidc")
    page.get_by_label("Slug").fill("rows")
    page.get_by_label("Audience").fill("orchestrio")
    page.get_by_role("button", name="Create policy").click()
    expect(page.get_by_test_id("allow-rules")).to_contain_text("repository = acme/app or acme/web")
    assert GatewayPolicy.objects.get(slug="rows").allow == [{"repository": ["acme/app", "acme/web"]}, {"sub": "repo:acme/x:ref:main"}]

    page.goto(f"{live_server.url}/billing")
    # Instance-hours, executions, the agent runtime's tokens and its cost: one chart each.
    charts = page.locator("[data-chart]")
    canvases = page.locator("[data-chart] canvas")
    expect(canvases).to_have_count(charts.count())
    assert charts.count() == 4
    assert all(box["width"] > 100 and box["height"] > 50 for box in (canvases.nth(i).bounding_box() for i in range(charts.count())))
    assert page.get_by_test_id("usage-table").locator("tbody tr").count() == 30
    assert not csp_errors, csp_errors
