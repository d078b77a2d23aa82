"""The live fragment of an instance's Domain tab (static/console/live.js polls it): the card the
page includes, tenant-scoped like the page, 404 once the domain is removed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from domains.models import CustomDomain

from ..factories import InstanceFactory, TenantFactory
from ..instances.conftest import make_instance, running  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def test_the_domain_card_is_live_until_final(console, running, tenant):
    domain = CustomDomain.objects.create(instance=running, tenant=tenant, domain="app.acme.example", verification_token="tok123")
    page = console.get("/instances/web-01/domain").content.decode()
    assert 'data-live="/instances/web-01/domain/live"' in page
    fragment = console.get("/instances/web-01/domain/live").content.decode()
    assert "tok123" in fragment and 'data-testid="domain-status">' in fragment and "<html" not in fragment
    assert "data-live-done" not in fragment
    CustomDomain.objects.filter(pk=domain.pk).update(status="active")
    fragment = console.get("/instances/web-01/domain/live").content.decode()
    assert 'data-testid="domain-status">active<' in fragment and "data-live-done" in fragment
    with CaptureQueriesContext(connection) as captured:
        console.get("/instances/web-01/domain/live")
    assert len(captured) <= 8


def test_removed_domains_and_other_tenants_are_404(console, running, tenant):
    assert console.get("/instances/web-01/domain/live").status_code == 404  # no domain
    CustomDomain.objects.create(instance=running, tenant=tenant, domain="old.acme.example", verification_token="t", removed_at=timezone.now())
    assert console.get("/instances/web-01/domain/live").status_code == 404
    other = TenantFactory(id="other-corp")
    theirs = InstanceFactory(tenant=other, instance_id="theirs-1", state="running")
    CustomDomain.objects.create(instance=theirs, tenant=other, domain="app.other.example", verification_token="t")
    assert console.get("/instances/theirs-1/domain/live").status_code == 404
    assert console.post("/instances/web-01/domain/live").status_code == 405  # a read, never the `live` action
