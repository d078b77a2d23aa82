"""The console's live fragments of the instances list and the instance page
(static/console/live.js polls them): the same partials the pages include, scoped to the tenant
like the pages, and cheap — a constant number of queries however many rows they show."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from instances.models import LogLine, Operation

from ..factories import InstanceFactory, MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _queries(client, url: str) -> tuple[int, object]:
    client.get(url)  # the session's first read (and the template cache) are not what is measured
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured), response


def test_the_pages_poll_their_fragment_at_the_configured_interval(console, make_instance, settings):
    settings.CONSOLE_LIVE_INTERVAL_SECONDS = 7
    make_instance(instance_id="polled-1", state="running")
    page = console.get("/instances/?state=running").content.decode()
    assert 'data-live="/instances/live?state=running"' in page and 'data-live-interval="7000"' in page
    detail = console.get("/instances/polled-1").content.decode()
    assert 'data-live="/instances/polled-1/live"' in detail and 'data-live-interval="7000"' in detail


def test_the_list_fragment_is_the_table_the_page_shows_with_its_filters(console, make_instance):
    make_instance(instance_id="shown-1", state="running")
    make_instance(instance_id="shown-2", state="stopped")
    fragment = console.get("/instances/live").content.decode()
    assert 'data-instance="shown-1"' in fragment and 'data-instance="shown-2"' in fragment
    assert "<html" not in fragment and "Filter" not in fragment  # the table alone, not the page
    stopped = console.get("/instances/live?state=stopped").content.decode()
    assert 'data-instance="shown-2"' in stopped and "shown-1" not in stopped
    # the page includes the very same markup
    page = console.get("/instances/").content.decode()
    row = fragment[fragment.index('<tr data-instance="shown-1"') : fragment.index("</tr>", fragment.index('data-instance="shown-1"'))]
    assert row in page


def test_the_fragments_show_only_the_tenants_instances(console, make_instance):
    other = TenantFactory(id="other-corp")
    InstanceFactory(tenant=other, instance_id="theirs-1", state="running")
    make_instance(instance_id="ours-1", state="running")
    fragment = console.get("/instances/live").content.decode()
    assert "ours-1" in fragment and "theirs-1" not in fragment
    assert console.get("/instances/theirs-1/live").status_code == 404
    assert console.get("/instances/missing-1/live").status_code == 404
    assert console.get("/instances/ours-1/live").status_code == 200


def test_the_fragments_need_a_login_and_a_membership(client, make_instance):
    make_instance(instance_id="ours-1", state="running")
    response = client.get("/instances/ours-1/live")
    assert response.status_code == 302 and response["Location"].startswith("/login")
    client.force_login(UserFactory(username="nobody@example.com"))
    assert client.get("/instances/ours-1/live").status_code == 403
    assert client.get("/instances/live").status_code == 403


def test_a_member_of_another_tenant_gets_404(client, make_instance):
    make_instance(instance_id="ours-1", state="running")
    stranger = UserFactory(username="stranger@example.com")
    MembershipFactory(user=stranger, tenant=TenantFactory(id="stranger-co"), role="owner")
    client.force_login(stranger)
    assert client.get("/instances/ours-1/live").status_code == 404
    assert "ours-1" not in client.get("/instances/live").content.decode()


def test_the_detail_fragment_follows_the_state(console, make_instance, tenant):
    instance = make_instance(instance_id="moving-1", state="provisioning")
    operation = Operation.objects.create(instance=instance, tenant=tenant, kind="create", status="running", requested_by="test", requested_by_type="user")
    fragment = console.get("/instances/moving-1/live").content.decode()
    for part in ("header", "record", "log", "operations"):
        assert f'data-live-part="{part}"' in fragment
    assert "provisioning now" in fragment and "create running…" in fragment
    assert 'data-show-in="running" disabled' in fragment  # no stop while it provisions

    Operation.objects.filter(pk=operation.pk).update(status="succeeded")
    instance.state = "running"
    instance.save(update_fields=["state"])
    fragment = console.get("/instances/moving-1/live").content.decode()
    assert 'data-testid="state">running<' in fragment
    assert "provisioning now" not in fragment  # the notice lasts exactly as long as it is true
    operations = fragment.split('data-live-part="operations"')[1]
    assert 'data-status="succeeded">succeeded</span>' in operations and 'data-status="running"' not in operations
    assert 'data-show-in="running">Stop' in fragment  # enabled


def test_creating_in_the_console_leaves_no_stale_flash(console):
    response = console.post("/instances/new", {"instance_id": "from-form", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local"}, follow=True)
    page = response.content.decode()
    assert 'data-testid="provisioning"' in page  # said by the live header, from the state
    assert 'class="messages"' not in page  # not a flash message that outlives it


def test_the_list_fragment_costs_the_same_queries_for_3_and_30_instances(console, tenant):
    def fleet(count, start):
        for i in range(start, start + count):
            instance = InstanceFactory(tenant=tenant, instance_id=f"fleet-{i:03d}", state=["running", "stopping"][i % 2], labels={"i": str(i)})
            if instance.state == "stopping":
                Operation.objects.create(instance=instance, tenant=tenant, kind="stop", status="running", requested_by="test", requested_by_type="user")

    fleet(3, 0)
    few, response = _queries(console, "/instances/live")
    assert response.content.decode().count("<tr data-instance=") == 3
    fleet(27, 3)
    many, response = _queries(console, "/instances/live")
    assert response.content.decode().count("<tr data-instance=") == 30
    assert many == few


def test_the_detail_fragment_costs_the_same_queries_for_a_short_and_a_long_history(console, make_instance, tenant):
    instance = make_instance(instance_id="busy-1", state="running")

    def history(start, count):
        for i in range(start, start + count):
            operation = Operation.objects.create(instance=instance, tenant=tenant, kind="restart", status="succeeded", requested_by="test", requested_by_type="user")
            LogLine.objects.create(instance=instance, operation=operation, seq=i + 1, stage="restart", message=f"line {i}")

    history(0, 2)
    few, _ = _queries(console, "/instances/busy-1/live")
    history(2, 40)
    many, response = _queries(console, "/instances/busy-1/live")
    assert response.content.decode().count("<tr data-operation=") == 20  # the last 20, as the page
    assert many == few


def test_live_cannot_be_an_instance_id(console, api):
    """`/instances/live` is the list's fragment, so no instance may be called that."""
    response = console.post("/instances/new", {"instance_id": "live", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local"})
    assert response.status_code == 200 and b"is reserved" in response.content
    assert api.post("instances", {"instance_id": "live"}).status_code == 422


def test_bad_query_strings_on_the_fragments_are_not_errors(console, make_instance):
    make_instance(instance_id="ours-1", state="running")
    for url in ("/instances/live?state=nope&page=zzz", "/instances/live?region=" + "x" * 500, "/instances/live?page=-3", "/instances/ours-1/live?page=%ff", "/instances/ours-1/tasks/live?page=abc"):
        assert console.get(url).status_code == 200, url
    assert console.get("/instances/live?label=%00").status_code == 400  # refused as everywhere, never a 500
    assert console.get("/instances/" + "x" * 300 + "/live").status_code == 404


def test_the_tab_pages_heading_follows_the_state(console, make_instance, tenant):
    instance = make_instance(instance_id="tabbed-1", state="running")
    for tab in ("tasks", "gateway", "domain"):
        assert 'data-live="/instances/tabbed-1/header/live"' in console.get(f"/instances/tabbed-1/{tab}").content.decode(), tab
    assert 'data-testid="tab-state">running<' in console.get("/instances/tabbed-1/header/live").content.decode()
    instance.state = "stopped"
    instance.save(update_fields=["state"])
    assert 'data-testid="tab-state">stopped<' in console.get("/instances/tabbed-1/header/live").content.decode()
    InstanceFactory(tenant=TenantFactory(id="other-corp"), instance_id="theirs-1", state="running")
    assert console.get("/instances/theirs-1/header/live").status_code == 404
    with CaptureQueriesContext(connection) as captured:
        console.get("/instances/tabbed-1/header/live")
    assert len(captured) <= 4  # the session, the membership, the instance
