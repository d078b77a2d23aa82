"""The live fragment of the alert deliveries (static/console/live.js polls it): the table the
Alerts page includes, for the tenant's deliveries only, for those who may see alerts, constant
queries however many deliveries and attempts it shows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import AlertAttempt, AlertDelivery

from ..factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _delivery(tenant, n: int, **fields) -> AlertDelivery:
    delivery = AlertDelivery.objects.create(id=f"alr_{tenant.pk}{n}", tenant=tenant, event="instance.failed", payload={}, url="https://hooks.example/x", **fields)
    AlertAttempt.objects.create(delivery=delivery, number=1, response_code=500)
    return delivery


def _queries(client) -> int:
    client.get("/billing/alerts/live")
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/billing/alerts/live").status_code == 200
    return len(captured)


def test_the_deliveries_fragment_follows_their_status(console, tenant):
    assert 'data-live="/billing/alerts/live"' in console.get("/billing/alerts").content.decode()
    assert "No alerts sent yet" in console.get("/billing/alerts/live").content.decode()
    delivery = _delivery(tenant, 1)
    fragment = console.get("/billing/alerts/live").content.decode()
    assert delivery.pk in fragment and 'data-status="pending">pending<' in fragment and "Webhook" not in fragment
    AlertDelivery.objects.filter(pk=delivery.pk).update(status="succeeded")
    assert 'data-status="succeeded">succeeded<' in console.get("/billing/alerts/live").content.decode()


def test_only_the_tenants_deliveries_and_only_for_alert_roles(client, console, tenant):
    _delivery(TenantFactory(id="other-corp"), 1)
    assert "alr_other-corp1" not in console.get("/billing/alerts/live").content.decode()
    member = UserFactory(username="member@example.com")
    MembershipFactory(user=member, tenant=tenant, role="member")
    client.force_login(member)
    assert client.get("/billing/alerts/live").status_code == 403  # as the page itself


def test_the_fragment_costs_the_same_queries_for_2_and_20_deliveries(console, tenant):
    for n in range(2):
        _delivery(tenant, n)
    few = _queries(console)
    for n in range(2, 20):
        _delivery(tenant, n)
    assert _queries(console) == few
