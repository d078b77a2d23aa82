"""A plan limit refused in the console says where to go next: "Upgrade your plan" (the Billing
page's plans) for the roles that may change billing, "ask an owner or admin" for the others —
on a form's error (instance, deployment, task, gateway policy) and on a message (a token, a
start)."""

from __future__ import annotations

import pytest

from orchestrio.models import SubscriptionPlan

from ..factories import InstanceFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

UPGRADE = 'data-testid="upgrade-link"'
ASK = 'data-testid="ask-owner"'


def _plan(tenant, **fields):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(**fields)


@pytest.fixture
def owner_console(client, tenant, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def member_console(client, tenant):
    user = UserFactory(username="member@example.com")
    MembershipFactory(user=user, tenant=tenant, role="member")
    client.force_login(user)
    return client


def _instance_create(client):
    return client.post("/instances/new", {"instance_id": "one-more", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "labels": ""})


def test_the_instance_form_links_an_owner_to_the_plans(owner_console, tenant):
    _plan(tenant, max_instances=0)
    html = _instance_create(owner_console).content.decode()
    assert "the Pro plan allows 0 instances" in html
    assert UPGRADE in html and 'href="/billing/#plans"' in html and ASK not in html
    assert 'id="plans"' in owner_console.get("/billing/").content.decode()


def test_a_member_is_told_to_ask_an_owner(member_console, tenant):
    _plan(tenant, max_instances=0)
    html = _instance_create(member_console).content.decode()
    assert ASK in html and UPGRADE not in html and "Acme Corp" in html


def test_a_form_refused_for_another_reason_has_no_upgrade_link(owner_console, tenant):
    InstanceFactory(tenant=tenant, instance_id="one-more")
    html = _instance_create(owner_console).content.decode()
    assert "one-more" in html and UPGRADE not in html and ASK not in html


def test_deployment_task_and_gateway_forms(owner_console, tenant):
    InstanceFactory(tenant=tenant, instance_id="lim-1", state="running")
    _plan(tenant, max_deployments=0, executions_per_month=0, feature_oidc_gateway=False)
    deployment = owner_console.post("/deployments/new", {"name": "site", "environment": "staging", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "config": "{}", "secrets": ""})
    task = owner_console.post("/instances/lim-1/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/backup.sh", "script_args": "{}", "timeout_seconds": "60"})
    policy = owner_console.post("/instances/lim-1/gateway", {"provider": "github-oidc", "audience": "a", "slug": "ci", "allow": "[]", "config": "{}", "enabled": "on"})
    for response in (deployment, task, policy):
        html = response.content.decode()
        assert "plan" in html and UPGRADE in html, html[:2000]


def test_messages_carry_the_link_with_their_style(owner_console, tenant):
    _plan(tenant, max_tokens=0)
    html = owner_console.post("/tokens", {"name": "ci", "mode": "live", "expires_in_days": ""}).content.decode()
    assert 'class="message message-error">the Pro plan allows 0 active API tokens' in html and UPGRADE in html
    InstanceFactory(tenant=tenant, instance_id="stopped-1", state="stopped")
    _plan(tenant, max_tokens=None, max_running_instances=0)
    html = owner_console.post("/instances/stopped-1/start", follow=True).content.decode()
    assert "running instances" in html and UPGRADE in html
    # Other messages are as before: no link, the level's style.
    html = owner_console.post("/instances/stopped-1/stop", follow=True).content.decode()
    assert "message-error" in html and UPGRADE not in html
