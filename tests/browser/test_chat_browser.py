"""The Chat tab (issue 21, item 5): send a message and see the reply stream in; grant debug
consent and see it in the audit trail; save a model policy and have a chat refused outside it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_chat_consent_and_policy_in_the_console(logged_in_page, live_server, worker):
    page = logged_in_page
    page.goto(f"{live_server.url}/instances/new")
    page.get_by_label("Instance id").fill("browser-chat")
    page.get_by_role("button", name="Create instance").click()
    page.wait_for_url(f"{live_server.url}/instances/browser-chat")
    expect(page.get_by_test_id("state")).to_have_text("running", timeout=30_000)

    page.get_by_role("navigation", name="Instance").get_by_role("link", name="Chat").click()
    page.get_by_label("Message").fill("hello agent")
    page.get_by_role("button", name="Send").click()
    log = page.get_by_test_id("chat-log")
    expect(log).to_contain_text("hello agent")
    expect(log).to_contain_text("I am the agent of browser-chat", timeout=15_000)
    expect(page.locator("#chat-status")).to_contain_text("tokens in")

    expect(page.get_by_test_id("consent-state")).to_have_text("off")
    page.get_by_role("button", name="Grant debug consent").click()
    expect(page.get_by_test_id("consent-state")).to_have_text("on")
    expect(page.locator("#consent table")).to_contain_text("instance.consent.grant")

    page.get_by_label("OpenClaw Fast (openclaw-fast: $0.000500/$0.001500 per 1k in/out)").check()
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator(".messages .message-success")).to_contain_text("Model policy saved and pushed")
    # The model picker still offers `default` only if the page was loaded before: now it is the policy's.
    expect(page.locator("#chat-model option")).to_have_text(["openclaw-fast"])
    page.evaluate("document.querySelector('#chat-model').add(new Option('default', 'default', true, true))")
    page.get_by_label("Message").fill("hi again")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-status")).to_contain_text("not allowed", timeout=15_000)
