from __future__ import annotations

from html import unescape

import pytest

from gateway.models import GatewayPolicy


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def test_gateway_tab_creates_toggles_and_deletes(console, running):
    page = console.get("/instances/web-01/gateway")
    assert page.status_code == 200 and b"only this tenant's API tokens get in" in page.content
    response = console.post("/instances/web-01/gateway", {"provider": "github-oidc", "slug": "deploy", "audience": "orchestrio", "allow": "[]", "config": "{}", "enabled": "on"})
    assert response.status_code == 302
    policy = GatewayPolicy.objects.get()
    assert policy.provider == "github-oidc" and policy.slug == "deploy"
    page = console.get("/instances/web-01/gateway")
    assert b"pin no caller" in page.content and b"token.actions.githubusercontent.com" in page.content
    console.post(f"/gateway-console/policies/{policy.pk}/toggle")
    assert GatewayPolicy.objects.get().enabled is False
    console.post(f"/gateway-console/policies/{policy.pk}/delete")
    assert not GatewayPolicy.objects.exists()


def test_gateway_form_errors(console, running):
    response = console.post("/instances/web-01/gateway", {"provider": "oidc", "slug": "", "audience": "", "allow": "{bad", "config": "{}"})
    assert response.status_code == 200 and b"not valid JSON" in response.content
    response = console.post("/instances/web-01/gateway", {"provider": "azure-oidc", "slug": "x", "audience": "a", "allow": "[]", "config": "{}"})
    assert b"needs config.tenant" in response.content
    assert not GatewayPolicy.objects.exists()


@pytest.mark.parametrize(
    ("provider", "slug", "worded"),
    [("anonymous", "", "already has an anonymous policy for the catch-all"),
     ("github-oidc", "deploy", "already has a GitHub Actions OIDC policy for the endpoint 'deploy'"),
     ("api-key", "ops", "already has an Orchestrio API key policy for the endpoint 'ops'")],
)  # fmt: skip
def test_a_second_policy_for_the_same_place_is_refused_in_words(console, running, provider, slug, worded):
    body = {"provider": provider, "slug": slug, "audience": "orchestrio" if provider.endswith("oidc") else "", "allow": "[]", "config": "{}", "enabled": "on"}
    assert console.post("/instances/web-01/gateway", body).status_code == 302
    response = console.post("/instances/web-01/gateway", body)
    assert response.status_code == 200 and worded in unescape(response.content.decode())
    assert GatewayPolicy.objects.count() == 1


def test_policy_form_errors_come_together_in_words(console, running):
    response = console.post("/instances/web-01/gateway", {"provider": "api-key", "slug": "hooks", "audience": "x", "issuer": "https://id.example", "allow": "[]", "config": '{"tenant": "t"}'})
    errors = response.context["form"].errors
    assert errors["audience"] == ["an Orchestrio API key policy takes no audience (only OIDC policies do): leave it empty"]
    assert errors["issuer"] == ["an Orchestrio API key policy takes no issuer (only OIDC policies do): leave it empty"]
    assert errors["config"] == ["an Orchestrio API key policy has no config key 'tenant' (it takes: none)"]
    response = console.post("/instances/web-01/gateway", {"provider": "azure-oidc", "slug": "x", "audience": "", "allow": "[]", "config": "{}"})
    errors = response.context["form"].errors
    assert errors["audience"] == ["an Azure OIDC policy needs an audience: the `aud` its tokens are issued for"]
    assert errors["config"][0].startswith("an Azure OIDC policy needs config.tenant")
    assert not GatewayPolicy.objects.exists()


def test_other_tenants_policy_is_404(console, other_api):
    from ..factories import InstanceFactory

    instance = InstanceFactory(tenant=other_api.tenant, instance_id="theirs-gw")
    policy = GatewayPolicy.objects.create(instance=instance, tenant=other_api.tenant, provider="anonymous", slug="x")
    assert console.post(f"/gateway-console/policies/{policy.pk}/delete").status_code == 404
    assert console.get("/instances/theirs-gw/gateway").status_code == 404
    assert GatewayPolicy.objects.filter(pk=policy.pk).exists()


def test_admin_validates_policies(client, running, api):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("g@orchestrio.example", "g@orchestrio.example", "pw-staff-123")
    client.force_login(staff)
    policy = api.post("instances/web-01/gateway-policies", {"provider": "api-key", "slug": "s"}).json()
    response = client.post(f"/admin/gateway/gatewaypolicy/{policy['id']}/change/", {"slug": "s", "provider": "oidc", "audience": "", "issuer": "", "allow": "[]", "config": "{}", "enabled": "on"})
    assert response.status_code == 200 and b"a Generic OIDC policy needs an issuer" in response.content
    assert GatewayPolicy.objects.get().provider == "api-key"
