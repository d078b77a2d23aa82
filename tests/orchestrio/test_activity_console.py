"""The console's Activity page: each entry's object is a link to its page while it exists in the
tenant (resolved by each app through orchestrio.hooks.object_links, in constant queries), and
the log is searched and filtered by GET parameters that the pagination keeps."""

from __future__ import annotations

import re
from datetime import datetime, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import AlertDelivery
from deployments.models import Deployment
from domains.models import CustomDomain
from gateway.models import GatewayPolicy
from instances.models import Blueprint, InstancePlan, Region
from orchestrio.models import ActivityEvent, Invitation
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor
from tasks.models import Task

from ..factories import ApiTokenFactory, InstanceFactory, MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _record(tenant, action, object_type, object_id, **fields):
    event = activity_record(actor=Actor.system(), action=action, tenant=tenant, object_type=object_type, object_id=object_id, data=fields.pop("data", None))
    if fields:
        ActivityEvent.objects.filter(pk=event.pk).update(**fields)
    return event


def _objects(html: str) -> dict[str, str | None]:
    """Each activity row's object text → its link (None: plain text)."""
    rows = re.findall(r"<tr><td><time.*?</tr>", html, flags=re.S)
    found = {}
    for row in rows:
        cell = re.findall(r"<td>(.*?)</td>", row, flags=re.S)[3]
        text = re.sub(r"<[^>]+>", "", cell).split()
        href = re.search(r'href="([^"]+)"', cell)
        found[" ".join(text)] = href.group(1) if href else None
    return found


def _deployment(tenant, name, instance):
    return Deployment.objects.create(
        tenant=tenant, name=name, environment="staging", blueprint=Blueprint.objects.get(name="OpenClaw", tenant=None),
        region=Region.objects.first(), plan=InstancePlan.objects.first(), created_by="test", instance=instance,
    )  # fmt: skip


def _one_of_each(tenant, owner, suffix=""):
    """One object of each linked kind in `tenant`, and an activity entry naming it."""
    instance = InstanceFactory(tenant=tenant, instance_id=f"web{suffix}-1")
    task = Task.objects.create(task_id=f"tsk_{tenant.pk[:4]}{suffix}", instance=instance, tenant=tenant, operation_code="x", script_path="/x", requested_by="t", requested_by_type="user")
    deployment = _deployment(tenant, f"site{suffix}", instance)
    policy = GatewayPolicy.objects.create(instance=instance, tenant=tenant, provider="api-key", slug=f"hook{suffix}")
    CustomDomain.objects.create(instance=instance, tenant=tenant, domain=f"app{suffix}.{tenant.pk}.example", verification_token="t")
    token = ApiTokenFactory(tenant=tenant, created_by=owner)
    member = MembershipFactory(tenant=tenant, user=UserFactory(), role="member")
    delivery = AlertDelivery.objects.create(id=f"alr_{tenant.pk[:4]}{suffix}", tenant=tenant, event="instance.error", payload={}, url="https://hooks.example/x")
    _record(tenant, "instance.create", "instance", instance.instance_id)
    _record(tenant, "task.create", "task", task.task_id, data={"instance_id": instance.instance_id})
    _record(tenant, "deployment.create", "deployment", deployment.pk, data={"instance_id": instance.instance_id})
    _record(tenant, "gateway_policy.create", "gateway_policy", policy.pk, data={"instance_id": instance.instance_id})
    _record(tenant, "custom_domain.attach", "custom_domain", f"app{suffix}.{tenant.pk}.example", data={"instance_id": instance.instance_id})
    _record(tenant, "api_token.create", "api_token", token.pk)
    _record(tenant, "member.role_change", "member", member.pk)
    _record(tenant, "alerts.test", "alert_delivery", delivery.pk)
    _record(tenant, "billing.checkout", "subscription", tenant.pk)
    return {"instance": instance, "task": task, "deployment": deployment, "policy": policy, "token": token, "member": member, "delivery": delivery}


def test_every_kind_of_object_is_a_link_to_its_page(console, tenant, owner):
    made = _one_of_each(tenant, owner)
    links = _objects(console.get("/activity").content.decode())
    assert links["instance web-1"] == "/instances/web-1"
    assert links[f"task {made['task'].task_id}"] == f"/tasks/{made['task'].task_id}"
    assert links[f"deployment {made['deployment'].pk}"] == f"/deployments/{made['deployment'].pk}"
    assert links[f"gateway_policy {made['policy'].pk}"] == f"/instances/web-1/gateway#policy-{made['policy'].pk}"
    assert links["custom_domain app.acme-corp.example"] == "/instances/web-1/domain"
    assert links[f"api_token {made['token'].pk}"] == f"/tokens#token-{made['token'].pk}"
    assert links[f"member {made['member'].pk}"] == f"/team#member-{made['member'].pk}"
    assert links[f"alert_delivery {made['delivery'].pk}"] == f"/billing/alerts#delivery-{made['delivery'].pk}"
    assert links["subscription acme-corp"] == "/billing/"
    # The anchors exist on the pages linked to.
    assert f'id="token-{made["token"].pk}"' in console.get("/tokens").content.decode()
    assert f'id="member-{made["member"].pk}"' in console.get("/team").content.decode()
    assert f'id="policy-{made["policy"].pk}"' in console.get("/instances/web-1/gateway").content.decode()
    assert f'id="delivery-{made["delivery"].pk}"' in console.get("/billing/alerts").content.decode()


