"""Content an instance serves never runs with the console's origin (issue 14, item 2).

On the console's host (and on `GATEWAY_HOST`, one origin shared by every tenant's instances),
whatever comes back from `/gateway/…` and `/tunnel/…` is sandboxed (`Content-Security-Policy:
sandbox`: an opaque origin, no scripts, no forms), never sniffed, and cannot set or clear
anything that lives on the origin (cookies, storage, HSTS, reporting, service-worker scope…).
The caller's cookies never go upstream from there. On the instance's own hostname (its own
origin) the instance is served as it is, with its own cookies both ways, but never the console's.
"""

from __future__ import annotations

import json

import pytest
from django.core import checks
from django.test import Client

from .upstream import seen, start_site

pytestmark = pytest.mark.slow

ORIGIN_WIDE = [
    ["Set-Cookie", "sessionid=planted-by-the-instance; Path=/"],
    ["Set-Cookie", "csrftoken=planted; Path=/"],
    ["Clear-Site-Data", '"cookies", "storage"'],
    ["Strict-Transport-Security", "max-age=0"],
    ["Alt-Svc", 'h2=":8443"'],
    ["NEL", '{"report_to": "x", "max_age": 31536000}'],
    ["Report-To", '{"group": "x", "max_age": 31536000, "endpoints": [{"url": "https://evil.example/r"}]}'],
    ["Reporting-Endpoints", 'x="https://evil.example/r"'],
    ["Service-Worker-Allowed", "/"],
    ["Origin-Trial", "token"],
    ["Speculation-Rules", '"/rules.json"'],
    ["Set-Login", "logged-in"],
    ["Accept-CH", "Sec-CH-UA-Full-Version-List"],
    ["Content-Security-Policy", "sandbox allow-scripts allow-same-origin"],
    ["X-Content-Type-Options", "sniff-please"],
]
DROPPED = {name.lower() for name, _ in ORIGIN_WIDE} - {"content-security-policy", "x-content-type-options"}
PAGES = {
    # No Content-Type: a browser left to sniff would render it as HTML.
    "/": {"body": "<html><script>alert(document.cookie)</script></html>"},
    "/cookie": {"headers": [["Content-Type", "text/html"], ["X-Custom", "kept"], *ORIGIN_WIDE], "body": "<p>hi</p>"},
    "/download": {"headers": [["Content-Type", "text/html"], ["Content-Disposition", "inline; filename=page.html"]], "body": "<script>1</script>"},
    "/error": {"status": 500, "headers": [["Content-Type", "text/html"]], "body": "<script>parent.x()</script>"},
    "/webhooks/page": {"headers": [["Content-Type", "text/html"], *ORIGIN_WIDE], "body": "<script>2</script>"},
}
CONSOLE_COOKIES = "sessionid=console-session; csrftoken=console-csrf; messages=console-messages; theirs=1"


@pytest.fixture
def site(api):
    """Tenant acme-corp's instance serving PAGES, open to anyone (anonymous catch-all and slug)."""
    start_site(api, "site-01", PAGES)
    for body in ({"provider": "anonymous"}, {"slug": "page", "provider": "anonymous"}):
        assert api.post("instances/site-01/gateway-policies", body).status_code == 201
    return "site-01"


