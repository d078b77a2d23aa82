"""A development OIDC issuer on loopback: serves a discovery document and a JWKS for keys it
generates, and mints tokens. For trying OIDC gateway policies locally (`manage.py
oidc_dev_issuer`) and for the test suite. Never for production: its keys live in memory."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class Issuer:
    """One issuer at http://127.0.0.1:<port>/<name>; its keys can be rotated."""

    def __init__(self, server: IssuerServer, name: str) -> None:
        self.server = server
        self.name = name
        self.url = f"http://127.0.0.1:{server.server_port}/{name}"
        self.keys: list[tuple[str, object]] = []
        self.rotate()

    def rotate(self, kind: str = "rsa") -> str:
        kid = f"{self.name}-{uuid.uuid4().hex[:8]}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
        self.keys = [(kid, key)]
        return kid

    def jwks(self) -> dict:
        out = []
        for kid, key in self.keys:
            is_rsa = isinstance(key, rsa.RSAPrivateKey)
            algorithm = jwt.algorithms.RSAAlgorithm if is_rsa else jwt.algorithms.ECAlgorithm
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig", alg="RS256" if is_rsa else "ES256")
            out.append(jwk)
        return {"keys": out}

    def token(self, *, audience="orchestrio", subject="repo:acme/app:ref:refs/heads/main", lifetime=300, issuer=None, key=None, kid=None, headers=None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": issuer or self.url, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + lifetime, **claims}
        current_kid, private = self.keys[0]
        private = key or private
        algorithm = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(payload, private, algorithm=algorithm, headers={"kid": kid or current_kid, **(headers or {})})


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        parts = self.path.strip("/").split("/")
        issuer = self.server.issuers.get(parts[0])
        self.server.hits.append(self.path)
        if issuer is None:
            return self._send(404, {"error": "no such issuer"})
        if parts[1:] == [".well-known", "openid-configuration"]:
            return self._send(200, {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks", "id_token_signing_alg_values_supported": ["RS256", "ES256"]})
        if parts[1:] == ["jwks"]:
            return self._send(200, issuer.jwks())
        return self._send(404, {})

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class IssuerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.issuers: dict[str, Issuer] = {}
        self.hits: list[str] = []

    def add(self, name: str) -> Issuer:
        self.issuers[name] = Issuer(self, name)
        return self.issuers[name]

    def start(self) -> IssuerServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self
