"""The live fragment of the overview (static/console/live.js polls it): usage and recent
activity, the partial the page includes, for the current tenant only, constant queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrio.services import activity_record
from orchestrio.tenancy import Actor

from ..factories import InstanceFactory, TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _queries(client) -> int:
    client.get("/overview/live")
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/overview/live").status_code == 200
    return len(captured)


def test_the_overview_fragment_follows_usage_and_activity(console, tenant):
    assert 'data-live="/overview/live"' in console.get("/").content.decode()
    fragment = console.get("/overview/live").content.decode()
    assert 'data-testid="usage-instances">0' in fragment and "Use the API" not in fragment and "<html" not in fragment
    InstanceFactory(tenant=tenant, instance_id="counted-1", state="running")
    activity_record(actor=Actor.system(), action="instance.create", tenant=tenant, object_type="instance", object_id="counted-1")
    fragment = console.get("/overview/live").content.decode()
    assert 'data-testid="usage-instances">1' in fragment and "counted-1" in fragment


def test_another_tenants_usage_and_activity_are_not_shown(console, tenant):
    other = TenantFactory(id="other-corp")
    InstanceFactory(tenant=other, instance_id="theirs-1", state="running")
    activity_record(actor=Actor.system(), action="instance.create", tenant=other, object_type="instance", object_id="theirs-1")
    fragment = console.get("/overview/live").content.decode()
    assert 'data-testid="usage-instances">0' in fragment and "theirs-1" not in fragment


def test_the_overview_fragment_costs_the_same_queries_for_2_and_10_events(console, tenant):
    # The same kinds of object (each kind's links cost one query), more of them.
    activity_record(actor=Actor.system(), action="tenant.update", tenant=tenant, object_type="tenant", object_id=tenant.pk)
    InstanceFactory(tenant=tenant, instance_id="i-0", state="running")
    activity_record(actor=Actor.system(), action="instance.create", tenant=tenant, object_type="instance", object_id="i-0")
    few = _queries(console)
    for n in range(1, 9):
        InstanceFactory(tenant=tenant, instance_id=f"i-{n}", state="running")
        activity_record(actor=Actor.system(), action="instance.create", tenant=tenant, object_type="instance", object_id=f"i-{n}")
    fragment = console.get("/overview/live").content.decode()
    assert fragment.count('href="/instances/i-') == 9
    assert _queries(console) == few