def get(path: str, *, method: str = "GET", host: str | None = None, cookie: str | None = None, token: str | None = None):
    meta = {"REQUEST_URI": path.split("?")[0]}
    if host:
        meta["HTTP_HOST"] = host
    if cookie:
        meta["HTTP_COOKIE"] = cookie
    if token:
        meta["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return Client().generic(method, path, **meta)


def assert_sandboxed(response) -> None:
    assert response["Content-Security-Policy"] == "sandbox", response.get("Content-Security-Policy")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert not response.cookies and "Set-Cookie" not in response
    present = {name.lower() for name in response.headers} & DROPPED
    assert not present, present


PROXIED = ["/tunnel/site-01/", "/tunnel/site-01/cookie", "/tunnel/site-01/download", "/tunnel/site-01/error", "/gateway/site-01/page"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_the_console_host_sandboxes_what_an_instance_serves(site, method):
    for path in PROXIED:
        response = get(path, method=method)
        assert response.status_code in (200, 500), (path, response.status_code)
        assert_sandboxed(response)
    assert get("/tunnel/site-01/cookie")["X-Custom"] == "kept"  # the instance's other headers pass


def test_the_gateways_own_answers_on_the_console_host_are_sandboxed_too(site, api):
    """Error bodies name things from the URL: no answer under /gateway or /tunnel is an exception."""
    for path, status in (
        ("/tunnel/no-such-instance/x", 404), ("/gateway/site-01/no-such-slug", 404), ("/tunnel/", 404), ("/gateway/x", 404),
        ("/gateway/site-01/page/%2e%2e/x", 404),
    ):  # fmt: skip
        response = get(path)
        assert response.status_code == status, (path, response.status_code)
        assert response["Content-Type"] == "application/json" and "detail" in json.loads(response.content)
        assert_sandboxed(response)
    api.post("instances/site-01/stop")
    from ..helpers import run_jobs

    run_jobs()
    stopped = get("/tunnel/site-01/")
    assert stopped.status_code == 409
    assert_sandboxed(stopped)


def test_no_cookie_the_caller_sends_to_the_console_host_goes_upstream(site, api):
    get("/tunnel/site-01/cookie", cookie=CONSOLE_COOKIES)
    get("/gateway/site-01/page", cookie=CONSOLE_COOKIES)
    assert [r["cookie"] for r in seen(api, "site-01")] == [None, None]


def test_the_instances_hostname_is_its_own_origin(site, api):
    host = "site-01.instances.localhost"
    response = get("/cookie", host=host, cookie=CONSOLE_COOKIES)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == "sandbox allow-scripts allow-same-origin"  # the instance's own
    assert "sessionid=planted-by-the-instance" in response["Set-Cookie"]  # its own cookie, for its own origin
    # Its cookies come back to it; the console's never do (they reach this host only when the
    # console's cookie domain covers it).
    assert [r["cookie"] for r in seen(api, "site-01")] == ["theirs=1"]
    get("/", host=host, cookie="sessionid=x; csrftoken=y")
    assert seen(api, "site-01")[-1]["cookie"] is None


@pytest.fixture
def gateway_host(settings):
    settings.GATEWAY_HOST = "gateway.localhost"
    return "gateway.localhost:8000"


CONSOLE_PATHS = [
    "/", "/login", "/signup", "/tokens", "/instances/", "/api/v1/tenant", "/api/v1/api-tokens", "/api/schema", "/docs", "/redoc",
    "/admin/", "/admin/login/", "/admin/django-rq/", "/static/console/console.js", "/billing/stripe/webhook", "/internal/tls/ask",
    "/metrics", "/favicon.ico", "/gateway", "/tunnel",
]  # fmt: skip


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_gateway_host_serves_nothing_of_the_console(site, api, gateway_host, method):
    """A page there must not reach the console same-origin: no console page, no API, no admin."""
    for path in CONSOLE_PATHS:
        response = get(path, method=method, host=gateway_host, token=api.token)
        assert response.status_code == 404, (path, response.status_code)
        assert "detail" in json.loads(response.content)
        assert_sandboxed(response)
    health = get("/health", host=gateway_host)  # for load balancers (503 here: no worker runs)
    assert health.status_code in (200, 503) and "checks" in json.loads(health.content)


def test_the_gateway_host_serves_instances_sandboxed_and_without_cookies(site, api, gateway_host):
    """Every tenant's instances share the gateway host's origin: there too, nothing an instance
    serves may run with it, or set cookies another tenant's page would then read."""
    for path in PROXIED:
        response = get(path, host=gateway_host, cookie=CONSOLE_COOKIES)
        assert response.status_code in (200, 500), (path, response.status_code)
        assert_sandboxed(response)
    assert {r["cookie"] for r in seen(api, "site-01")} == {None}


def test_links_name_the_gateway_host_when_there_is_one(site, api, gateway_host):
    policies = api.get("instances/site-01/gateway-policies").json()["results"]
    assert sorted(p["endpoint"] for p in policies) == [
        "http://gateway.localhost:8000/gateway/site-01/page", "http://gateway.localhost:8000/tunnel/site-01/",
    ]  # fmt: skip


def _security_errors(settings, **overrides):
    for name, value in overrides.items():
        setattr(settings, name, value)
    return [m for m in checks.run_checks(tags=[checks.Tags.security]) if m.id.startswith("orchestrio.gateway")]


def test_the_layout_is_checked_at_startup(settings):
    assert not _security_errors(settings, GATEWAY_HOST="gateway.example.net", PUBLIC_URL="https://console.example.com")
    same = _security_errors(settings, GATEWAY_HOST="console.example.com")
    assert [m.id for m in same] == ["orchestrio.gateway.E001"]
    trusted = _security_errors(settings, GATEWAY_HOST="gateway.example.net", CSRF_TRUSTED_ORIGINS=["https://console.example.com", "https://gateway.example.net"])
    assert [m.id for m in trusted] == ["orchestrio.gateway.E002"]
    shared = _security_errors(settings, CSRF_TRUSTED_ORIGINS=["https://console.example.com"], SESSION_COOKIE_DOMAIN=".example.net")
    assert [m.id for m in shared] == ["orchestrio.gateway.W001"]


def test_deployment_webhook_urls_name_the_gateway_host(api, gateway_host):
    created = api.post("deployments", {"name": "web", "environment": "staging"})
    assert created.status_code == 201, created.content
    assert created.json()["webhook_url"] == f"http://gateway.localhost:8000/gateway/{created.json()['instance_id']}/web"


@pytest.mark.parametrize("host", ["instances.localhost", "a.b.instances.localhost", "-x-.instances.localhost", "UPPER.Instances.Localhost."])
def test_every_name_under_base_domain_is_an_instances_never_the_consoles(db, host):
    """No console page (the login form, say) is ever served beside instance pages."""
    response = get("/login", host=host)
    assert response.status_code == 404 and "detail" in json.loads(response.content), (host, response.status_code)
