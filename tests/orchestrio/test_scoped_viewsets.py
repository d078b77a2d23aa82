"""The base viewset scopes from declarations: a nested route (`/instances/{id}/tasks`,
`/instances/{id}/gateway-policies`) reads its parent instance once per request, under the tenant
and the token's instance scope; outside them it is 404, whatever the route."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ..factories import InstanceFactory
from ..helpers import Api, assert_error

pytestmark = pytest.mark.django_db

NESTED = ["instances/{}/tasks", "instances/{}/gateway-policies"]


def _instance_reads(captured) -> int:
    return sum(1 for query in captured if query["sql"].lstrip().startswith("SELECT") and 'FROM "instances_instance"' in query["sql"])


@pytest.mark.parametrize("route", NESTED)
def test_a_nested_list_reads_its_parent_once(api, tenant, route):
    InstanceFactory(tenant=tenant, instance_id="web-01")
    api.get("tenant")  # the token's first use writes last_used_at
    with CaptureQueriesContext(connection) as captured:
        response = api.get(route.format("web-01"))
    assert response.status_code == 200, response.content
    assert _instance_reads(captured) == 1, [query["sql"] for query in captured]


@pytest.mark.parametrize("route", NESTED)
def test_a_nested_route_outside_the_scope_is_404(api, tenant, other_api, route):
    InstanceFactory(tenant=tenant, instance_id="web-01")
    InstanceFactory(tenant=tenant, instance_id="web-02")
    InstanceFactory(tenant=other_api.tenant, instance_id="theirs-01")
    gone = InstanceFactory(tenant=tenant, instance_id="gone-01", state="destroyed")
    gone.destroyed_at = gone.created_at
    gone.save(update_fields=["destroyed_at"])
    scoped = Api(api.post("api-tokens", {"name": "one", "instance_id": "web-01"}).json()["token"])
    assert scoped.get(route.format("web-01")).status_code == 200
    assert_error(scoped.get(route.format("web-02")), 404, contains="no instance 'web-02'")
    assert_error(api.get(route.format("theirs-01")), 404, contains="no instance 'theirs-01'")
    assert_error(api.get(route.format("gone-01")), 404)
    assert_error(api.get(route.format("nope-01")), 404)
