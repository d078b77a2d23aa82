"""What the control plane fetches for an OIDC policy goes through the outbound guard: the key set a
discovery document names is checked like the issuer itself, and a failing issuer's answer is
never repeated to the caller."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway import oidc


class _Issuer(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.hits.append(self.path)
        status, body = self.server.answer(self.server)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def rogue(settings):
    """An issuer on loopback (allowed here, as in development) that answers what a test says."""
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Issuer)
    server.daemon_threads = True
    server.hits = []
    server.url = f"http://127.0.0.1:{server.server_port}/idp"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _token(issuer: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": issuer, "aud": "orchestrio", "sub": "x", "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.mark.parametrize("jwks_uri", ["https://100.64.0.1/jwks", "https://169.254.169.254/latest/meta-data/", "https://[::ffff:10.0.0.1]/jwks", "http://10.0.0.1/jwks"])
def test_a_jwks_uri_on_a_private_address_is_refused(db, rogue, jwks_uri):
    rogue.answer = lambda server: (200, {"issuer": server.url, "jwks_uri": jwks_uri})
    with pytest.raises(oidc.OIDCError, match="not allowed"):
        oidc.verify(_token(rogue.url), issuer=rogue.url, audience="orchestrio")


def test_an_issuers_error_body_is_not_passed_on(db, rogue):
    rogue.answer = lambda server: (500, {"error": "TOP-SECRET from an internal service"})
    with pytest.raises(oidc.OIDCError) as caught:
        oidc.verify(_token(rogue.url), issuer=rogue.url, audience="orchestrio")
    assert "HTTP 500" in str(caught.value) and "TOP-SECRET" not in str(caught.value)


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"issuer": "\\ud800"}', b'{"issuer": 1e400}', b'{"issuer": 5, "jwks_uri": 7}'])
def test_a_document_that_cannot_be_kept_is_refused(db, rogue, body):
    rogue.answer = lambda server: (200, body)
    with pytest.raises(oidc.OIDCError, match="not JSON we can use|names another issuer"):
        oidc.verify(_token(rogue.url), issuer=rogue.url, audience="orchestrio")
