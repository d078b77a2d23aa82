from __future__ import annotations

import pytest

from deployments.models import Deployment
from domains.models import CustomDomain

from ..helpers import CommitClient, run_jobs
from ..domains.dns_fixture import dns_server  # noqa: F401 - fixture


@pytest.fixture
def console(tenant, owner):
    client = CommitClient()
    client.force_login(owner)
    return client


def test_domain_tab(console, running, dns_server):
    page = console.get("/instances/web-01/domain")
    assert page.status_code == 200 and b"Attach a custom domain" in page.content
    bad = console.post("/instances/web-01/domain", {"domain": "not a domain"})
    assert b"not a valid DNS label" in bad.content or b"valid" in bad.content
    console.post("/instances/web-01/domain", {"domain": "app.acme.example"})
    domain = CustomDomain.objects.get()
    page = console.get("/instances/web-01/domain")
    assert domain.verification_token.encode() in page.content and b"web-01.instances.localhost" in page.content
    dns_server.set("app.acme.example", "CNAME", "web-01.instances.localhost.")
    dns_server.set("_orchestrio-challenge.app.acme.example", "TXT", f'"{domain.verification_token}"')
    response = console.post("/instances/web-01/domain/check", follow=True)
    assert b"is verified and active" in response.content
    console.post("/instances/web-01/domain/remove")
    assert CustomDomain.objects.get().status == "removing"


@pytest.mark.slow
def test_deployment_pages(console, api):
    response = console.post("/deployments/new", {"name": "from-console", "environment": "staging", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "config": '{"a": 1}', "secrets": "TOKEN=abc123"})
    deployment = Deployment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/deployments/{deployment.pk}"
    run_jobs()
    page = console.get(f"/deployments/{deployment.pk}")
    assert page.status_code == 200 and b"abc123" not in page.content and b"TOKEN" in page.content
    console.post(f"/deployments/{deployment.pk}", {"config": '{"a": 2}', "secrets": ""})
    run_jobs()
    page = console.get(f"/deployments/{deployment.pk}")
    assert "~ a: 1 → 2".encode() in page.content
    console.post(f"/deployments/{deployment.pk}/rollback", {"revision": "1"})
    run_jobs()
    deployment.refresh_from_db()
    assert deployment.current_revision == 3
    assert console.get("/deployments/").status_code == 200
    console.post(f"/deployments/{deployment.pk}/delete")
    run_jobs()
    assert Deployment.objects.get().deleted_at is not None


def test_deployment_form_errors(console):
    response = console.post("/deployments/new", {"name": "x", "environment": "staging", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "config": "[1]", "secrets": "nope"})
    assert response.status_code == 200 and b"must be a JSON object" in response.content and b"NAME=value" in response.content


def test_deleting_a_production_deployment_asks_for_its_name_in_the_console_s_words(console):
    from orchestrio.models import ActivityEvent

    console.post("/deployments/new", {"name": "web-prod", "environment": "production", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "config": "{}", "secrets": ""})
    deployment = Deployment.objects.get()
    for confirm in (None, "wrong"):
        response = console.post(f"/deployments/{deployment.pk}/delete", {} if confirm is None else {"confirm": confirm}, follow=True)
        assert b"type the deployment&#x27;s name to confirm" in response.content and b"?confirm=" not in response.content
        assert Deployment.objects.get().deleted_at is None
    response = console.post(f"/deployments/{deployment.pk}/delete", {"confirm": " web-prod "})
    assert response.status_code == 302 and Deployment.objects.get().deleted_at is not None
    assert ActivityEvent.objects.filter(action="deployment.delete", object_id=deployment.pk).exists()


def test_admin_pages(client, running, api):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("d@orchestrio.example", "d@orchestrio.example", "pw-staff-123")
    client.force_login(staff)
    api.post("instances/web-01/custom-domain", {"domain": "app.acme.example"})
    for url in ("/admin/domains/customdomain/", "/admin/deployments/deployment/", f"/admin/domains/customdomain/{CustomDomain.objects.get().pk}/change/"):
        assert client.get(url).status_code == 200, url


def test_new_deployment_form_says_it_uses_one_of_the_plans_instances(console, tenant):
    """Issue 16, item 3: before the user deploys, the form says the deployment's new instance counts
    against the plan, with the plan's current count and limit."""
    from orchestrio.models import SubscriptionPlan

    from ..factories import InstanceFactory

    InstanceFactory(tenant=tenant, instance_id="acme-one")  # the pro plan allows 20
    notice = _quota_notice(console.get("/deployments/new"))
    assert "counts against your plan" in notice
    assert "You have 1 of the 20 instances your Pro plan allows; this deployment makes it 2." in notice

    SubscriptionPlan.objects.filter(pk="pro").update(max_instances=1)
    notice = _quota_notice(console.get("/deployments/new"))
    assert "You already have 1 of the 1 instances your Pro plan allows" in notice and "upgrade the plan" in notice

    SubscriptionPlan.objects.filter(pk="pro").update(max_instances=None)
    assert "no instance limit; you have 1" in _quota_notice(console.get("/deployments/new"))


def _quota_notice(response) -> str:
    import re

    assert response.status_code == 200
    match = re.search(r'data-testid="instance-quota">(.*?)</p>', response.content.decode(), re.S)
    assert match, "the new-deployment form has no plan notice"
    return " ".join(match.group(1).split())
