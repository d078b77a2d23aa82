"""Playwright (Python) driving Debian's Chromium (downloaded browsers are not used)."""

from __future__ import annotations

import pytest

from ..conftest import CHROMIUM


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM or "/usr/bin/chromium",
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def console_user(transactional_db):
    from ..factories import MembershipFactory, TenantFactory, UserFactory

    user = UserFactory(username="browser@example.com")
    tenant = TenantFactory(id="browser-co", name="Browser Co")
    MembershipFactory(user=user, tenant=tenant, role="owner")
    return user


@pytest.fixture
def logged_in_page(page, live_server, console_user):
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill(console_user.username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")
    return page


@pytest.fixture
def worker(live_server):
    from ..helpers import BackgroundWorker

    with BackgroundWorker() as running:
        yield running
