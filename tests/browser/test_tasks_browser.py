"""Dispatch a script from the console and watch its output arrive."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_run_a_task_and_read_its_output(logged_in_page, live_server, worker):
    page = logged_in_page
    page.goto(f"{live_server.url}/instances/new")
    page.get_by_label("Instance id").fill("task-host")
    page.get_by_role("button", name="Create instance").click()
    expect(page.get_by_test_id("state")).to_have_text("running", timeout=30_000)

    page.get_by_role("link", name="Tasks").click()
    page.get_by_label("Operation code").fill("echo")
    page.get_by_label("Script path").fill("/opt/orchestrio/scripts/echo-args.sh")
    page.get_by_label("Arguments (JSON object)").fill('{"greeting": "hello; $(whoami)"}')
    page.get_by_role("button", name="Run task").click()

    expect(page.get_by_test_id("task-status")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_test_id("exit-code")).to_have_text("0")
    expect(page.get_by_test_id("stdout")).to_contain_text("arg=hello; $(whoami)")

    # A second task while one runs is refused with a clear message: start a long one first.
    page.get_by_role("link", name="← Tasks of task-host").click()
    page.get_by_label("Operation code").fill("nap")
    page.get_by_label("Script path").fill("/opt/orchestrio/scripts/sleep.sh")
    page.get_by_label("Arguments (JSON object)").fill('{"seconds": 30}')
    page.get_by_role("button", name="Run task").click()
    expect(page.get_by_test_id("task-status")).to_have_text("running", timeout=30_000)
    page.go_back()
    page.get_by_label("Operation code").fill("second")
    page.get_by_role("button", name="Run task").click()
    expect(page.get_by_role("alert")).to_contain_text("one runs at a time")

    # Cancel the long one.
    page.locator("table a.mono").first.click()  # the newest task: the long one
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel task").click()
    expect(page.get_by_test_id("task-status")).to_have_text("cancelled", timeout=30_000)
