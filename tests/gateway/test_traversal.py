"""Dot-segments never reach an instance (issue 14, item 3).

`/gateway/{id}/{slug}` forwards to `/webhooks/{slug}` and below only. A path such as
`/gateway/{id}/{slug}/../../private.txt` (sent with `curl --path-as-is`) used to reach the
instance as is, and a server that resolves dot-segments (most do) answered `/private.txt` — a
path the tunnel protects — to a caller with no token. Every spelling of a dot-segment an upstream
might resolve is refused with a 404 before anything is proxied, on the gateway, the tunnel and
the instance's own hostname.

The requests carry `REQUEST_URI` (the request target exactly as sent), as waitress and gunicorn
(`RAW_URI`) provide it: the proxy forwards that, not Django's decoded `PATH_INFO`.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from instances.models import Instance

from .upstream import seen, start_site

pytestmark = pytest.mark.slow


def send(method: str, raw: str, *, token: str | None = None, host: str | None = None):
    meta = {"REQUEST_URI": raw}
    if token:
        meta["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if host:
        meta["HTTP_HOST"] = host
    return Client().generic(method, raw, **meta)


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def refused(response) -> dict:
    """A 404 in API.md's shape, answered by the gateway itself: the instance got nothing."""
    assert response.status_code == 404, (response.status_code, _body(response)[:300])
    assert response["Content-Type"] == "application/json"
    body = json.loads(_body(response))
    # NUL is refused on every path by the request-limits middleware, before the proxies' own check.
    assert set(body) == {"detail"} and ("dot-segment" in body["detail"] or "NUL" in body["detail"]), body
    return body


@pytest.fixture
def agent(live, api):
    """The bundled agent (it echoes the path it gets), with an anonymous gateway endpoint `open`;
    its tunnel has no catch-all policy, so only the tenant's API tokens open it."""
    live("gw-host")
    assert api.post("instances/gw-host/gateway-policies", {"slug": "open", "provider": "anonymous"}).status_code == 201
    return Instance.objects.get(instance_id="gw-host")


# What the segments after `/gateway/gw-host/open/` may be made of, and why each is refused.
DOT_SEGMENTS = {
    "plain": "../../private.txt",
    "single-dot": "./x",
    "trailing": "..",
    "encoded": "%2e%2e/%2e%2e/private.txt",
    "encoded-upper": "%2E%2E/%2E%2E/private.txt",
    "half-encoded": ".%2e/%2e./private.txt",
    "double-encoded": "%252e%252e/%252e%252e/private.txt",  # an upstream that decodes twice (a proxy in front of an app)
    "triple-encoded": "%25252e%25252e/private.txt",
    "encoded-slash": "..%2f..%2fprivate.txt",  # one segment to us, three to an upstream that decodes %2F
    "encoded-slash-upper": "%2E%2E%2F%2E%2E%2Fprivate.txt",
    "backslash": "..\\..\\private.txt",  # Windows-style servers and frameworks split on backslashes
    "encoded-backslash": "..%5c..%5cprivate.txt",
    "path-params": "..;/..;/private.txt",  # Tomcat and Jetty strip ;params, leaving `..`
    "path-params-encoded": "%2e%2e;x=1/private.txt",
    "dot-params": ".;x/private.txt",
    "nul": "..%00/private.txt",  # C string handling stops at the NUL
    "overlong-utf8": "%c0%ae%c0%ae/private.txt",  # old decoders read C0 AE as '.'
    "fullwidth": "%ef%bc%8e%ef%bc%8e/private.txt",  # U+FF0E, '.' after NFKC normalisation
    "two-dot-leader": "%e2%80%a5/private.txt",  # U+2025, '..' after NFKC normalisation
    "trailing-space": "..%20/private.txt",  # Windows drops trailing spaces
    "after-empty-segment": "a//../../private.txt",
}


@pytest.mark.parametrize("tail", DOT_SEGMENTS.values(), ids=DOT_SEGMENTS.keys())
def test_gateway_refuses_every_dot_segment(agent, tail):
    refused(send("GET", f"/gateway/gw-host/open/{tail}"))


@pytest.mark.parametrize("raw", [
    "/gateway/gw-host/open%2f..%2f..%2fprivate.txt",  # the slash before the dots encoded too
    "/gateway/gw-host/open%2F%2E%2E%2F%2E%2E%2Fprivate.txt",
    "/gateway/gw-host/open/..",
    "/gateway/gw-host/open/%2e",
])  # fmt: skip
def test_gateway_refuses_dot_segments_glued_to_the_slug(agent, raw):
    refused(send("POST", raw))


def test_refused_before_anything_else_so_nothing_leaks(agent, api):
    """The refusal comes first: the same answer for an instance that does not exist, without
    credentials, with a method the instance may not expect, or for HEAD."""
    for raw in ("/gateway/no-such-instance/open/../x", "/tunnel/no-such-instance/../x", "/gateway/gw-host/nope/../x"):
        refused(send("GET", raw))
    refused(send("DELETE", "/tunnel/gw-host/%2e%2e/api/status", token=api.token))
    response = send("HEAD", "/gateway/gw-host/open/../x")
    assert response.status_code == 404