def test_a_deleted_object_is_plain_text(console, tenant, owner):
    made = _one_of_each(tenant, owner)
    made["instance"].destroyed_at = timezone.now()
    made["instance"].state = "destroyed"
    made["instance"].save(update_fields=["destroyed_at", "state"])
    Deployment.objects.filter(pk=made["deployment"].pk).update(deleted_at=timezone.now())
    member_pk = made["member"].pk
    made["member"].delete()
    _record(tenant, "instance.create", "instance", "never-existed")
    links = _objects(console.get("/activity").content.decode())
    assert links["instance web-1"] is None and links["instance never-existed"] is None
    assert links[f"deployment {made['deployment'].pk}"] is None
    assert links[f"member {member_pk}"] is None
    assert links[f"gateway_policy {made['policy'].pk}"] is None  # its instance is gone
    assert links["custom_domain app.acme-corp.example"] is None
    assert links[f"task {made['task'].task_id}"] == f"/tasks/{made['task'].task_id}"  # a task's page outlives its instance


def test_another_tenants_objects_are_never_linked_nor_listed(console, tenant, owner):
    other = TenantFactory(id="other-corp")
    other_owner = UserFactory(username="mallory@example.org")
    MembershipFactory(user=other_owner, tenant=other, role="owner")
    theirs = _one_of_each(other, other_owner, suffix="x")
    # An entry of ours naming their objects' ids (a name claimed by both, a guessed id): plain.
    _record(tenant, "instance.create", "instance", theirs["instance"].instance_id)
    _record(tenant, "task.create", "task", theirs["task"].task_id)
    _record(tenant, "deployment.create", "deployment", theirs["deployment"].pk)
    _record(tenant, "api_token.create", "api_token", theirs["token"].pk)
    _record(tenant, "member.role_change", "member", theirs["member"].pk)
    _record(tenant, "alerts.test", "alert_delivery", theirs["delivery"].pk)
    _record(tenant, "custom_domain.attach", "custom_domain", "appx.other-corp.example")
    html = console.get("/activity").content.decode()
    links = _objects(html)
    assert links and all(link is None for link in links.values()), links
    assert "gateway_policy" not in html  # their own entries are not ours to list
    assert "billing.checkout" not in html


def test_a_member_gets_no_links_to_pages_of_admins(client, tenant, owner):
    made = _one_of_each(tenant, owner)
    client.force_login(made["member"].user)
    links = _objects(client.get("/activity").content.decode())
    assert links[f"alert_delivery {made['delivery'].pk}"] is None  # the Alerts page is admins'
    assert links["instance web-1"] == "/instances/web-1"


def test_admin_entries_name_rows_by_key_and_stay_plain(console, tenant, owner):
    instance = InstanceFactory(tenant=tenant, instance_id="123")
    _record(tenant, "admin.instance.change", "instance", "123")  # the admin names a row by its pk
    assert _objects(console.get("/activity").content.decode())["instance 123"] is None
    assert instance.pk


def _queries(client, url) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_activity_page_costs_the_same_queries_for_one_or_three_of_each_kind(console, tenant, owner):
    _one_of_each(tenant, owner)
    few = _queries(console, "/activity")
    _one_of_each(tenant, owner, suffix="b")
    _one_of_each(tenant, owner, suffix="c")
    html = console.get("/activity").content.decode()
    assert html.count('data-testid="activity-object"') == 27
    assert _queries(console, "/activity") == few
    assert _queries(console, "/activity?since=2000-01-01&actor=system") == few


