"""An OIDC issuer on loopback (gateway.devissuer): discovery documents and JWKS served by a real
HTTP server, with keys the test generates (and can rotate)."""

from __future__ import annotations

import uuid

import pytest

from gateway.devissuer import IssuerServer

from ..instances.conftest import live, make_instance, running  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def oidc_server():
    server = IssuerServer().start()
    yield server
    server.shutdown()


@pytest.fixture
def issuer(oidc_server, settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True  # the issuer listens on loopback (tests/security: off)

    def make(name: str | None = None):
        return oidc_server.add(name or f"iss-{uuid.uuid4().hex[:6]}")

    return make