@pytest.mark.parametrize("tail", ["../api/status", "a/%2e%2e/%2e%2e/tasks", "..%2fconfig", "x/..;/agent-key", "..\\secrets"])
def test_tunnel_refuses_dot_segments(agent, api, tail):
    """The tunnel opens the whole instance, so a dot-segment cannot climb past its policy; but the
    agent (or the tenant's server) tells its management routes from its traffic routes by path,
    and any upstream that resolves dot-segments after that decision would be confused."""
    refused(send("GET", f"/tunnel/gw-host/{tail}", token=api.token))


@pytest.mark.parametrize("raw", ["/../../api/status", "/a/%2e%2e/config", "/x/..%5c..%5ctasks", "/%2e%2e;/secrets"])
def test_instance_hostname_refuses_dot_segments(agent, api, raw):
    refused(send("GET", raw, token=api.token, host="gw-host.instances.localhost"))


@pytest.mark.parametrize(("tail", "received"), [
    ("", "/webhooks/open"),
    ("/", "/webhooks/open"),
    ("/a.b/..c/c../...x/.hidden", "/webhooks/open/a.b/..c/c../...x/.hidden"),
    ("/%2e%2efoo/bar%2E", "/webhooks/open/%2e%2efoo/bar%2E"),
    ("/a%2Fb/c;v=1/d\\e", "/webhooks/open/a%2Fb/c;v=1/d\\e"),
    ("/100%25/%zz", "/webhooks/open/100%25/%zz"),
])  # fmt: skip
def test_paths_without_dot_segments_reach_the_instance_as_sent(agent, tail, received):
    response = send("POST", f"/gateway/gw-host/open{tail}")
    assert response.status_code == 200, _body(response)[:300]
    echo = json.loads(_body(response))
    assert echo["echo"] is True and echo["path"] == received and echo["webhook_slug"] == received[len("/webhooks/"):]


def test_a_raw_non_ascii_path_is_forwarded_encoded_not_a_500(agent, api):
    # A client may put raw UTF-8 bytes in the request line; WSGI hands them over as latin-1.
    raw = "/tunnel/gw-host/caf\u00c3\u00a9"
    response = send("GET", raw, token=api.token)
    assert response.status_code == 200, _body(response)[:300]
    assert json.loads(_body(response))["path"] == "/caf%C3%A9"


def test_the_reported_attack_no_longer_reads_a_file_the_tunnel_protects(api):
    """Issue 14's reproduction against a server that resolves dot-segments: `/private.txt` is
    behind the tunnel (API tokens only), `/webhooks/open` is public."""
    start_site(api, "files-01", {"/private.txt": {"body": "tenant secret"}, "/webhooks/open": {"body": "hello"}})
    assert api.post("instances/files-01/gateway-policies", {"slug": "open", "provider": "anonymous"}).status_code == 201
    assert send("GET", "/tunnel/files-01/private.txt").status_code == 401
    assert _body(send("GET", "/gateway/files-01/open")) == b"hello"
    for tail in ("../../private.txt", "%2e%2e/%2e%2e/private.txt", "%2E%2E/%2E%2E/private.txt", "..%2f..%2fprivate.txt"):
        response = send("GET", f"/gateway/files-01/open/{tail}")
        assert b"tenant secret" not in _body(response)
        refused(response)
    assert [r["target"] for r in seen(api, "files-01")] == ["/webhooks/open"]


@pytest.mark.django_db(transaction=True)
def test_a_real_server_forwards_the_raw_target_and_refuses_its_dot_segments(agent):
    """The same through `manage.py serve` (waitress): what counts is the request line as sent."""
    import http.client
    from urllib.parse import urlsplit

    from ..processes import child_env, server_process

    with server_process(child_env(None)) as base:
        server = urlsplit(base)

        def raw_get(target: str) -> tuple[int, dict]:
            connection = http.client.HTTPConnection(server.hostname, server.port, timeout=20)
            try:
                connection.request("GET", target)  # sent as is: http.client resolves nothing
                response = connection.getresponse()
                return response.status, json.loads(response.read())
            finally:
                connection.close()

        for tail in ("../../private.txt", "%2e%2e/%2E%2E/private.txt", "%252e%252e/x", "..%2f..%2fx", "..;/x", "..\\x"):
            status, body = raw_get(f"/gateway/gw-host/open/{tail}")
            assert status == 404 and "dot-segment" in body["detail"], (tail, status, body)
        status, body = raw_get("/gateway/gw-host/open/a%2Fb/.well-known/x?q=1")
        assert status == 200 and body["path"] == "/webhooks/open/a%2Fb/.well-known/x" and body["raw_query"] == "q=1"
