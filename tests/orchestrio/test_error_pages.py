"""The console's 403/404/500/503 pages (issue 16, item 9): in the console's layout, readable under
its Content-Security-Policy (no inline style or script), and the API's paths keep JSON."""

from __future__ import annotations

import re

import pytest
from django.test import Client, RequestFactory, override_settings

from orchestrio import views

pytestmark = pytest.mark.urls("tests.orchestrio.error_urls")


def _assert_styled(response, heading: str) -> str:
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'data-testid="error-page"' in page and heading in page
    assert re.search(r'<link rel="stylesheet" href="[^"]*console/console\.css"', page), "not in the console's layout"
    # The console's CSP has no 'unsafe-inline': an inline style or script would be dropped.
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    return page


def test_404_page_in_the_console_layout(client, db):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = _assert_styled(response, "This page does not exist")
    assert "Content-Security-Policy" in response and "'unsafe-inline'" not in response["Content-Security-Policy"].split("style-src")[-1].split(";")[0]
    assert "Back to the console" in page


def test_404_page_keeps_the_sidebar_for_a_logged_in_user(client, tenant, owner):
    client.force_login(owner)
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = _assert_styled(response, "This page does not exist")
    assert 'class="sidebar"' in page and owner.username in page


def test_403_page_hides_the_exception_text(client, db):
    response = client.get("/boom/403")
    assert response.status_code == 403
    page = _assert_styled(response, "You are not allowed to see this page")
    assert "internal reason" not in page


def test_500_page_in_the_console_layout_without_the_user_or_details(client, tenant, owner):
    client.force_login(owner)
    client.raise_request_exception = False
    response = client.get("/boom/500")
    assert response.status_code == 500
    page = _assert_styled(response, "Something went wrong on our side")
    assert "internal detail" not in page and "RuntimeError" not in page
    assert owner.username not in page  # rendered without the request: no user, no tenant


def test_500_page_needs_no_database():
    # No `db` fixture: any query here fails the test (pytest-django blocks database access).
    request = RequestFactory().get("/instances/")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        response = views.handler500(request)
    assert response.status_code == 500
    _assert_styled(response, "Something went wrong on our side")


@pytest.mark.parametrize(("path", "status"), [("/api/v1/boom/403", 403), ("/api/v1/no-such-endpoint", 404), ("/api/v1/boom/500", 500)])
def test_api_paths_keep_json_errors(db, path, status):
    client = Client(raise_request_exception=False)
    response = client.get(path)
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert "internal" not in body["detail"] or status == 500


@override_settings(DEBUG=False)
def test_503_page_in_the_console_layout(db):
    from django.db import OperationalError

    request = RequestFactory().get("/")
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        response = views.handler500(request)
    assert response.status_code == 503 and response["Retry-After"]
    _assert_styled(response, "Temporarily unavailable")


def test_csrf_failure_is_the_styled_403_page_in_a_persons_words(db, tenant, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post("/tokens", {"name": "x"})
    assert response.status_code == 403
    page = _assert_styled(response, "This form could not be accepted")
    assert "reload the page and submit the form again" in page


def test_a_role_refusal_uses_the_error_layout(client, tenant):
    from ..factories import MembershipFactory, UserFactory

    member = UserFactory(username="member@acme.example")
    MembershipFactory(user=member, tenant=tenant, role="member")
    client.force_login(member)
    response = client.get("/billing/alerts")
    assert response.status_code == 403
    page = _assert_styled(response, "Not allowed")
    assert "Ask an owner or admin of acme-corp" in page


@override_settings(DEBUG=True)
def test_in_development_a_404_is_the_console_page_not_djangos_technical_one(db):
    """`make run` runs with DEBUG on, where Django would answer with its technical 404 page (its
    inline styles blocked by the CSP); orchestrio.debugpages gives the console's page instead."""
    client = Client()  # built under DEBUG: its middleware chain includes the DEBUG-only one
    for path in ("/no/such/page", "/boom/404"):
        response = client.get(path)
        assert response.status_code == 404, path
        page = _assert_styled(response, "This page does not exist")
        assert "URLconf" not in page and "no such thing" not in page
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api["Content-Type"].startswith("application/json")
