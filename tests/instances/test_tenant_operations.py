"""`GET /api/v1/operations`: the tenant's operations across its instances (issue 18, item 8)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from instances.models import Operation

from ..factories import ApiTokenFactory, InstanceFactory
from ..helpers import Api, assert_validation_error


def _op(instance, kind="start", status="succeeded", minutes_ago=0, **extra):
    return Operation.objects.create(
        instance=instance, tenant=instance.tenant, kind=kind, status=status, requested_by="owner@example.com",
        requested_by_type="user", created_at=timezone.now() - timedelta(minutes=minutes_ago), **extra,
    )  # fmt: skip


@pytest.fixture
def fleet(tenant):
    web = InstanceFactory(tenant=tenant, instance_id="web-01")
    api_ = InstanceFactory(tenant=tenant, instance_id="api-01", state="error")
    gone = InstanceFactory(tenant=tenant, instance_id="gone-01", state="destroyed", destroyed_at=timezone.now())
    return {
        "old": _op(web, kind="create", minutes_ago=300),
        "stop": _op(web, kind="stop", minutes_ago=120),
        "failed": _op(api_, kind="create", status="failed", minutes_ago=60, error_code="provider_capacity", error_message="no capacity"),
        "destroy": _op(gone, kind="destroy", minutes_ago=30),
        "running": _op(web, kind="start", status="running", minutes_ago=1),
    }


def _ids(response):
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_lists_every_instance_newest_first_with_the_instance(api, fleet):
    body = api.get("operations").json()
    assert body["count"] == 5
    assert [row["id"] for row in body["results"]] == [fleet[k].pk for k in ("running", "destroy", "failed", "stop", "old")]
    failed = next(row for row in body["results"] if row["id"] == fleet["failed"].pk)
    assert failed == {
        "id": fleet["failed"].pk, "kind": "create", "status": "failed", "requested_by": "owner@example.com",
        "created_at": failed["created_at"], "started_at": None, "finished_at": None, "error_code": "provider_capacity",
        "error_message": "no capacity", "reason": None, "instance_id": "api-01", "instance_destroyed": False,
    }  # fmt: skip
    destroyed = next(row for row in body["results"] if row["id"] == fleet["destroy"].pk)
    assert destroyed["instance_id"] == "gone-01" and destroyed["instance_destroyed"] is True


def test_filters(api, fleet):
    assert _ids(api.get("operations", status="failed")) == [fleet["failed"].pk]
    assert _ids(api.get("operations?status=failed&status=running")) == [fleet["running"].pk, fleet["failed"].pk]
    assert _ids(api.get("operations", kind="create")) == [fleet["failed"].pk, fleet["old"].pk]
    assert _ids(api.get("operations", instance_id="web-01")) == [fleet[k].pk for k in ("running", "stop", "old")]
    since = (timezone.now() - timedelta(minutes=90)).isoformat()
    until = (timezone.now() - timedelta(minutes=10)).isoformat()
    assert _ids(api.get("operations", since=since, until=until)) == [fleet["destroy"].pk, fleet["failed"].pk]
    assert _ids(api.get("operations", instance_id="nobody")) == []


def test_bad_filters_are_400_naming_the_parameter(api, fleet):
    assert_validation_error(api.get("operations", status="weird"), ("query", "status"))
    assert_validation_error(api.get("operations", kind="explode"), ("query", "kind"))
    assert_validation_error(api.get("operations", since="yesterday"), ("query", "since"))
    assert_validation_error(api.get("operations", instance_id="x" * 64), ("query", "instance_id"))


def test_pages_and_one_operation(api, fleet):
    first = api.get("operations", limit=2).json()
    second = api.get("operations", limit=2, offset=2).json()
    assert first["count"] == 5 and len(first["results"]) == 2 and len(second["results"]) == 2
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}
    one = api.get(f"operations/{fleet['stop'].pk}").json()
    assert one["kind"] == "stop" and one["instance_id"] == "web-01"
    assert api.get("operations/999999").status_code == 404
    assert api.get("operations/abc").status_code == 404


def test_constant_queries_whatever_the_page(api, fleet, tenant, django_assert_max_num_queries):
    with django_assert_max_num_queries(6) as small:
        api.get("operations", limit=2)
    web = fleet["old"].instance
    for n in range(30):
        _op(InstanceFactory(tenant=tenant, instance_id=f"many-{n:02d}"), minutes_ago=400 + n)
        _op(web, kind="restart", minutes_ago=500 + n)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(api.get("operations", limit=50).json()["results"]) == 50


def test_another_tenant_sees_none_and_gets_404(api, other_api, fleet):
    assert other_api.get("operations").json()["count"] == 0
    assert other_api.get("operations", instance_id="web-01").json()["count"] == 0
    response = other_api.get(f"operations/{fleet['stop'].pk}")
    assert response.status_code == 404 and "operation" in response.json()["detail"]


def test_an_instance_scoped_token_sees_its_instance_only(tenant, owner, fleet):
    scoped = ApiTokenFactory(tenant=tenant, created_by=owner, role="owner", instance_id="web-01")
    client = Api(scoped.plaintext, tenant=tenant, user=owner)
    assert _ids(client.get("operations")) == [fleet[k].pk for k in ("running", "stop", "old")]
    assert client.get(f"operations/{fleet['failed'].pk}").status_code == 404
