"""The audit log is readable by every member of the tenant (the API's /activity, the dashboard
summary, the console's activity and home pages), so the data an event carries is only what every
member may read: never the admin-only alert webhook URL, nor billing's Stripe ids."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from billing.models import AlertConfig, Subscription
from orchestrio.models import ActivityEvent

from ..factories import MembershipFactory

URL = "https://alerts.acme.example/hooks/s3cr3t-path-token"
HIDDEN = ("s3cr3t-path-token", "alerts.acme.example")


@pytest.fixture
def member_console(client, member_api):
    client.force_login(member_api.user)
    return client


@pytest.fixture
def staff_client(db):
    from django.test import Client

    user = get_user_model().objects.create_superuser("support@orchestrio.example", "support@orchestrio.example", "pw-for-staff-123")
    client = Client()
    client.force_login(user)
    return client


def _member_sees(member_api, member_console) -> bytes:
    pages = [
        member_api.get("activity").content,
        member_api.get("dashboard/summary").content,
        member_console.get("/activity").content,
        member_console.get("/").content,
    ]
    return b"\n".join(pages)


def test_a_member_does_not_see_the_webhook_url_an_admin_set(api, tenant, member_api, member_console):
    admin = get_user_model().objects.create_user("admin@example.com", "admin@example.com")
    MembershipFactory(user=admin, tenant=tenant, role="admin")
    assert api.patch("alerts", {"webhook_url": URL, "enabled": True}).status_code == 200
    assert api.patch("alerts", {"webhook_url": URL.replace("s3cr3t", "n3w-s3cr3t")}).status_code == 200
    seen = _member_sees(member_api, member_console)
    for hidden in HIDDEN:
        assert hidden.encode() not in seen
    # The log still says who changed the webhook, and when.
    events = member_api.get("activity", action="alerts.update").json()["results"]
    assert len(events) == 2 and events[0]["data"] == {"webhook_url_changed": True, "enabled": True}


def test_staff_changes_in_the_admin_do_not_leak_it_either(api, tenant, member_api, member_console, staff_client):
    api.patch("alerts", {"webhook_url": "https://first.acme.example/x", "enabled": True})
    config = AlertConfig.objects.get(tenant=tenant)
    response = staff_client.post(f"/admin/billing/alertconfig/{config.pk}/change/", {"webhook_url": URL, "enabled": "on"})
    assert response.status_code == 302, response.content[:2000]
    assert AlertConfig.objects.get(pk=config.pk).webhook_url == URL
    event = ActivityEvent.objects.get(action="admin.alertconfig.change")
    assert event.data["fields"] == ["webhook_url"]
    response = staff_client.post(f"/admin/billing/alertconfig/{config.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert ActivityEvent.objects.filter(action="admin.alertconfig.delete").exists()
    seen = _member_sees(member_api, member_console)
    for hidden in HIDDEN:
        assert hidden.encode() not in seen


def test_staff_changes_to_a_subscription_do_not_show_stripe_ids(tenant, member_api, staff_client):
    subscription = Subscription.objects.create(tenant=tenant, stripe_customer_id="cus_hidden123", status="active")
    response = staff_client.post(
        f"/admin/billing/subscription/{subscription.pk}/change/",
        {"tenant": tenant.pk, "stripe_customer_id": "cus_hidden456", "stripe_subscription_id": "sub_hidden789", "status": "active"},
    )
    assert response.status_code == 302, response.content[:2000]
    seen = member_api.get("activity").content
    assert b"cus_hidden" not in seen and b"sub_hidden" not in seen
    assert b"stripe_customer_id" in seen  # which fields changed, not their values


def test_events_recorded_before_are_scrubbed_by_the_migration(tenant, member_api):
    import importlib

    from django.apps import apps

    from orchestrio.services import activity_record
    from orchestrio.tenancy import Actor

    actor = Actor.system("t")
    activity_record(actor=actor, action="alerts.update", tenant=tenant, data={"webhook_url": URL, "enabled": True})
    activity_record(actor=actor, action="admin.alertconfig.change", tenant=tenant, data={"fields": ["webhook_url"], "values": {"webhook_url": URL}})
    activity_record(actor=actor, action="admin.alertconfig.delete", tenant=tenant, data={"repr": f"acme-corp: {URL} (on)"})
    activity_record(actor=actor, action="admin.subscription.change", tenant=tenant, data={"fields": ["stripe_customer_id"], "values": {"stripe_customer_id": "cus_hidden1"}})
    importlib.import_module("billing.migrations.0006_scrub_audit_data").scrub(apps, None)
    seen = member_api.get("activity").content
    assert b"s3cr3t" not in seen and b"cus_hidden" not in seen
    assert ActivityEvent.objects.get(action="alerts.update").data == {"webhook_url_changed": True, "enabled": True}


def test_delivery_errors_recorded_before_are_scrubbed_by_the_migration(tenant):
    import importlib

    from django.apps import apps
    from django.utils import timezone

    from billing.models import AlertAttempt, AlertDelivery

    delivery = AlertDelivery.objects.create(id="dlv_old", tenant=tenant, event="alert.test", payload={}, url="https://x.example/", last_error='HTTP 401: {"error": "agent key s3cr3t"}', created_at=timezone.now())
    AlertAttempt.objects.create(delivery=delivery, number=1, at=timezone.now(), error="ConnectError: [Errno 111] Connection refused", duration_ms=1)
    importlib.import_module("billing.migrations.0005_scrub_alert_errors").scrub(apps, None)
    assert AlertDelivery.objects.get().last_error == "HTTP 401"
    assert AlertAttempt.objects.get().error == "connection refused"
