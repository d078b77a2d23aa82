"""The Django admin for support staff (issue 16, item 12): the tenant list's columns and search,
its actions through the services (audited as staff), the instance and operation admins."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import Subscription, UsageCounter
from instances.models import Operation
from orchestrio.models import ActivityEvent, Tenant

from ..factories import InstanceFactory, MembershipFactory, TenantFactory, UserFactory

TENANTS = "/admin/orchestrio/tenant/"


@pytest.fixture
def staff(client, db):
    user = get_user_model().objects.create_superuser("support@orchestrio.example", "support@orchestrio.example", "pw-for-staff-123")
    client.force_login(user)
    return client


def _tenant(tenant_id: str, owner_email: str, *, instances: int = 0, plan: str = "pro") -> Tenant:
    tenant = TenantFactory(id=tenant_id, plan_id=plan)
    MembershipFactory(tenant=tenant, user=UserFactory(username=owner_email), role="owner")
    for n in range(instances):
        InstanceFactory(tenant=tenant, instance_id=f"{tenant_id}-{n}")
    return tenant


def _changelist_rows(response) -> list[str]:
    return [str(obj.pk) for obj in response.context["cl"].result_list]


def test_tenant_list_shows_owner_plan_subscription_instances_usage_and_created(staff, db):
    acme = _tenant("acme-corp", "boss@acme.example", instances=2, plan="team")
    InstanceFactory(tenant=acme, instance_id="acme-gone", state="destroyed", destroyed_at=timezone.now())  # not counted
    MembershipFactory(tenant=acme, user=UserFactory(username="dev@acme.example"), role="member")  # not the owner
    Subscription.objects.create(tenant=acme, status="past_due")
    today = timezone.now().date()
    UsageCounter.objects.create(tenant=acme, day=today, kind="executions", count=40)
    UsageCounter.objects.create(tenant=acme, instance=acme.instances.first(), day=today, kind="executions", count=2)
    last_month = today.replace(day=1) - timezone.timedelta(days=1)
    UsageCounter.objects.create(tenant=acme, day=last_month, kind="executions", count=1000)  # another period
    _tenant("quiet-co", "solo@quiet.example")

    response = staff.get(TENANTS)
    assert response.status_code == 200
    rows = {obj.pk: obj for obj in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin
    acme_row, quiet_row = rows["acme-corp"], rows["quiet-co"]
    assert admin.owner_email(acme_row) == "boss@acme.example"
    assert admin.subscription_status(acme_row) == "past_due" and admin.subscription_status(quiet_row) == "none"
    assert admin.instance_count(acme_row) == 2 and admin.instance_count(quiet_row) == 0
    assert admin.executions_this_month(acme_row) == 42 and admin.executions_this_month(quiet_row) == 0
    page = response.content.decode()
    for text in ("Owner", "Subscription", "Instances", "Executions this month", "Created at", "boss@acme.example", "past_due", "Team"):
        assert text in page, text


def test_tenant_list_queries_do_not_grow_with_the_page(staff, db):
    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(TENANTS).status_code == 200
        return len(captured)

    _tenant("first-co", "a@first.example", instances=1)
    few = count()
    for n in range(6):
        tenant = _tenant(f"more-{n}", f"owner{n}@more.example", instances=2)
        Subscription.objects.create(tenant=tenant, status="active")
        UsageCounter.objects.create(tenant=tenant, day=timezone.now().date(), kind="executions", count=n)
    assert count() == few


def test_tenant_search_by_owner_email(staff, db):
    _tenant("acme-corp", "boss@acme.example")
    _tenant("other-corp", "mallory@other.example")
    assert _changelist_rows(staff.get(TENANTS, {"q": "boss@acme.example"})) == ["acme-corp"]
    assert _changelist_rows(staff.get(TENANTS, {"q": "BOSS@acme"})) == ["acme-corp"]
    assert _changelist_rows(staff.get(TENANTS, {"q": "nobody@nowhere.example"})) == []


def test_change_plan_action_goes_through_the_service_and_is_audited(staff, db):
    acme = _tenant("acme-corp", "boss@acme.example", plan="starter")
    page = staff.get(TENANTS).content.decode()
    assert "change_plan_to_team" in page and "Change plan to" in page
    response = staff.post(TENANTS, {"action": "change_plan_to_team", "_selected_action": [acme.pk]}, follow=True)
    assert "Moved 1 tenant(s) to the team plan." in response.content.decode()
    acme.refresh_from_db()
    assert acme.plan_id == "team"
    event = ActivityEvent.objects.get(action="tenant.plan_change", tenant=acme)
    assert event.actor_type == "staff" and event.actor_label == "support@orchestrio.example"
    assert event.data == {"from": "starter", "to": "team", "reason": "changed by support"}
    # The change form no longer edits the plan behind the service's back.
    form = staff.get(f"{TENANTS}{acme.pk}/change/").context["adminform"].form
    assert "plan" not in form.fields


def test_suspend_instances_action_suspends_the_running_ones_and_names_the_rest(staff, db):
    acme = _tenant("acme-corp", "boss@acme.example")
    running = InstanceFactory(tenant=acme, instance_id="acme-web", state="running")
    InstanceFactory(tenant=acme, instance_id="acme-idle", state="stopped")
    other = _tenant("other-corp", "mallory@other.example")
    theirs = InstanceFactory(tenant=other, instance_id="their-web", state="running")

    with TestCase.captureOnCommitCallbacks(execute=False):
        response = staff.post(TENANTS, {"action": "suspend_instances", "_selected_action": [acme.pk]}, follow=True)
    text = response.content.decode()
    assert "Tenant acme-corp: suspended 1 instance(s); left as they are: acme-idle is stopped." in text, re.findall(r'<li class="(?:success|warning|error)">.*?</li>', text)
    running.refresh_from_db()
    theirs.refresh_from_db()
    assert running.state == "suspending" and theirs.state == "running"
    operation = Operation.objects.get(instance=running)
    assert operation.kind == "suspend" and operation.requested_by == "support@orchestrio.example"
    event = ActivityEvent.objects.get(action="instance.suspend", object_id="acme-web")
    assert event.actor_type == "staff" and event.tenant_id == "acme-corp"


def test_instance_and_operation_search_by_owner_email(staff, db):
    acme = _tenant("acme-corp", "boss@acme.example", instances=1)
    _tenant("other-corp", "mallory@other.example", instances=1)
    response = staff.get("/admin/instances/instance/", {"q": "boss@acme.example"})
    assert [i.instance_id for i in response.context["cl"].result_list] == ["acme-corp-0"]
    Operation.objects.create(instance=acme.instances.get(), tenant=acme, kind="stop", status="failed", requested_by="x")
    response = staff.get("/admin/instances/operation/", {"q": "boss@acme"})
    assert [op.instance.instance_id for op in response.context["cl"].result_list] == ["acme-corp-0"]


def test_operation_actions_retry_a_failed_one_and_requeue_an_unfinished_one(staff, db):
    acme = _tenant("acme-corp", "boss@acme.example")
    broken = InstanceFactory(tenant=acme, instance_id="acme-broken", state="error")
    failed = Operation.objects.create(instance=broken, tenant=acme, kind="start", status="failed", requested_by="boss@acme.example")
    stuck_instance = InstanceFactory(tenant=acme, instance_id="acme-stuck", state="stopping")
    stuck = Operation.objects.create(instance=stuck_instance, tenant=acme, kind="stop", status="running", requested_by="boss@acme.example", rq_job_id="op-lost")

    with TestCase.captureOnCommitCallbacks(execute=False):
        response = staff.post("/admin/instances/operation/", {"action": "retry", "_selected_action": [failed.pk, stuck.pk]}, follow=True)
    text = response.content.decode()
    assert "Retried: 1 operation(s)." in text and "only failed operations can be retried" in text
    retry = Operation.objects.filter(instance=broken).order_by("id").last()
    assert retry.pk != failed.pk and retry.kind == "start" and retry.status == "queued"
    assert ActivityEvent.objects.get(action="instance.start.retry").actor_type == "staff"

    with TestCase.captureOnCommitCallbacks(execute=False):
        response = staff.post("/admin/instances/operation/", {"action": "requeue", "_selected_action": [stuck.pk, failed.pk]}, follow=True)
    text = response.content.decode()
    assert "Queued again: 1 operation(s)." in text and "only a queued or running operation can be queued again" in text
    stuck.refresh_from_db()
    assert stuck.status == "queued" and stuck.rq_job_id != "op-lost"
    assert ActivityEvent.objects.get(action="instance.operation_requeued").actor_type == "staff"


def test_admin_index_titles_and_alert_deliveries_plural(staff, db):
    page = staff.get("/admin/").content.decode()
    assert "<title>Support dashboard | Orchestrio admin</title>" in page
    assert "Alert deliveries" in page and "deliverys" not in page


def test_non_staff_cannot_run_support_actions(client, db):
    acme = _tenant("acme-corp", "boss@acme.example", plan="starter")
    client.force_login(acme.memberships.get().user)
    response = client.post(TENANTS, {"action": "change_plan_to_team", "_selected_action": [acme.pk]})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    acme.refresh_from_db()
    assert acme.plan_id == "starter"


def test_createtenant_takes_a_display_name(db):
    call_command("createtenant", "named-co", "--owner", "a@named.example", "--name", "Named Company", "--plan", "pro", stdout=io.StringIO())
    tenant = Tenant.objects.get(pk="named-co")
    assert tenant.name == "Named Company" and tenant.plan_id == "pro"
    call_command("createtenant", "unnamed-co", "--owner", "b@named.example", stdout=io.StringIO())
    assert Tenant.objects.get(pk="unnamed-co").name == "unnamed-co"


def test_instance_suspend_action_is_a_staff_operation_and_refuses_a_stopped_one(staff, db):
    acme = _tenant("acme-corp", "boss@acme.example")
    web = InstanceFactory(tenant=acme, instance_id="acme-web", state="running")
    idle = InstanceFactory(tenant=acme, instance_id="acme-idle", state="stopped")
    with TestCase.captureOnCommitCallbacks(execute=False):
        response = staff.post("/admin/instances/instance/", {"action": "suspend", "_selected_action": [web.pk, idle.pk]}, follow=True)
    text = response.content.decode()
    notes = re.findall(r'<li class="(?:success|warning|error)">(.*?)</li>', text)
    assert notes == ["Instance acme-idle: cannot suspend acme-idle: it is stopped; suspend needs an instance that is asleep or running", "Suspending: 1 instance(s)."], notes
    web.refresh_from_db()
    idle.refresh_from_db()
    assert web.state == "suspending" and idle.state == "stopped"
    assert ActivityEvent.objects.get(action="instance.suspend", object_id="acme-web").actor_type == "staff"
