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


def test_the_task_form_shows_every_error_at_once(logged_in_page, live_server, console_user):
    """One submit with four mistakes shows four messages, each under its field (issue 16 item 10:
    the form used to reveal them one submit at a time)."""
    from tasks.models import Task

    from ..factories import InstanceFactory

    InstanceFactory(tenant=console_user.memberships.get().tenant, instance_id="form-host")
    page = logged_in_page
    page.goto(f"{live_server.url}/instances/form-host/tasks")
    page.get_by_label("Operation code").fill("has spaces")
    page.get_by_label("Script path").fill("etc/backup.sh")
    page.get_by_label("Arguments (JSON object)").fill('{"a": }')
    page.get_by_label("Timeout (seconds)").fill("0")
    page.get_by_role("button", name="Run task").click()

    def error_of(label: str):
        return page.locator(".field", has=page.get_by_label(label, exact=True)).locator(".error")

    expect(error_of("Operation code")).to_contain_text("the operation code is 1–64 letters")
    expect(error_of("Script path")).to_contain_text("the script path must be absolute: start it with /")
    expect(error_of("Arguments (JSON object)")).to_contain_text("this is not valid JSON: expecting value at line 1, column 7")
    expect(error_of("Timeout (seconds)")).to_contain_text("the timeout must be from 1 to 3600 seconds")
    expect(page.locator(".field .error")).to_have_count(4)
    assert not Task.objects.exists()

    # Fixed JSON with a bad argument name: it is reported with the path outside the task folders.
    page.get_by_label("Operation code").fill("backup")
    page.get_by_label("Script path").fill("/etc/backup.sh")
    page.get_by_label("Arguments (JSON object)").fill('{"bad key": 1}')
    page.get_by_label("Timeout (seconds)").fill("60")
    page.get_by_role("button", name="Run task").click()
    expect(error_of("Script path")).to_contain_text("under one of this blueprint's task folders")
    expect(error_of("Arguments (JSON object)")).to_contain_text("argument name 'bad key'")
    expect(page.locator(".field .error")).to_have_count(2)
