"""The tunnel and gateway proxies against a real local instance (the agent echoes what it gets)
and an OIDC issuer served on loopback."""

from __future__ import annotations

import hashlib
import json
import time

import jwt
import pytest
from django.test import Client

from billing.models import SubscriptionPlan
from instances.models import Instance

from ..factories import ApiTokenFactory
from ..helpers import run_jobs

pytestmark = pytest.mark.slow


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _json(response) -> dict:
    return json.loads(_body(response))


def call(method: str, path: str, *, token: str | None = None, body: bytes | None = None, headers: dict | None = None, **extra):
    client = Client()
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
    if token:
        meta["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.generic(method, path, data=body or b"", content_type="application/octet-stream", **meta, **extra)


@pytest.fixture
def host(live):
    live("gw-host")
    return Instance.objects.get(instance_id="gw-host")


def policy(api, **body):
    response = api.post("instances/gw-host/gateway-policies", body)
    assert response.status_code == 201, response.content
    return response.json()


# --- the tunnel without policies: the tenant's API tokens -----------------------------------------


def test_tunnel_passes_method_path_query_body_and_status(api, host):
    response = call("POST", "/tunnel/gw-host/some/path?x=1&y=two", token=api.token, body=b'{"hello": "world"}', headers={"X-Custom": "kept"})
    assert response.status_code == 200
    echo = _json(response)
    assert echo["method"] == "POST" and echo["path"] == "/some/path" and echo["query"] == {"x": ["1"], "y": ["two"]}
    assert echo["body"] == '{"hello": "world"}' and echo["body_length"] == 18
    assert echo["headers"]["x-custom"] == "kept"
    assert echo["headers"]["x-gateway-provider"] == "api-key" and echo["headers"]["x-gateway-subject"] == api.token[:12]
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        assert _json(call(method, "/tunnel/gw-host/m", token=api.token))["method"] == method


def test_caller_credentials_are_dropped_and_gateway_headers_cannot_be_forged(api, host):
    response = call(
        "GET", "/tunnel/gw-host/", token=api.token,
        headers={"Cookie": "session=secret", "X-Gateway-Subject": "admin", "X-Gateway-Provider": "forged",
                 "X-Forwarded-For": "6.6.6.6", "X-Orchestrio-Agent-Key": "guess", "Connection": "close, X-Hop", "X-Hop": "drop-me"},
    )  # fmt: skip
    headers = _json(response)["headers"]
    assert "authorization" not in headers and "cookie" not in headers
    assert headers["x-gateway-subject"] == api.token[:12] and headers["x-gateway-provider"] == "api-key"
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert "x-orchestrio-agent-key" not in headers and "x-orchestrio-gateway-key" not in headers
    assert "x-hop" not in headers


def test_tunnel_cannot_reach_the_agents_management_routes(api, host):
    for method, path in (("GET", "/api/status"), ("GET", "/config"), ("POST", "/tasks"), ("POST", "/agent-key"), ("GET", "/tasks/x")):
        response = call(method, f"/tunnel/gw-host{path}", token=api.token, body=b"{}")
        assert response.status_code == 401, (path, response.status_code)


def test_tunnel_auth_failures(api, host, tenant, owner):
    assert call("GET", "/tunnel/gw-host/").status_code == 401
    assert "API token" in _json(call("GET", "/tunnel/gw-host/"))["detail"]
    assert call("GET", "/tunnel/gw-host/", token="ork_live_" + "x" * 38).status_code == 401
    bad = call("GET", "/tunnel/gw-host/", token="not-a-token")
    assert bad.status_code == 401 and bad["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_fails_at_once(api, host, tenant, owner):
    token = ApiTokenFactory(tenant=tenant, created_by=owner)
    assert call("GET", "/tunnel/gw-host/", token=token.plaintext).status_code == 200
    api.delete(f"api-tokens/{token.pk}")
    response = call("GET", "/tunnel/gw-host/", token=token.plaintext)
    assert response.status_code == 401 and "revoked" in _json(response)["detail"]


def test_other_tenants_token_gets_404(api, host, other_api):
    response = call("GET", "/tunnel/gw-host/", token=other_api.token)
    assert response.status_code == 404
    assert call("GET", "/gateway/gw-host/hook", token=other_api.token).status_code == 404


def test_instance_scoped_token_for_another_instance_gets_404(api, host, make_instance):
    make_instance(instance_id="elsewhere", state="running")
    scoped = api.post("api-tokens", {"name": "s", "instance_id": "elsewhere"}).json()["token"]
    assert call("GET", "/tunnel/gw-host/", token=scoped).status_code == 404


def test_unknown_instance_is_404(api):
    assert call("GET", "/tunnel/no-such-host/", token=api.token).status_code == 404


# --- status mapping -------------------------------------------------------------------------------


def test_not_running_is_409(api, host):
    api.post("instances/gw-host/stop")
    run_jobs()
    response = call("GET", "/tunnel/gw-host/", token=api.token)
    assert response.status_code == 409 and "stopped" in _json(response)["detail"]


def test_refused_is_502_and_silence_is_504(api, host, settings):
    import socket
    import threading

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        free = closed.getsockname()[1]
    Instance.objects.filter(pk=host.pk).update(ip_address="127.0.0.1", port=free, socket_path="")
    response = call("GET", "/tunnel/gw-host/", token=api.token)
    assert response.status_code == 502 and "refused" in _json(response)["detail"]

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    Instance.objects.filter(pk=host.pk).update(ip_address="127.0.0.1", port=silent.getsockname()[1], socket_path="")
    settings.GATEWAY_READ_TIMEOUT_SECONDS = 0.5  # read on every request
    try:
        started = time.monotonic()
        response = call("GET", "/tunnel/gw-host/", token=api.token)
        assert response.status_code == 504 and time.monotonic() - started < 5
    finally:
        silent.close()


def test_an_instances_cookie_for_one_caller_never_reaches_it_with_the_next(api, host):
    """The proxy keeps no cookie jar: Set-Cookie goes back to the caller it was meant for, and
    what the next caller sends upstream is only what that caller sent. (On the instance's own
    hostname, where its cookies pass at all: tests/gateway/test_origin.py.)"""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Instance_(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append(self.headers.get("Cookie"))
            self.send_response(200)
            if self.path == "/login":
                self.send_header("Set-Cookie", "session=alice-secret; Path=/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Instance_)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Instance.objects.filter(pk=host.pk).update(ip_address="127.0.0.1", port=server.server_address[1], socket_path="")
        own_host = "gw-host.instances.localhost"
        login = call("GET", "/login", token=api.token, HTTP_HOST=own_host)
        assert login.status_code == 200 and "alice-secret" in login["Set-Cookie"]
        other = ApiTokenFactory(tenant=host.tenant)
        assert call("GET", "/me", token=other.plaintext, HTTP_HOST=own_host).status_code == 200
        assert seen == [None, None]
    finally:
        server.shutdown()


# --- path tricks ----------------------------------------------------------------------------------


# Dot-segments are refused before proxying: tests/gateway/test_traversal.py.
@pytest.mark.parametrize("path", ["/tunnel/gw-host//evil.example/x", "/tunnel/gw-host/a%2Fb%2F%2Fx", "/tunnel/gw-host/%2F%2Fevil.example:25/", "/tunnel/gw-host/@evil.example/"])
def test_path_tricks_stay_on_the_instance(api, host, path):
    response = call("GET", path, token=api.token)
    assert response.status_code == 200, path
    echo = _json(response)
    assert echo["echo"] is True and echo["instance_id"] == "gw-host"  # answered by our agent, nobody else


# --- gateway slugs and policies -------------------------------------------------------------------


def test_gateway_needs_an_enabled_policy_for_the_slug(api, host):
    assert call("POST", "/gateway/gw-host/stripe-webhook").status_code == 404
    created = policy(api, slug="stripe-webhook", provider="anonymous")
    response = call("POST", "/gateway/gw-host/stripe-webhook", body=b'{"type": "payment_intent.succeeded"}', headers={"Stripe-Signature": "t=1,v1=abc"})
    assert response.status_code == 200
    echo = _json(response)
    assert echo["path"] == "/webhooks/stripe-webhook" and echo["webhook_slug"] == "stripe-webhook"
    assert echo["headers"]["x-gateway-provider"] == "anonymous" and echo["headers"]["x-gateway-subject"] == "anon"
    assert echo["headers"]["stripe-signature"] == "t=1,v1=abc"
    api.patch(f"gateway-policies/{created['id']}", {"enabled": False})
    assert call("POST", "/gateway/gw-host/stripe-webhook").status_code == 404


def test_catch_all_and_slug_policies_do_not_stand_in_for_each_other(api, host):
    policy(api, provider="anonymous")  # catch-all: opens the tunnel
    assert call("GET", "/tunnel/gw-host/open").status_code == 200
    assert call("POST", "/gateway/gw-host/hook").status_code == 404  # not a slug policy
    policy(api, slug="hook", provider="api-key")
    assert call("POST", "/gateway/gw-host/hook").status_code == 401  # the slug's own policy rules
    assert call("POST", "/gateway/gw-host/hook", token=api.token).status_code == 200
    assert _json(call("GET", "/tunnel/gw-host/x"))["headers"]["x-gateway-provider"] == "anonymous"


def test_api_key_policy_allow_rules(api, host, tenant, owner):
    other = ApiTokenFactory(tenant=tenant, created_by=owner)
    policy(api, slug="ci", provider="api-key", allow=[{"sub": api.token[:12]}])
    assert call("POST", "/gateway/gw-host/ci", token=api.token).status_code == 200
    denied = call("POST", "/gateway/gw-host/ci", token=other.plaintext)
    assert denied.status_code == 401 and "not allowed by policy" in _json(denied)["detail"]


def test_catch_all_policy_replaces_the_implicit_api_key_mode(api, host, issuer):
    idp = issuer()
    policy(api, provider="oidc", issuer=idp.url, audience="orchestrio", allow=[{"repository": "acme/app"}])
    assert call("GET", "/tunnel/gw-host/", token=api.token).status_code == 401  # no api-key policy now
    token = idp.token(repository="acme/app")
    response = call("GET", "/tunnel/gw-host/", token=token)
    assert response.status_code == 200
    assert _json(response)["headers"]["x-gateway-subject"] == "repo:acme/app:ref:refs/heads/main"


# --- OIDC -------------------------------------------------------------------------------------------


PROVIDER_CONFIG = {
    "github-oidc": {}, "gitlab-oidc": {}, "gcp-oidc": {}, "terraform-oidc": {}, "oidc": {},
    "azure-oidc": {"tenant": "contoso.onmicrosoft.com"},
    "circleci-oidc": {"org_id": "0f3a8b1c-1234-4c8a-9a7e-0123456789ab"},
    "bitbucket-oidc": {"workspace": "acme"},
}  # fmt: skip


@pytest.mark.parametrize("provider", sorted(PROVIDER_CONFIG))
def test_each_oidc_provider_verifies_against_its_issuer(api, host, issuer, provider):
    idp = issuer(provider.replace("-oidc", "") + "-idp")
    created = policy(api, slug=f"p-{provider}", provider=provider, audience="orchestrio", issuer=idp.url, config=PROVIDER_CONFIG[provider], allow=[{"sub": "ci-bot"}])
    assert created["effective_issuer"] == idp.url
    ok = call("POST", f"/gateway/gw-host/p-{provider}", token=idp.token(subject="ci-bot"))
    assert ok.status_code == 200, _body(ok)
    assert _json(ok)["headers"]["x-gateway-provider"] == provider
    other_idp = issuer()
    foreign = call("POST", f"/gateway/gw-host/p-{provider}", token=other_idp.token(subject="ci-bot", issuer=idp.url))
    assert foreign.status_code == 401


@pytest.fixture
def oidc_policy(api, host, issuer):
    idp = issuer()
    policy(api, slug="deploy", provider="github-oidc", issuer=idp.url, audience="orchestrio", allow=[{"repository": "acme/app"}])
    return idp


def _denied(token, reason):
    response = call("POST", "/gateway/gw-host/deploy", token=token)
    assert response.status_code == 401, response.status_code
    detail = _json(response)["detail"]
    assert reason in detail, detail
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_valid_token_passes(oidc_policy):
    response = call("POST", "/gateway/gw-host/deploy", token=oidc_policy.token(repository="acme/app"))
    assert response.status_code == 200


def test_expired(oidc_policy):
    _denied(oidc_policy.token(repository="acme/app", lifetime=-120), "token expired")


def test_not_yet_valid(oidc_policy):
    _denied(oidc_policy.token(repository="acme/app", nbf=int(time.time()) + 600), "not valid yet")


def test_wrong_audience(oidc_policy):
    _denied(oidc_policy.token(repository="acme/app", audience="someone-else"), "wrong audience")


def test_wrong_issuer(oidc_policy):
    _denied(oidc_policy.token(repository="acme/app", issuer="https://evil.example"), "wrong issuer")


def test_bad_signature(oidc_policy):
    from cryptography.hazmat.primitives.asymmetric import rsa

    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _denied(oidc_policy.token(repository="acme/app", key=impostor), "bad signature")
    token = oidc_policy.token(repository="acme/app")
    head, payload, signature = token.split(".")
    tampered = jwt.utils.base64url_encode(json.dumps({**json.loads(jwt.utils.base64url_decode(payload)), "repository": "acme/app2"}).encode()).decode()
    _denied(f"{head}.{tampered}.{signature}", "bad signature")


def test_alg_none(oidc_policy):
    token = jwt.encode({"iss": oidc_policy.url, "aud": "orchestrio", "sub": "x", "repository": "acme/app", "exp": int(time.time()) + 60}, key=None, algorithm="none")
    _denied(token, "algorithm 'none' is not accepted")


def test_hs256_with_the_public_key(oidc_policy):
    from cryptography.hazmat.primitives import serialization

    kid, private = oidc_policy.keys[0]
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hmac as hmac_module

    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = jwt.utils.base64url_encode(json.dumps({"iss": oidc_policy.url, "aud": "orchestrio", "sub": "x", "repository": "acme/app", "exp": int(time.time()) + 60}).encode())
    signature = jwt.utils.base64url_encode(hmac_module.new(public_pem, header + b"." + payload, hashlib.sha256).digest())
    _denied((header + b"." + payload + b"." + signature).decode(), "algorithm 'HS256' is not accepted")


def test_allow_rules_refuse_other_repositories(oidc_policy):
    _denied(oidc_policy.token(repository="acme/other"), "not allowed by policy")


def test_unknown_kid_then_rotated_keys(oidc_policy, oidc_server):
    assert call("POST", "/gateway/gw-host/deploy", token=oidc_policy.token(repository="acme/app")).status_code == 200
    old_token = oidc_policy.token(repository="acme/app")
    new_kid = oidc_policy.rotate()
    hits_before = len([h for h in oidc_server.hits if h.endswith("/jwks")])
    # A token with the new kid: not in the cached key set, so the keys are fetched again.
    response = call("POST", "/gateway/gw-host/deploy", token=oidc_policy.token(repository="acme/app"))
    assert response.status_code == 200
    assert len([h for h in oidc_server.hits if h.endswith("/jwks")]) == hits_before + 1
    assert new_kid
    # The retired key no longer verifies anything.
    time.sleep(1.1)  # past the refetch guard
    _denied(old_token, "no key")
    # A made-up kid is refused without hammering the issuer (at most one refetch per interval).
    _denied(oidc_policy.token(repository="acme/app", kid="made-up"), "no key")
    hits = len([h for h in oidc_server.hits if h.endswith("/jwks")])
    _denied(oidc_policy.token(repository="acme/app", kid="made-up-2"), "no key")
    assert len([h for h in oidc_server.hits if h.endswith("/jwks")]) == hits


def test_ec_keys_work(api, host, issuer):
    idp = issuer()
    idp.rotate(kind="ec")
    policy(api, slug="ec", provider="oidc", issuer=idp.url, audience="orchestrio", allow=[{"sub": "svc"}])
    assert call("POST", "/gateway/gw-host/ec", token=idp.token(subject="svc")).status_code == 200


# --- limits and metering --------------------------------------------------------------------------


def test_each_proxied_request_counts_as_an_execution(api, host):
    from billing.metering import flush_usage
    from billing.models import UsageCounter

    for _ in range(3):
        call("GET", "/tunnel/gw-host/", token=api.token)
    flush_usage()
    assert UsageCounter.objects.get(tenant=host.tenant, instance=host).count == 3


def test_gateway_rate_limit_per_caller(api, host, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "gateway": "2/m"}
    assert call("GET", "/tunnel/gw-host/", token=api.token).status_code == 200
    assert call("GET", "/tunnel/gw-host/", token=api.token)["X-RateLimit-Remaining"] == "0"
    limited = call("GET", "/tunnel/gw-host/", token=api.token)
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1


def test_execution_quota_is_402(api, host, tenant):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(executions_per_month=1)
    from django.core.cache import cache

    cache.clear()
    assert call("GET", "/tunnel/gw-host/", token=api.token).status_code == 200
    from billing.metering import flush_usage

    flush_usage()
    cache.clear()
    over = call("GET", "/tunnel/gw-host/", token=api.token)
    assert over.status_code == 402 and _json(over)["limit"] == "executions"


# --- streaming ------------------------------------------------------------------------------------


def test_large_bodies_stream_through_and_match(api, host):
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    response = call("PUT", "/tunnel/gw-host/upload", token=api.token, body=payload)
    echo = _json(response)
    assert echo["body_length"] == size and echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    download = call("GET", f"/tunnel/gw-host/_orchestrio/blob?bytes={size}", token=api.token)
    assert download.streaming and download["Content-Length"] == str(size)
    received = hashlib.sha256()
    total = 0
    for chunk in download.streaming_content:
        received.update(chunk)
        total += len(chunk)
    assert total == size


def test_the_request_body_limit_does_not_cap_proxied_bodies(api, host, settings):
    """DATA_UPLOAD_MAX_MEMORY_SIZE is the API's and the console's limit (413); the gateway and the
    tunnel stream bodies to the instance."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    payload = b"x" * (64 * 1024)
    policy(api, slug="big", provider="api-key")
    for path, extra in (("/tunnel/gw-host/upload", {}), ("/upload", {"HTTP_HOST": "gw-host.instances.localhost:8000"}), ("/gateway/gw-host/big", {})):
        response = call("POST", path, token=api.token, body=payload, **extra)
        assert response.status_code == 200 and _json(response)["body_length"] == len(payload), path


# --- by Host: the instance's hostname and its custom domain ---------------------------------------


def test_instance_hostname_routes_to_the_tunnel(api, host):
    response = call("GET", "/any/path?q=1", token=api.token, HTTP_HOST="gw-host.instances.localhost:8000")
    assert response.status_code == 200
    echo = _json(response)
    assert echo["path"] == "/any/path" and echo["query"] == {"q": ["1"]}
    assert echo["headers"]["x-forwarded-host"] == "gw-host.instances.localhost:8000"
    assert call("GET", "/", HTTP_HOST="nobody-here.instances.localhost").status_code == 404
    # The control plane's own names are not routed.
    assert call("GET", "/api/v1/tenant", token=api.token, HTTP_HOST="localhost").status_code == 200


def test_active_custom_domain_routes_to_its_instance(api, host):
    from domains.models import CustomDomain

    api.post("instances/gw-host/gateway-policies", {"provider": "anonymous"})
    api.post("instances/gw-host/custom-domain", {"domain": "app.acme.example"})
    assert call("GET", "/hello", HTTP_HOST="app.acme.example").status_code == 400  # not verified yet: an unknown host
    CustomDomain.objects.update(status="active")
    response = call("GET", "/hello", HTTP_HOST="app.acme.example")
    assert response.status_code == 200 and _json(response)["headers"]["x-gateway-provider"] == "anonymous"
