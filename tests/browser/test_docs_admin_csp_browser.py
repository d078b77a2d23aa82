"""The admin, Swagger UI and ReDoc still render under their Content-Security-Policy, and the
browser reports no violation of it (issue 14, finding 15)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def watched(page):
    """The page, and every CSP violation and script error it reports."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"{page.url}: {message.text}") if "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.set_default_timeout(15_000)
    return page, problems


def test_swagger_ui_renders_the_schema(watched, live_server):
    page, problems = watched
    response = page.goto(f"{live_server.url}/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Orchestrio API" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock-tag", has_text="instances").first.wait_for()
    assert not problems, problems


def test_redoc_renders_the_schema(watched, live_server):
    page, problems = watched
    response = page.goto(f"{live_server.url}/redoc")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_role("heading", name="Orchestrio API").first.wait_for()
    page.get_by_placeholder("Search...").fill("instances")  # search runs in ReDoc's worker
    page.locator("[data-role='search:results'] li, label[role=menuitem]").first.wait_for()
    # ReDoc's attribution logo comes from its CDN: refused (nothing off-site loads), and ReDoc
    # hides the image when it fails.
    assert not [p for p in problems if "cdn.redoc.ly/redoc/logo-mini.svg" not in p], problems


def test_the_admin_works_under_its_policy(watched, live_server, console_user):
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=console_user.pk).update(is_staff=True, is_superuser=True)
    page, problems = watched
    response = page.goto(f"{live_server.url}/admin/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_label("Email").or_(page.get_by_label("Username")).first.fill(console_user.username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")
    # A change list with actions: admin/js/actions.js wires the select-all box.
    page.goto(f"{live_server.url}/admin/orchestrio/apitoken/")
    select_all = page.locator("#action-toggle")
    if select_all.count():
        select_all.check()
    # django-rq's pages under the admin, with their inline script allowed by hash.
    page.goto(f"{live_server.url}/admin/django-rq/")
    assert page.locator("#content").count() == 1
    page.goto(f"{live_server.url}/admin/django-rq/queues/0/")
    assert not problems, problems
