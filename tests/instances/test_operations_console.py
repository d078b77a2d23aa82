"""The console's Operations page: the tenant's operations across its instances, filtered, live."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from instances.models import Operation

from ..factories import InstanceFactory
from ..helpers import CommitClient


@pytest.fixture
def console(tenant, owner):
    client = CommitClient()
    client.force_login(owner)
    return client


def _op(instance, kind, status, minutes_ago):
    return Operation.objects.create(
        instance=instance, tenant=instance.tenant, kind=kind, status=status, requested_by="owner@example.com", requested_by_type="user",
        created_at=timezone.now() - timedelta(minutes=minutes_ago), error_code="provider_capacity" if status == "failed" else "",
    )  # fmt: skip


def test_operations_page_lists_filters_and_links(console, tenant, other_api):
    web = InstanceFactory(tenant=tenant, instance_id="web-01")
    gone = InstanceFactory(tenant=tenant, instance_id="gone-01", state="destroyed", destroyed_at=timezone.now())
    _op(web, "create", "succeeded", 60)
    _op(web, "stop", "failed", 30)
    _op(gone, "destroy", "succeeded", 10)
    _op(InstanceFactory(tenant=other_api.tenant, instance_id="theirs-01"), "create", "succeeded", 5)
    page = console.get("/operations/").content.decode()
    assert 'href="/instances/web-01"' in page and "gone-01</span> <small class=\"muted\">(destroyed)" in page
    assert "theirs-01" not in page and 'data-status="failed"' in page
    failed = console.get("/operations/live?status=failed").content.decode()
    assert failed.count("data-operation=") == 1 and "provider_capacity" in failed
    assert console.get("/operations/live?instance_id=web-01").content.decode().count("data-operation=") == 2
    since = (timezone.now() - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M")
    assert console.get(f"/operations/live?since={since}").content.decode().count("data-operation=") == 1
    bad = console.get("/operations/?since=yesterday")
    assert bad.status_code == 200 and "Nothing is listed until the filters above are corrected" in bad.content.decode()
    assert 'data-testid="operations-link"' in console.get("/activity").content.decode()


def test_operations_page_reads_in_constant_queries(console, tenant, django_assert_max_num_queries):
    web = InstanceFactory(tenant=tenant, instance_id="web-01")
    _op(web, "create", "succeeded", 60)
    with django_assert_max_num_queries(30) as few:
        console.get("/operations/live")
    baseline = len(few.captured_queries)
    for n in range(20):
        _op(InstanceFactory(tenant=tenant, instance_id=f"many-{n:02d}"), "create", "succeeded", 100 + n)
    with django_assert_max_num_queries(baseline):
        assert console.get("/operations/live").content.decode().count("data-operation=") == 21
