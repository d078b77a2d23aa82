"""Notifications (issue 18 item 5, docs/notifications.md): every event the alert webhooks hear makes
a notification for each member whose role may see it, from the same call; the API lists a person's
own feed and marks it read; the console's bell counts the unread in constant queries; the page
lists them with links, marks one or all read, and pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import alerts
from billing.metering import record_execution
from billing.models import AlertDelivery, Subscription
from orchestrio import notifications, services
from orchestrio.models import Membership, Notification, SubscriptionPlan
from orchestrio.tenancy import Actor, Principal

from ..billing.conftest import event, post_webhook, stripe_stub  # noqa: F401 - fixture
from ..factories import ApiTokenFactory, MembershipFactory, UserFactory
from ..helpers import Api, assert_error, call_job
from ..instances.conftest import make_instance, running  # noqa: F401 - fixtures


@pytest.fixture
def team(tenant, owner):
    """The owner, an admin and a member of the tenant, and an owner of another tenant."""
    admin, member = UserFactory(username="admin@acme.example"), UserFactory(username="member@acme.example")
    MembershipFactory(user=admin, tenant=tenant, role="admin")
    MembershipFactory(user=member, tenant=tenant, role="member")
    return {"owner": owner, "admin": admin, "member": member}


@pytest.fixture
def webhook(tenant):
    alerts.alert_config_update(tenant=tenant, actor=Actor.system("t"), data={"webhook_url": "https://hooks.example/alerts", "enabled": True})


def feed(user, tenant) -> list[tuple[str, str]]:
    return list(Notification.objects.filter(user=user, tenant=tenant).order_by("id").values_list("event", "title"))


def everyone_got(team, tenant, expected_event: str) -> list[Notification]:
    rows = list(Notification.objects.filter(tenant=tenant, event=expected_event))
    assert sorted(row.user_id for row in rows) == sorted(user.pk for user in team.values())
    return rows


# --- each event, at its source, reaches the webhook and the right people ----------------------------


def test_instance_error_and_health_down_and_up(team, tenant, running, make_instance, webhook, other_api):
    from instances import services as instance_services
    from instances.models import Operation

    Api(ApiTokenFactory(tenant=tenant, created_by=team["owner"], role="owner").plaintext).post("instances/web-01/stop")
    instance_services.operation_fail(operation=Operation.objects.get(), code="provider_error", message="the provider said no")
    error = everyone_got(team, tenant, "instance.error")[0]
    assert (error.title, error.body, error.object_type, error.object_id) == ("web-01 is in error", "the provider said no", "instance", "web-01")

    checked = make_instance(instance_id="hc-1", state="running", health_status="healthy", health_failures=5)
    instance_services.health_record(results=[{"pk": checked.pk, "ok": False, "status": "healthy", "failures": 5, "detail": "HTTP 503"}])
    down = everyone_got(team, tenant, "instance.health_down")[0]
    assert down.title == "hc-1 is unhealthy" and "6 times in a row: HTTP 503" in down.body
    instance_services.health_record(results=[{"pk": checked.pk, "ok": True, "status": "unhealthy", "failures": 6, "detail": ""}])
    assert everyone_got(team, tenant, "instance.health_up")[0].title == "hc-1 is healthy again"

    # One event source: each of these is also an alert delivery, and nothing reached the other tenant.
    assert sorted(AlertDelivery.objects.values_list("event", flat=True)) == ["instance.error", "instance.health_down", "instance.health_up"]
    assert not Notification.objects.filter(user=other_api.user).exists()


def test_task_failed(team, tenant, running, webhook):
    from tasks import services as task_services
    from tasks.models import Task

    task = Task.objects.create(task_id="tsk_fail01", instance=running, tenant=tenant, operation_code="backup", script_path="/x", status="running", started_at=timezone.now(), requested_by="t", requested_by_type="user")
    task_services.task_finish(task=task, status="failed", exit_code=3, error_message="disk full")
    row = everyone_got(team, tenant, "task.failed")[0]
    assert (row.title, row.object_type, row.object_id) == ("A task failed on web-01", "task", "tsk_fail01")
    assert row.body == "backup failed with exit code 3: disk full"
    assert AlertDelivery.objects.get().event == "task.failed"


def test_quota_at_80_and_100_once_each(team, tenant, running, webhook):
    from billing.jobs import flush_usage

    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(executions_per_month=10)
    record_execution(tenant.pk, running.pk, 8)
    call_job(flush_usage)
    assert everyone_got(team, tenant, "quota.80")[0].body.startswith("8 of 10 executions used between ")
    record_execution(tenant.pk, running.pk, 5)
    call_job(flush_usage)
    call_job(flush_usage)
    row = everyone_got(team, tenant, "quota.100")[0]
    assert row.title == "This period's executions are used up" and (row.object_type, row.object_id) == ("subscription", tenant.pk)
    assert sorted(AlertDelivery.objects.values_list("event", flat=True)) == ["quota.100", "quota.80"]


def test_payment_failed_reaches_owners_and_admins_only(team, tenant, stripe_stub, webhook):  # noqa: F811
    Subscription.objects.create(tenant=tenant, stripe_customer_id="cus_test123")
    payload = event("invoice.payment_failed", {"id": "in_9", "customer": "cus_test123", "amount_due": 4900, "attempt_count": 2}, event_id="evt_pf")
    assert post_webhook(Client(), payload).status_code == 200
    rows = Notification.objects.filter(event="billing.payment_failed")
    assert sorted(rows.values_list("user_id", flat=True)) == sorted([team["owner"].pk, team["admin"].pk])
    assert rows[0].body == "Stripe could not collect invoice in_9 (49.00), attempt 2. Update the payment method on the Billing page."
    assert AlertDelivery.objects.get().event == "billing.payment_failed"


def test_invitation_accepted_tells_the_team_managers_not_the_newcomer(team, tenant, webhook):
    principal = Principal(tenant=tenant, role="admin", user=team["admin"])
    invitation, url = services.invitation_create(principal=principal, email="new@acme.example", role="member")
    newcomer = UserFactory(username="new@acme.example")
    membership = services.invitation_accept(token=url.rstrip("/").rsplit("/", 1)[1], user=newcomer)
    rows = Notification.objects.filter(event="invitation.accepted")
    assert sorted(rows.values_list("user_id", flat=True)) == sorted([team["owner"].pk, team["admin"].pk])
    assert (rows[0].title, rows[0].body) == ("new@acme.example joined the team", "They accepted the invitation as member.")
    assert (rows[0].object_type, rows[0].object_id) == ("member", str(membership.pk))
    assert AlertDelivery.objects.get().event == "invitation.accepted"


def test_a_rolled_back_change_leaves_no_notification(team, tenant):
    from django.db import transaction

    from orchestrio import hooks

    with pytest.raises(RuntimeError), transaction.atomic():
        hooks.tenant_event(tenant.pk, "instance.error", {"instance_id": "web-01", "error_message": "x"})
        assert Notification.objects.count() == 3
        raise RuntimeError("the change fails after its event")
    assert not Notification.objects.exists()
    hooks.tenant_event(tenant.pk, "alert.test", {})  # not a notification's event
    assert not Notification.objects.exists()


def test_the_feed_is_trimmed_to_the_newest_and_the_retention(team, tenant, settings):
    settings.NOTIFICATIONS_KEEP_PER_USER = 3
    settings.NOTIFICATIONS_RETENTION_DAYS = 90
    now = timezone.now()
    for n in range(5):
        notifications.notify([(tenant.pk, "instance.health_up", {"instance_id": f"i-{n}"})])
    Notification.objects.filter(user=team["member"], title="i-0 is healthy again").update(created_at=now - timedelta(days=91))
    from orchestrio.jobs import trim_notifications

    assert call_job(trim_notifications) == 3 * 2  # per person the 2 beyond the newest 3 (one of them too old too)
    for user in team.values():
        assert [title for _, title in feed(user, tenant)] == ["i-2 is healthy again", "i-3 is healthy again", "i-4 is healthy again"]


# --- the API --------------------------------------------------------------------------------------


def test_the_feed_read_and_read_all(api, team, tenant, other_api):
    for n in range(55):
        notifications.notify([(tenant.pk, "instance.health_up", {"instance_id": f"i-{n}"})])
    body = api.get("notifications").json()
    assert body["unread"] == 55 and len(body["results"]) == 50
    newest = body["results"][0]
    assert newest["title"] == "i-54 is healthy again" and newest["read_at"] is None and newest["object_id"] == "i-54"
    assert set(newest) == {"id", "event", "title", "body", "object_type", "object_id", "created_at", "read_at"}

    read = api.post(f"notifications/{newest['id']}/read")
    assert read.status_code == 200 and read.json()["read_at"] is not None
    assert api.post(f"notifications/{newest['id']}/read").json()["read_at"] == read.json()["read_at"]  # stays at the first time
    assert api.get("notifications").json()["unread"] == 54

    # Someone else's (same tenant) and another tenant's are 404, for reading and marking.
    admins = Notification.objects.get(user=team["admin"], title="i-54 is healthy again")
    assert_error(api.post(f"notifications/{admins.pk}/read"), 404)
    assert_error(other_api.post(f"notifications/{newest['id']}/read"), 404)
    assert_error(api.post("notifications/not-a-number/read"), 404)
    assert other_api.get("notifications").json() == {"unread": 0, "results": []}

    done = api.post("notifications/read-all")
    assert done.status_code == 200 and done.json() == {"marked": 54, "unread": 0}
    assert Notification.objects.filter(user=team["admin"], read_at__isnull=True).count() == 55  # only mine


def test_a_token_reads_with_its_own_role_and_a_token_of_no_one_is_refused(team, tenant):
    notifications.notify([(tenant.pk, "billing.payment_failed", {"invoice": "in_1"}), (tenant.pk, "instance.health_up", {"instance_id": "a"})])
    admin_as_member = Api(ApiTokenFactory(tenant=tenant, created_by=team["admin"], role="member").plaintext)
    assert [n["event"] for n in admin_as_member.get("notifications").json()["results"]] == ["instance.health_up"]
    hidden = Notification.objects.get(user=team["admin"], event="billing.payment_failed")
    assert_error(admin_as_member.post(f"notifications/{hidden.pk}/read"), 404)
    assert admin_as_member.post("notifications/read-all").json() == {"marked": 1, "unread": 0}
    assert Notification.objects.get(pk=hidden.pk).read_at is None

    nobodys = Api(ApiTokenFactory(tenant=tenant, created_by=None, role="owner").plaintext)
    refused = assert_error(nobodys.get("notifications"), 403)
    assert "belong to a person" in refused["detail"]
    assert_error(nobodys.post("notifications/read-all"), 403)


def test_a_scoped_token_cannot_read_the_feed(team, tenant, running):
    scoped = Api(ApiTokenFactory(tenant=tenant, created_by=team["owner"], role="owner", instance_id="web-01").plaintext)
    assert_error(scoped.get("notifications"), 403, contains="scoped")


# --- the console ------------------------------------------------------------------------------------


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _bell_queries(client) -> int:
    client.get("/notifications/bell")
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/notifications/bell").status_code == 200
    return len(captured)


def test_the_bell_counts_the_unread_live_in_constant_queries(console, team, tenant):
    page = console.get("/").content.decode()
    assert 'data-live="/notifications/bell"' in page and 'data-testid="bell-count"' not in page and "none unread" in page
    empty = _bell_queries(console)
    notifications.notify([(tenant.pk, "instance.health_up", {"instance_id": "i-0"})])
    fragment = console.get("/notifications/bell").content.decode()
    assert 'data-testid="bell-count">1</span>' in fragment and "1 unread" in fragment and "<html" not in fragment
    for n in range(1, 120):
        notifications.notify([(tenant.pk, "instance.health_up", {"instance_id": f"i-{n}"})])
    assert 'data-testid="bell-count">99+</span>' in console.get("/notifications/bell").content.decode()
    assert 'data-testid="bell-count">99+</span>' in console.get("/").content.decode()  # the first paint, same template
    assert _bell_queries(console) == empty


def test_the_page_lists_links_marks_read_and_pages(console, team, tenant, running):
    notifications.notify([(tenant.pk, "instance.error", {"instance_id": "web-01", "error_message": "boom"})])
    notifications.notify([(tenant.pk, "instance.error", {"instance_id": "gone-01", "error_message": "boom"})])
    for n in range(55):
        notifications.notify([(tenant.pk, "quota.80", {"executions": n, "quota": 100})])
    first = console.get("/notifications").content.decode()
    assert first.count('data-testid="notification"') == 50 and 'class="unread"' in first
    assert 'href="/billing/"' in first and "Older →" in first
    older = console.get("/notifications?page=2").content.decode()
    assert older.count('data-testid="notification"') == 7
    assert 'href="/instances/web-01"' in older and "gone-01 is in error</div>" in older  # a gone instance is plain text
    # The list is live: its fragment is the same rows, and its forms send the reader back to the page.
    live = console.get("/notifications/live?page=2").content.decode()
    assert live.count('data-testid="notification"') == 7 and 'name="next" value="/notifications?page=2"' in live

    mine = Notification.objects.filter(user=team["owner"], title="web-01 is in error").get()
    response = console.post(f"/notifications/{mine.pk}/read", {"next": "/notifications?page=2"})
    assert response.status_code == 302 and response["Location"] == "/notifications?page=2"
    mine.refresh_from_db()
    assert mine.read_at is not None
    assert console.post(f"/notifications/{mine.pk}/read", {"next": "https://evil.example/"})["Location"] == "/notifications"
    theirs = Notification.objects.get(user=team["admin"], title="web-01 is in error")
    assert console.post(f"/notifications/{theirs.pk}/read").status_code == 404

    assert "Unread" in console.get("/notifications?unread=1").content.decode()
    assert console.post("/notifications/read-all").status_code == 302
    assert not Notification.objects.filter(user=team["owner"], read_at__isnull=True).exists()
    assert Notification.objects.filter(user=team["admin"], read_at__isnull=True).count() == 57
    assert "Nothing unread." in console.get("/notifications?unread=1").content.decode()
    assert 'data-testid="bell-count"' not in console.get("/notifications/bell").content.decode()


def test_the_console_shows_a_member_only_what_their_role_may_see(client, team, tenant):
    notifications.notify([(tenant.pk, "billing.payment_failed", {"invoice": "in_1"})])
    Membership.objects.filter(user=team["admin"], tenant=tenant).update(role="member")  # demoted since
    client.force_login(team["admin"])
    assert "A payment failed" not in client.get("/notifications").content.decode()
    assert 'data-testid="bell-count"' not in client.get("/notifications/bell").content.decode()
