"""The console's fleet request pages: request instances, follow them, return them."""

from __future__ import annotations

import pytest

from fleet.models import FleetRequest
from instances.models import Instance, Operation

from ..factories import InstanceFactory, MembershipFactory, UserFactory
from ..helpers import CommitClient


@pytest.fixture
def console(tenant, owner):
    client = CommitClient()
    client.force_login(owner)
    return client


def _form(**values):
    return {"blueprint_name": "OpenClaw", "count": "2", "plan_id": "openclaw-basic", "instance_id_prefix": "", **values}


def test_request_follow_and_return_from_the_console(console, tenant):
    page = console.get("/fleet/")
    assert page.status_code == 200 and b"Request instances" in page.content and b"has room for 10 more instances" in page.content
    response = console.post("/fleet/", _form(instance_id_prefix="web"))
    created = FleetRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/fleet/{created.request_id}"
    detail = console.get(response["Location"]).content.decode()
    assert "Requested 2 instances" in detail and 'href="/instances/web-1"' in detail and 'data-status="pending"' in detail
    live = console.get(f"/fleet/{created.request_id}/live").content.decode()
    assert "0 of 2 done" in live and "data-live-done" not in live
    Operation.objects.filter(instance__instance_id__startswith="web-").update(status="succeeded")
    Instance.objects.filter(instance_id__startswith="web-").update(state="running")
    live = console.get(f"/fleet/{created.request_id}/live").content.decode()
    assert "2 of 2 done" in live and "data-live-done" in live and 'data-status="complete"' in live
    listed = console.get("/fleet/live").content.decode()
    assert created.request_id in listed and "2 of 2 done" in listed
    assert created.request_id in console.get("/fleet/?status=complete").content.decode()
    assert created.request_id not in console.get("/fleet/?status=failed").content.decode()

    returned = console.post(f"/fleet/{created.request_id}/return")
    back = FleetRequest.objects.get(kind="return")
    assert returned["Location"] == f"/fleet/{back.request_id}"
    assert set(Instance.objects.filter(instance_id__startswith="web-").values_list("state", flat=True)) == {"destroying"}
    assert f'returns <a href="/fleet/{created.request_id}"' in console.get("/fleet/live").content.decode()


def test_bad_input_and_plan_limits_are_said_on_the_form(console, tenant):
    for count, words in (("0", "greater than or equal to 1"), ("101", "At most 100 instances"), ("many", "Enter a whole number")):
        assert words in console.post("/fleet/", _form(count=count)).content.decode()
    InstanceFactory(tenant=tenant, instance_id="busy-1")
    text = console.post("/fleet/", _form(count="10")).content.decode()
    assert "this request needs 10 and 9 are left" in text and "Upgrade your plan" in text
    assert "instance_id_prefix" in console.post("/fleet/", _form(instance_id_prefix="Bad_Prefix")).content.decode()
    assert not FleetRequest.objects.exists()


def test_pages_read_in_constant_queries(console, django_assert_max_num_queries):
    console.post("/fleet/", _form(count="1"))
    one = FleetRequest.objects.get()
    with django_assert_max_num_queries(30) as few:
        console.get(f"/fleet/{one.request_id}/live")
    baseline = len(few.captured_queries)
    console.post("/fleet/", _form(count="5"))
    many = FleetRequest.objects.exclude(pk=one.pk).get()
    with django_assert_max_num_queries(baseline):
        console.get(f"/fleet/{many.request_id}/live")
    with django_assert_max_num_queries(30) as listed:
        console.get("/fleet/live")
    baseline = len(listed.captured_queries)
    console.post("/fleet/", _form(count="1"))
    with django_assert_max_num_queries(baseline):
        console.get("/fleet/live")


def test_another_tenant_sees_nothing(console, other_api):
    console.post("/fleet/", _form(count="1"))
    rid = FleetRequest.objects.get().request_id
    intruder = CommitClient()
    intruder.force_login(other_api.user)
    assert intruder.get(f"/fleet/{rid}").status_code == 404
    assert intruder.get(f"/fleet/{rid}/live").status_code == 404
    assert intruder.post(f"/fleet/{rid}/return").status_code == 404
    assert rid not in intruder.get("/fleet/").content.decode()


def test_a_member_may_follow_but_not_return(console, tenant):
    console.post("/fleet/", _form(count="1"))
    rid = FleetRequest.objects.get().request_id
    member = UserFactory(username="m@acme.example")
    MembershipFactory(user=member, tenant=tenant, role="member")
    client = CommitClient()
    client.force_login(member)
    page = client.get(f"/fleet/{rid}").content.decode()
    assert rid in page and "Return these instances" not in page
    assert client.post(f"/fleet/{rid}/return").status_code == 403
