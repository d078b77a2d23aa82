"""Every plan limit answers 402 with `limit` and `plan`; a downgrade leaves what runs alone; the
console's billing and alert pages; the dashboard summary."""

from __future__ import annotations

import pytest

from orchestrio.models import SubscriptionPlan

from ..helpers import CommitClient, assert_error


def _plan(tenant, **fields):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(**fields)


def test_every_limit_is_402(api, tenant, make_instance):
    cases = []
    _plan(tenant, max_instances=0)
    cases.append((api.post("instances", {"instance_id": "over-1"}), "instances"))
    _plan(tenant, max_instances=None, max_running_instances=0)
    cases.append((api.post("instances", {"instance_id": "over-2"}), "running_instances"))
    _plan(tenant, max_running_instances=None, max_tokens=1)
    cases.append((api.post("api-tokens", {"name": "x"}), "tokens"))
    _plan(tenant, max_deployments=0)
    cases.append((api.post("deployments", {"name": "over-dep"}), "deployments"))
    make_instance(instance_id="lim-1", state="running")
    _plan(tenant, executions_per_month=0)
    cases.append((api.post("instances/lim-1/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/backup.sh"}), "executions"))
    _plan(tenant, feature_custom_domains=False)
    cases.append((api.post("instances/lim-1/custom-domain", {"domain": "a.example.com"}), "custom_domains"))
    _plan(tenant, feature_oidc_gateway=False)
    cases.append((api.post("instances/lim-1/gateway-policies", {"provider": "github-oidc", "audience": "a"}), "oidc_gateway"))
    for response, limit in cases:
        body = assert_error(response, 402)
        assert body["limit"] == limit and body["plan"] == "pro", body


def test_downgrade_leaves_running_instances_alone_but_blocks_new_ones(api, tenant, make_instance):
    for i in range(3):
        make_instance(instance_id=f"keep-{i}", state="running")
    tenant.plan_id = "starter"  # 3 instances, 2 running
    tenant.save()
    body = api.get("tenant").json()
    assert {"limit": "running_instances", "used": 3, "allowed": 2} in body["over_limits"]
    assert api.get("instances", state="running").json()["count"] == 3  # untouched
    assert assert_error(api.post("instances", {"instance_id": "one-more"}), 402)["plan"] == "starter"
    assert api.post("instances/keep-0/stop").status_code == 202  # still manageable


def test_dashboard_summary(api, make_instance):
    make_instance(instance_id="d-1", state="running")
    make_instance(instance_id="d-2", state="stopped")
    body = api.get("dashboard/summary").json()
    assert body["instances"] == {"by_state": {"running": 1, "stopped": 1}, "total": 2}
    assert body["plan"]["id"] == "pro" and body["plan"]["usage"]["instances"] == 2
    assert set(body["usage"]) == {"period_start", "period_end", "executions", "quota", "pct", "instance_hours", "agent"}
    assert isinstance(body["recent_activity"], list)


@pytest.fixture
def console(tenant, owner):
    client = CommitClient()
    client.force_login(owner)
    return client


def test_billing_page_without_stripe_says_so(console, settings):
    settings.STRIPE_SECRET_KEY = None
    page = console.get("/billing/")
    assert page.status_code == 200 and b"Billing is not configured on this installation" in page.content
    response = console.post("/billing/checkout/team", follow=True)
    assert b"not configured" in response.content


def test_billing_page_upgrade_redirects_to_stripe(console, tenant, stripe_stub):
    tenant.plan_id = "starter"
    tenant.save()
    page = console.get("/billing/")
    assert b"Upgrade to Pro" in page.content and b"Executions this period" in page.content
    response = console.post("/billing/checkout/pro")
    assert response.status_code == 302 and response["Location"].endswith("/pay/cs_test_abc")


def test_alerts_page(console, tenant):
    page = console.get("/billing/alerts")
    assert page.status_code == 200
    saved = console.post("/billing/alerts", {"webhook_url": "https://hooks.example/x", "enabled": "on"})
    assert b"shown once" in saved.content and saved["Cache-Control"] == "no-store"
    assert b"shown once" not in console.get("/billing/alerts").content
    bad = console.post("/billing/alerts", {"webhook_url": "http://evil.example/x", "enabled": "on"})
    assert b"must be https" in bad.content
    console.post("/billing/alerts/test")
    from billing.models import AlertDelivery

    assert AlertDelivery.objects.filter(event="alert.test").exists()


def test_member_cannot_open_alerts(client, tenant):
    from ..factories import MembershipFactory, UserFactory

    member = UserFactory(username="m2@example.com")
    MembershipFactory(user=member, tenant=tenant, role="member")
    client.force_login(member)
    assert client.get("/billing/alerts").status_code == 403


def test_admin_billing_pages(client, tenant, api):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("b@orchestrio.example", "b@orchestrio.example", "pw-staff-123")
    client.force_login(staff)
    api.patch("alerts", {"webhook_url": "https://hooks.example/x", "enabled": True})
    for url in ("/admin/billing/subscription/", "/admin/billing/stripeevent/", "/admin/billing/usagecounter/", "/admin/billing/alertdelivery/", "/admin/billing/alertconfig/"):
        assert client.get(url).status_code == 200, url
    config_page = client.get(f"/admin/billing/alertconfig/{tenant.alert_config.pk}/change/")
    assert b"signing_secret_encrypted" not in config_page.content
