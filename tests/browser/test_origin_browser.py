"""Issue 14, item 2, in a real browser: tenant A's owner, logged into the console, opens a page
served by tenant B's instance. The page tries to read the console's cookies, to list and create
API tokens with the owner's session, and to plant cookies on the console's origin. Through the
console's own host, the gateway host, and the instance's own hostname, all of it fails.

Tenant B's instance is a tenant's own server (a blueprint `command`, tests/gateway/upstream.py).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Error as PlaywrightError

from orchestrio.models import ApiToken

from ..factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from ..gateway.upstream import start_site
from ..helpers import Api

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NOT_RUN = "the page's script did not run"
# What tenant B serves. `?console=<origin>` says where the console is when the page is not on it.
ATTACK = """<!doctype html><html><head><title>tenant B</title></head><body>
<h1 id="marker">served by tenant B's instance</h1>
<pre id="result">%s</pre>
<script>
(async () => {
  const target = new URLSearchParams(location.search).get("console") || "";
  const out = {ran: true, origin: location.origin};
  try { out.cookie = document.cookie; } catch (e) { out.cookie = "error: " + e; }
  try { document.cookie = "planted=by-b; path=/"; } catch (e) { out.setCookie = "error: " + e; }
  try {
    const r = await fetch(target + "/api/v1/api-tokens", {credentials: "include"});
    out.list = r.status;
  } catch (e) { out.list = "error: " + e; }
  const csrf = (out.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
  try {
    const r = await fetch(target + "/api/v1/api-tokens", {
      method: "POST", credentials: "include", body: JSON.stringify({name: "stolen-by-b"}),
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
    });
    out.create = r.status;
    out.token = (await r.json()).token;
  } catch (e) { out.create = "error: " + e; }
  document.getElementById("result").textContent = JSON.stringify(out);
  document.title = "done";
})();
</script></body></html>""" % NOT_RUN
PAGES = {
    "/": {"headers": [["Content-Type", "text/html"]], "body": ATTACK},
    "/webhooks/page": {"headers": [["Content-Type", "text/html"]], "body": ATTACK},
    # No Content-Type at all: sniffing must not turn it into a page either.
    "/sniff": {"body": ATTACK},
    "/plant": {
        "headers": [["Content-Type", "text/html"], ["Set-Cookie", "sessionid=planted-by-b; Path=/"], ["Clear-Site-Data", '"cookies"']],
        "body": "<p>planted</p>",
    },
}


@pytest.fixture
def tenant_b(transactional_db):
    user = UserFactory(username="mallory@tenant-b.example")
    tenant = TenantFactory(id="tenant-b", name="Tenant B")
    MembershipFactory(user=user, tenant=tenant, role="owner")
    api = Api(ApiTokenFactory(tenant=tenant, created_by=user, role="owner").plaintext, tenant=tenant, user=user)
    start_site(api, "b-site", PAGES)
    for body in ({"provider": "anonymous"}, {"slug": "page", "provider": "anonymous"}):
        assert api.post("instances/b-site/gateway-policies", body).status_code == 201
    return api


def _console_cookies(page, url: str) -> dict[str, str]:
    return {c["name"]: c["value"] for c in page.context.cookies(url)}


def _visit(page, url: str) -> dict | None:
    """Open the page, let its script run to the end if it runs at all, and return what it got."""
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    assert page.locator("#marker").inner_text() == "served by tenant B's instance"
    try:
        page.wait_for_function("document.title === 'done'", timeout=2_000)
    except PlaywrightError:
        pass
    text = page.locator("#result").inner_text()
    return None if text == NOT_RUN else json.loads(text)


def _no_token_stolen(result) -> None:
    stolen = list(ApiToken.objects.filter(tenant_id="browser-co").exclude(name="").values_list("name", flat=True))
    assert "stolen-by-b" not in stolen, f"the page created a token of tenant A: {result}"


def test_a_page_of_another_tenants_instance_cannot_take_over_the_console(logged_in_page, live_server, tenant_b, settings):
    page = logged_in_page
    console = live_server.url
    before = _console_cookies(page, console)
    assert {"sessionid", "csrftoken"} <= set(before)

    # 1. On the console's own host: sandboxed, so the page's script never runs.
    for path in ("/tunnel/b-site/", "/gateway/b-site/page", "/tunnel/b-site/sniff"):
        result = _visit(page, console + path)
        _no_token_stolen(result)
        assert result is None, f"{path}: the instance's script ran with the console's origin: {result}"
    # ...and the instance cannot plant (or clear) cookies there.
    page.goto(console + "/tunnel/b-site/plant")
    assert _console_cookies(page, console) == before

    # 2. On the instance's own hostname: its script runs, but as its own origin, and sees and
    # reaches nothing of the console.
    port = urlsplit(console).port
    result = _visit(page, f"http://b-site.instances.localhost:{port}/?console={console}")
    _no_token_stolen(result)
    assert result is not None and result["origin"] == f"http://b-site.instances.localhost:{port}", result
    assert "csrftoken" not in result["cookie"] and "sessionid" not in result["cookie"], result
    assert result["list"] != 200 and result["create"] != 201 and "token" not in result, result
    page.goto(f"http://b-site.instances.localhost:{port}/plant")
    assert _console_cookies(page, console) == before

    # 3. On the gateway host (one origin for every tenant's instances): sandboxed as well, and it
    # serves no console page, API or admin that a page there could reach with credentials.
    settings.GATEWAY_HOST = "gateway.localhost"
    gateway = f"http://gateway.localhost:{port}"
    for path in ("/tunnel/b-site/", "/gateway/b-site/page"):
        result = _visit(page, f"{gateway}{path}?console={console}")
        _no_token_stolen(result)
        assert result is None, f"{path}: the instance's script ran on the gateway host: {result}"
    for path in ("/", "/tokens", "/api/v1/api-tokens", "/admin/"):
        assert page.goto(gateway + path).status == 404, path

    # The console still works for its owner, and nothing was made in its name.
    assert _console_cookies(page, console) == before
    page.goto(console + "/tokens")
    assert page.url == console + "/tokens"
    _no_token_stolen(None)
