"""The console's Open button (issue 16 item 4, gateway/grants.py): the owner reaches the instance's
own host without the console's session going there. A grant opens one instance, once, within a
minute; the pass it leaves is that host's only, and another tenant's instance is 404 throughout."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client

from gateway import grants
from orchestrio.models import ActivityEvent, Membership

from ..factories import InstanceFactory
from .upstream import seen, start_site

pytestmark = pytest.mark.slow
HOST = "site-01.instances.localhost:8000"


@pytest.fixture
def site(api):
    start_site(api, "site-01", {"/": {"headers": [["Content-Type", "text/plain"]], "body": "front page"}})
    return "site-01"


@pytest.fixture
def console(client, owner):
    client.force_login(owner)
    return client


def open_link(console, instance_id: str = "site-01") -> str:
    """The grant link of the console's "Opening…" page (its refresh and its Continue link)."""
    from html import unescape

    response = console.post(f"/instances/{instance_id}/open")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store", response.status_code
    page = unescape(response.content.decode())
    link = re.search(r'data-testid="open-link" href="([^"]+)"|href="([^"]+)" rel="noreferrer" data-testid="open-link"', page)
    assert link, page
    url = link.group(1) or link.group(2)
    assert f'<meta http-equiv="refresh" content="0;url={url}">' in page
    return url


def on_host(url_or_path: str, *, host: str = HOST, cookie: str | None = None, method: str = "GET", **headers):
    parts = urlsplit(url_or_path)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = {"HTTP_COOKIE": cookie} if cookie else {}
    return Client().generic(method, path, HTTP_HOST=host, **extra, **headers)


def redeem(console) -> str:
    """Open, follow the link on the instance's host; returns the pass cookie's header value."""
    response = on_host(open_link(console))
    assert response.status_code == 302 and response["Location"] == "/", response.content
    morsel = response.cookies[grants.OPEN_COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and not morsel["domain"]  # this host only
    return f"{grants.OPEN_COOKIE}={morsel.value}"


def test_the_owner_opens_the_instance_without_the_console_session(site, api, console, tenant):
    assert on_host("/").status_code == 401  # the address alone, as before: no credentials
    link = open_link(console)
    assert link.startswith(f"http://{HOST}{grants.OPEN_PATH}?grant=")
    assert ActivityEvent.objects.filter(tenant=tenant, action="instance.open", object_id="site-01").count() == 1
    cookie = redeem(console)
    response = on_host("/", cookie=f"{cookie}; sessionid=console; theirs=1")
    assert response.status_code == 200 and b"front page" in b"".join(response.streaming_content)
    # Neither the pass nor the console's cookies reach the instance.
    assert seen(api, "site-01")[-1]["cookie"] == "theirs=1"
    # On the console's own host the pass means nothing (the tunnel there takes API tokens).
    assert Client().get("/tunnel/site-01/", HTTP_COOKIE=cookie).status_code == 401


def test_a_grant_opens_once(site, console):
    link = open_link(console)
    assert on_host(link).status_code == 302
    again = on_host(link)
    assert again.status_code == 401 and "used already" in again.json()["detail"]


def test_a_grant_expires_after_a_minute(site, console, monkeypatch):
    link = open_link(console)
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + grants.GRANT_SECONDS + 5)
    expired = on_host(link)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_a_forged_grant_is_refused(site):
    response = on_host(f"{grants.OPEN_PATH}?grant=not-a-grant")
    assert response.status_code == 401 and "not valid" in response.json()["detail"]
    assert on_host(grants.OPEN_PATH).status_code == 401


def test_a_grant_or_pass_for_one_instance_opens_no_other(site, console, tenant):
    InstanceFactory(tenant=tenant, instance_id="site-02")
    other_host = "site-02.instances.localhost:8000"
    link = open_link(console)
    assert on_host(link, host=other_host).status_code == 404
    cookie = redeem(console)
    assert on_host("/", host=other_host, cookie=cookie).status_code == 401


def test_another_tenants_instance_is_404(site, console, other_api):
    InstanceFactory(tenant=other_api.tenant, instance_id="theirs-01")
    assert console.post("/instances/theirs-01/open").status_code == 404
    assert not ActivityEvent.objects.filter(action="instance.open", object_id="theirs-01").exists()
    # Their owner's grant, shown to our instance's host, names another instance: 404.
    mallory = Client()
    mallory.force_login(other_api.user)
    theirs = open_link(mallory, "theirs-01")
    assert on_host(theirs).status_code == 404


def test_the_pass_ends_with_the_membership(site, console, owner, tenant):
    cookie = redeem(console)
    assert on_host("/", cookie=cookie).status_code == 200
    Membership.objects.filter(user=owner, tenant=tenant).delete()
    assert on_host("/", cookie=cookie).status_code == 401


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [("GET", {"HTTP_SEC_FETCH_SITE": "same-site", "HTTP_SEC_FETCH_MODE": "navigate"}, 200),  # a link from elsewhere
     ("GET", {"HTTP_SEC_FETCH_SITE": "same-site", "HTTP_SEC_FETCH_MODE": "cors"}, 401),  # another instance's script
     ("GET", {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "no-cors"}, 401),
     ("POST", {"HTTP_SEC_FETCH_SITE": "same-site", "HTTP_SEC_FETCH_MODE": "navigate", "HTTP_ORIGIN": "http://evil-01.instances.localhost:8000"}, 401),
     ("POST", {"HTTP_ORIGIN": "http://evil-01.instances.localhost:8000"}, 401),  # a browser without Sec-Fetch-*
     ("POST", {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_ORIGIN": f"http://{HOST}"}, 200)],
)  # fmt: skip
def test_the_pass_counts_only_for_the_instances_own_requests(site, console, method, headers, status):
    """Every instance host is the same site as every other: SameSite=Lax lets another tenant's page
    send the pass along, so the gateway itself refuses it there."""
    cookie = redeem(console)
    assert on_host("/", cookie=cookie, method=method, **headers).status_code == status


def test_open_needs_post(site, console):
    assert console.get("/instances/site-01/open").status_code == 405


def test_the_instance_page_offers_open_and_says_how_others_get_in(console, tenant):
    InstanceFactory(tenant=tenant, instance_id="page-01")
    page = console.get("/instances/page-01").content.decode()
    assert 'action="/instances/page-01/open"' in page and 'target="_blank"' in page
    assert '<code class="copyable" data-testid="access-url">http://page-01.instances.localhost:8000</code>' in page
    assert "your console login is never sent there" in page and 'href="/instances/page-01/gateway"' in page
