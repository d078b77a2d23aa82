"""CSRF on every console form: every console route refuses a POST without the CSRF token (the
check runs before the view, so new routes are covered as they are added), every POST form in the
templates carries the token, and the API refuses a session-authenticated write without it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from orchestrio.middleware import API_PREFIXES

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
# Not console forms: token-authenticated or signed endpoints, and the admin's own forms.
EXEMPT = (*API_PREFIXES, "/admin/", "/static/", "/docs", "/redoc", "/health", "/metrics", "/billing/stripe/")
DUMMY = {"int": "1", "str": "x", "slug": "x", "path": "x", "uuid": "00000000-0000-0000-0000-000000000000"}


def _console_paths(patterns=None, prefix: str = "") -> list[str]:
    paths = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = str(entry.pattern)
        if route.startswith("^"):
            # Top-level regex routes are the API's (the tunnel, the gateway, the JSON 404).
            assert re.match(r"\^\(?(api|gateway|tunnel|internal)", prefix + route), f"a regex console route? {route}"
            continue
        filled = prefix + re.sub(r"<(?:(\w+):)?\w+>", lambda m: DUMMY[m.group(1) or "str"], route)
        if ("/" + filled).startswith(EXEMPT):
            continue
        if isinstance(entry, URLResolver):
            paths += _console_paths(entry.url_patterns, filled)
        elif isinstance(entry, URLPattern):
            paths.append("/" + filled)
    return sorted(set(paths))


def test_the_route_walk_finds_the_console():
    paths = _console_paths()
    for expected in ("/login", "/signup", "/tokens", "/instances/new", "/instances/x/x", "/tasks/x/cancel", "/deployments/new", "/billing/alerts", "/gateway-console/policies/x/toggle"):
        assert expected in paths
    assert not [p for p in paths if p.startswith(("/api/", "/tunnel/", "/gateway/"))]


@pytest.mark.django_db
def test_every_console_route_refuses_a_post_without_the_csrf_token(owner, tenant):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    refused, accepted = [], []
    for path in _console_paths():
        response = client.post(path, {"name": "x", "instance_id": "csrf-01"})
        (refused if response.status_code == 403 and b"CSRF" in response.content else accepted).append((path, response.status_code))
    assert not accepted, f"these console routes took a POST without a CSRF token: {accepted}"
    assert len(refused) >= 25


@pytest.mark.django_db
def test_a_logged_out_post_without_the_token_is_refused_too():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login", {"username": "someone@example.com", "password": "x"})
    assert response.status_code == 403 and b"CSRF" in response.content


def test_every_post_form_in_the_templates_carries_the_token():
    missing = []
    for template in TEMPLATES.rglob("*.html"):
        if "admin" in template.parts:
            continue
        text = template.read_text()
        for form in re.finditer(r"<form\b[^>]*>.*?</form>", text, flags=re.S | re.I):
            opening = form.group(0)[: form.group(0).index(">") + 1]
            if re.search(r"method\s*=\s*[\"']?post", opening, flags=re.I) and "{% csrf_token %}" not in form.group(0):
                missing.append(f"{template.relative_to(TEMPLATES)}: {opening}")
    assert not missing, missing


@pytest.mark.django_db
def test_the_api_refuses_a_session_write_without_the_token(owner, tenant):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.get("/api/v1/instances").status_code == 200  # the session does authenticate
    response = client.post("/api/v1/instances", {"instance_id": "csrf-02"}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
