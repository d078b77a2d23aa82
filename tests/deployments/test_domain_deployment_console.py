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


def test_admin_pages(client, running, api):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("d@orchestrio.example", "d@orchestrio.example", "pw-staff-123")
    client.force_login(staff)
    api.post("instances/web-01/custom-domain", {"domain": "app.acme.example"})
    for url in ("/admin/domains/customdomain/", "/admin/deployments/deployment/", f"/admin/domains/customdomain/{CustomDomain.objects.get().pk}/change/"):
        assert client.get(url).status_code == 200, url