def test_filters_by_action_instance_actor_dates_and_text(console, tenant, owner):
    _one_of_each(tenant, owner)
    _one_of_each(tenant, owner, suffix="b")
    _record(tenant, "instance.stop", "instance", "web-1", actor_label="alice@example.com", created_at=datetime(2026, 3, 2, 12, tzinfo=dt_timezone.utc))
    _record(tenant, "instance.stop", "instance", "webb-1", actor_label="bob@example.com", created_at=datetime(2026, 3, 5, 12, tzinfo=dt_timezone.utc))

    def listed(query):
        response = console.get("/activity?" + query)
        assert response.status_code == 200, response.content
        return _objects(response.content.decode())

    assert set(listed("action=instance.stop")) == {"instance web-1", "instance webb-1"}
    # By instance: the instance's own entries and those recorded under its id (tasks, deployments…).
    by_instance = listed("instance=webb-1")
    assert "instance webb-1" in by_instance and "deployment" in " ".join(by_instance) and "instance web-1" not in by_instance
    assert set(listed("actor=ALICE")) == {"instance web-1"}
    # A date range: days, inclusive of the last.
    assert set(listed("since=2026-03-02&until=2026-03-02")) == {"instance web-1"}
    assert set(listed("since=2026-03-01&until=2026-03-05")) == {"instance web-1", "instance webb-1"}
    assert listed("until=2026-03-01") == {}
    # Text: every word matches somewhere in the entry.
    assert set(listed("q=stop+bob")) == {"instance webb-1"}
    assert "Nothing matches these filters." in console.get("/activity?q=nothing-like-this").content.decode()
    # The form shows what is filtered.
    html = console.get("/activity?action=instance.stop&actor=bob").content.decode()
    assert 'name="action" list="f-actions" value="instance.stop"' in html and '<option value="instance.create"></option>' in html and 'value="bob"' in html
    # The API's filters that the form does not show are kept by it, and applied.
    html = console.get("/activity?object_type=deployment").content.decode()
    assert '<input type="hidden" name="object_type" value="deployment">' in html
    assert set(_objects(html)) == {f"deployment {pk}" for pk in Deployment.objects.values_list("pk", flat=True)}


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "since-error"), ("until=2026-02-30", "until-error"), ("actor_type=robot", "filter-errors"), ("q=" + "x" * 201, "filter-errors")],
)
def test_a_bad_filter_is_a_form_error_not_a_500(console, tenant, owner, query, field):
    _record(tenant, "instance.create", "instance", "web-1")
    response = console.get("/activity?" + query)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-testid="{field}"' in html and 'data-testid="activity-table"' not in html


def test_a_nul_in_a_filter_is_refused_before_the_page(console):
    for query in ("q=a%00b", "instance=%00", "actor=%00"):
        assert console.get("/activity?" + query).status_code == 400  # the request guard's, as everywhere


def test_the_pagination_keeps_the_filters(console, tenant):
    ActivityEvent.objects.bulk_create(
        [ActivityEvent(tenant=tenant, actor_type="system", actor_label="system", action="instance.stop", object_type="instance", object_id=f"i-{n}") for n in range(60)]
        + [ActivityEvent(tenant=tenant, actor_type="system", actor_label="system", action="instance.start", object_type="instance", object_id="s-1")]
    )
    html = console.get("/activity?action=instance.stop").content.decode()
    assert 'href="?action=instance.stop&amp;page=2"' in html and "Page 1 of 2" in html
    second = console.get("/activity?action=instance.stop&page=2").content.decode()
    assert "Page 2 of 2" in second and "s-1" not in second


def test_the_api_has_the_same_filters(api, other_api, tenant, owner):
    _record(other_api.tenant, "instance.stop", "instance", "web-1", actor_label="alice@example.com")  # theirs: never listed to us
    _record(tenant, "instance.stop", "instance", "web-1", actor_label="alice@example.com", created_at=datetime(2026, 3, 2, 12, tzinfo=dt_timezone.utc))
    _record(tenant, "task.create", "task", "tsk_1", data={"instance_id": "web-1"})
    _record(tenant, "instance.stop", "instance", "web-2", actor_label="bob@example.com")
    ids = lambda **query: sorted(e["object_id"] for e in api.get("activity", **query).json()["results"])  # noqa: E731
    assert ids(instance="web-1") == ["tsk_1", "web-1"]
    assert ids(actor="alice") == ["web-1"]
    assert ids(q="stop bob") == ["web-2"]
    assert ids(since="2026-03-02", until="2026-03-02") == ["web-1"]
    assert api.get("activity", until="2026-02-30").status_code == 422
    assert [e["object_id"] for e in other_api.get("activity", instance="web-1").json()["results"]] == ["web-1"]  # their own only


def test_invitations_link_to_the_team_page_for_those_who_manage_it(console, tenant, owner):
    invitation = Invitation.objects.create(tenant=tenant, email="new@example.com", role="member", token_hash="h" * 64, invited_by=owner, expires_at=timezone.now() + timezone.timedelta(days=3))
    _record(tenant, "invitation.create", "invitation", invitation.pk)
    assert _objects(console.get("/activity").content.decode())[f"invitation {invitation.pk}"] == f"/team#invitation-{invitation.pk}"
    assert f'id="invitation-{invitation.pk}"' in console.get("/team").content.decode()
