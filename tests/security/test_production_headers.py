"""The hardening a production deployment gets, checked on a real server process run with
production settings (DEBUG off) behind a TLS-terminating proxy: HTTPS redirect, HSTS, the console's
CSP, frame denial, nosniff, Referrer-Policy, and `__Host-` Secure/HttpOnly/SameSite cookies."""

from __future__ import annotations

import httpx
import pytest

from ..factories import MembershipFactory, TenantFactory, UserFactory
from ..processes import child_env, server_process

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


@pytest.fixture
def production(real_redis_url):  # noqa: F811
    env = child_env(
        real_redis_url, DEBUG="0", SECRET_KEY="prod-" + "k3y" * 20, ALLOWED_HOSTS="127.0.0.1",
        PUBLIC_URL="https://127.0.0.1", TRUSTED_PROXY_COUNT="1", CSRF_TRUSTED_ORIGINS="https://127.0.0.1",
    )  # fmt: skip
    with server_process(env) as base:
        yield base


from ..processes import real_redis_url  # noqa: E402,F401 - fixture


def test_plain_http_is_redirected_to_https_except_health(production):
    response = httpx.get(f"{production}/login", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 301 and response.headers["Location"].startswith("https://")
    assert httpx.get(f"{production}/health").status_code in (200, 503)  # load balancers probe over HTTP


def test_console_pages_carry_the_security_headers_and_secure_cookies(production):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    user = UserFactory(username="prod@example.com")
    user.password = PBKDF2PasswordHasher().encode("a-long-enough-password", "saltsaltsalt")  # the server's hasher
    user.save()
    MembershipFactory(user=user, tenant=TenantFactory(id="prod"), role="owner")
    with httpx.Client(base_url=production, headers=HTTPS) as client:
        login = client.get("/login")
        assert login.status_code == 200
        headers = login.headers
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        # `__Host-` names: no other host (an instance's, under the same parent domain) can plant them.
        csrf_cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("__Host-csrftoken="))
        assert "Secure" in csrf_cookie and "SameSite=Lax" in csrf_cookie and "Path=/" in csrf_cookie and "Domain" not in csrf_cookie

        token = client.cookies["__Host-csrftoken"]
        # The cookie is Secure and this hop is plain HTTP (TLS ended at the proxy): send it as the browser would.
        response = client.post(
            "/login", data={"username": "prod@example.com", "password": "a-long-enough-password", "csrfmiddlewaretoken": token},
            headers={"Referer": production.replace("http://", "https://") + "/login", "Cookie": f"__Host-csrftoken={token}"},
        )  # fmt: skip
        assert response.status_code == 302, response.text[response.text.find("<h1>"):][:600]
        session = next(c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-sessionid="))
        assert "Secure" in session and "HttpOnly" in session and "SameSite=Lax" in session and "Domain" not in session


def test_api_responses_are_hardened_too(production):
    response = httpx.get(f"{production}/api/v1/instances", headers=HTTPS)
    assert response.status_code == 401 and response.headers["content-type"].startswith("application/json")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response.headers["X-Frame-Options"] == "DENY"
