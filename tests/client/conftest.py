"""The client against a real server: pytest-django's `live_server` (a threaded WSGI server in
this process) and a worker thread that runs the lifecycle jobs, as `make run` does."""

from __future__ import annotations

import pytest

from ..factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory


@pytest.fixture
def worker(live_server):
    from ..helpers import BackgroundWorker

    with BackgroundWorker() as running:
        yield running


@pytest.fixture
def ork_tenant(live_server):
    owner = UserFactory(username="sdk-owner@example.com")
    tenant = TenantFactory(id="sdk-corp", name="SDK Corp", plan_id="pro")
    MembershipFactory(user=owner, tenant=tenant, role="owner")
    token = ApiTokenFactory(tenant=tenant, created_by=owner, role="owner")
    return tenant, owner, token


@pytest.fixture
def ork_token(ork_tenant) -> str:
    return ork_tenant[2].plaintext


@pytest.fixture
def ork(live_server, ork_token):
    from orchestrio_client import Client

    with Client(live_server.url, ork_token, timeout=20) as client:
        yield client
