"""Issue 14, finding 14: bad credentials are throttled per source on every surface that takes
them (the API, the tunnel, the gateway, an instance's own hostname), with one counter per source
shared by all of them; valid credentials from a throttled source still work."""

from __future__ import annotations

import pytest
from django.test import Client

from instances.models import Instance
from orchestrio import tokens

from ..helpers import Api

pytestmark = pytest.mark.slow

HOSTNAME = "gw-host.instances.localhost"


@pytest.fixture
def host(live):
    live("gw-host")
    return Instance.objects.get(instance_id="gw-host")


@pytest.fixture
def three_failures(settings):
    # Per hour, not per minute: a fixed window that turns between the third failure and the fourth
    # (a slow, loaded machine) would reset the count and flake the test.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth_failure": "3/h"}


def guess() -> str:
    return tokens.generate("live").plaintext


def call(path: str, token: str | None = None, *, remote: str = "127.0.0.1", **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client(REMOTE_ADDR=remote).post(path, b"{}", content_type="application/json", **headers, **extra)


def assert_throttled(response) -> None:
    assert response.status_code == 429, (response.status_code, response.content[:300])
    assert int(response["Retry-After"]) >= 1
    assert b"failed authentication" in b"".join(response) if response.streaming else b"failed authentication" in response.content


SURFACES = {
    "tunnel": lambda token=None, **kw: call("/tunnel/gw-host/x", token, **kw),
    "gateway": lambda token=None, **kw: call("/gateway/gw-host/hook", token, **kw),
    "hostname": lambda token=None, **kw: call("/x", token, HTTP_HOST=HOSTNAME, **kw),
}


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_bad_tokens_are_throttled_and_valid_ones_still_pass(api, host, three_failures, surface):
    if surface == "gateway":
        assert api.post("instances/gw-host/gateway-policies", {"slug": "hook", "provider": "api-key"}).status_code == 201
    send = SURFACES[surface]
    for _ in range(3):
        assert send(guess()).status_code == 401
    assert_throttled(send(guess()))
    assert_throttled(send("not-a-token"))
    # The tenant's valid token, from the same address, is proxied.
    assert send(api.token).status_code == 200
    assert_throttled(send(guess()))
    # Another address has its own allowance.
    assert send(guess(), remote="198.51.100.7").status_code == 401


def test_an_oidc_token_that_fails_verification_counts_too(api, host, three_failures, issuer):
    idp = issuer()
    assert api.post("instances/gw-host/gateway-policies", {"slug": "ci", "provider": "oidc", "issuer": idp.url, "audience": "orchestrio"}).status_code == 201
    wrong_audience = idp.token(audience="someone-else")
    for _ in range(3):
        assert call("/gateway/gw-host/ci", wrong_audience).status_code == 401
    assert_throttled(call("/gateway/gw-host/ci", wrong_audience))
    assert call("/gateway/gw-host/ci", idp.token()).status_code == 200


def test_requests_without_credentials_are_not_counted(api, host, three_failures):
    for _ in range(5):
        assert call("/tunnel/gw-host/x").status_code == 401
    assert call("/tunnel/gw-host/x", guess()).status_code == 401


def test_one_counter_per_source_across_every_surface(api, host, three_failures):
    """A guesser cannot get a fresh allowance by moving from the API to the tunnel to the gateway."""
    assert Api(guess()).get("tenant").status_code == 401
    assert call("/tunnel/gw-host/x", guess()).status_code == 401
    assert call("/x", guess(), HTTP_HOST=HOSTNAME).status_code == 401
    assert_throttled(call("/tunnel/gw-host/x", guess()))
    api_response = Api(guess()).get("tenant")
    assert api_response.status_code == 429 and "failed authentication" in api_response.json()["detail"]
    # And valid credentials still work on each of them.
    assert api.get("tenant").status_code == 200
    assert call("/tunnel/gw-host/x", api.token).status_code == 200
