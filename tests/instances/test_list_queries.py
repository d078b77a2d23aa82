"""The instance list costs the same number of queries for 5 instances as for 50: related rows
(blueprints, unfinished operations, custom domains) are fetched per page, never per instance."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from domains.models import CustomDomain
from instances.models import Blueprint, Instance, InstancePlan, Operation, Region

from ..factories import InstanceFactory

pytestmark = pytest.mark.django_db


def _fleet(tenant, count: int) -> None:
    """`count` instances that differ in everything the record shows: blueprint, plan, region,
    state, labels, an unfinished operation, a custom domain (or none)."""
    blueprints = [Blueprint.objects.get(name="OpenClaw", tenant=None), Blueprint.objects.create(tenant=tenant, name=f"Own{count}")]
    plans = list(InstancePlan.objects.all()[:2])
    regions = list(Region.objects.all()[:2])
    for i in range(count):
        instance = InstanceFactory(
            tenant=tenant, instance_id=f"fleet{count}-{i:03d}", blueprint=blueprints[i % 2], plan_id=plans[i % len(plans)].pk,
            region_id=regions[i % len(regions)].pk, state=["running", "stopped", "stopping"][i % 3], labels={"i": str(i)},
        )  # fmt: skip
        if instance.state == "stopping":
            Operation.objects.create(instance=instance, tenant=tenant, kind="stop", status="running", requested_by="test", requested_by_type="user")
        if i % 4 == 0:
            CustomDomain.objects.create(instance=instance, tenant=tenant, domain=f"app{i}.fleet{count}.example.com", verification_token="t")


def _list_queries(api, limit: int) -> tuple[int, dict]:
    api.get("tenant")  # the token's first use records last_used_at (one UPDATE), not counted here
    with CaptureQueriesContext(connection) as captured:
        response = api.get("instances", limit=limit)
    assert response.status_code == 200, response.content
    return len(captured), response.json()


def test_the_list_costs_the_same_queries_for_5_and_50_instances(api, tenant, django_assert_num_queries):
    _fleet(tenant, 5)
    few, body = _list_queries(api, 200)
    assert body["count"] == 5 and len(body["results"]) == 5
    assert {row["operation"]["kind"] for row in body["results"] if row["operation"]} == {"stop"}
    assert sum(1 for row in body["results"] if row["custom_domain"]) == 2

    _fleet(tenant, 45)
    with django_assert_num_queries(few):
        response = api.get("instances", limit=200)
    body = response.json()
    assert body["count"] == 50 and len(body["results"]) == 50
    assert sum(1 for row in body["results"] if row["operation"]) == 16
    assert sum(1 for row in body["results"] if row["custom_domain"]) == 2 + 12


def test_the_page_size_does_not_change_the_queries(api, tenant):
    _fleet(tenant, 50)
    full = {limit: _list_queries(api, limit)[0] for limit in (5, 25, 50)}
    assert len(set(full.values())) == 1, full
    # A first page shorter than the limit is the whole list: its count needs no COUNT query.
    partial, body = _list_queries(api, 200)
    assert partial == full[5] - 1 and body["count"] == 50 and len(body["results"]) == 50
    assert Instance.objects.filter(tenant=tenant).count() == 50


def test_unfiltered_pages_walk_the_same_rows_as_the_orm(api, tenant, other_api):
    """Without filters the list counts and pages by compiled queries; with them, through the ORM:
    both must give the listed instances in the same order, every page, for a scoped token too."""
    from datetime import timedelta

    from django.utils import timezone

    from instances.selectors import listed_instances

    from ..helpers import Api

    _fleet(tenant, 12)
    now = timezone.now()
    for i, instance in enumerate(Instance.objects.filter(tenant=tenant).order_by("pk")):
        # Ties in created_at are ordered by id, like everything else.
        Instance.objects.filter(pk=instance.pk).update(created_at=now - timedelta(seconds=i // 3))
    InstanceFactory(tenant=tenant, instance_id="gone-01", destroyed_at=now, state="destroyed")
    InstanceFactory(tenant=other_api.tenant, instance_id="theirs-01")
    expected = list(listed_instances(tenant=tenant).values_list("instance_id", flat=True))
    assert len(expected) == 12 and "gone-01" not in expected

    def walk(client, **filters):
        seen, offset = [], 0
        while True:
            body = client.get("instances", limit=5, offset=offset, **filters).json()
            seen += [row["instance_id"] for row in body["results"]]
            if body["next"] is None:
                return body["count"], seen
            offset += 5

    assert walk(api) == (12, expected)
    assert walk(api, state=["running", "stopped", "stopping"]) == (12, expected)  # the ORM's path
    beyond = api.get("instances", limit=5, offset=40).json()
    assert (beyond["count"], beyond["next"], beyond["results"]) == (12, None, [])
    body = api.post("api-tokens", {"name": "one", "instance_id": expected[7]}).json()
    assert walk(Api(body["token"])) == (1, [expected[7]])
    assert walk(other_api) == (1, ["theirs-01"])


def test_the_console_list_reads_its_page_like_the_api(client, owner, tenant, django_assert_num_queries):
    """The console's list reads a page's records as the API's list does: the same number of
    queries for 5 instances as for 50, with the unfinished operation, blueprint and address."""
    client.force_login(owner)
    _fleet(tenant, 5)
    client.get("/instances/")  # the session's first request may write (last login, session)
    with CaptureQueriesContext(connection) as few:
        page = client.get("/instances/")
    assert page.status_code == 200 and page.content.count(b"data-instance=") == 5
    _fleet(tenant, 45)
    Instance.objects.filter(instance_id="fleet45-002").update(ip_address="10.0.0.2", port=18789)
    with django_assert_num_queries(len(few)):
        page = client.get("/instances/")
    html = page.content.decode()
    assert html.count("data-instance=") == 50 and 'stop <span class="status status-busy" data-status="running">running</span>' in html and "10.0.0.2:18789" in html and "Own45" in html
