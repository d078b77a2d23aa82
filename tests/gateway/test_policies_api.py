from __future__ import annotations

import pytest

from orchestrio.models import SubscriptionPlan
from gateway.models import GatewayPolicy
from gateway.oidc import expected_issuer

from ..factories import InstanceFactory
from ..helpers import assert_error, assert_validation_error
from ..isolation import TenantIsolationContract


def test_create_and_read(api, running):
    body = api.post("instances/web-01/gateway-policies", {"slug": "stripe-webhook", "provider": "anonymous"})
    assert body.status_code == 201, body.content
    policy = body.json()
    assert policy["id"].startswith("pol_") and policy["slug"] == "stripe-webhook" and policy["enabled"] is True
    assert policy["endpoint"].endswith("/gateway/web-01/stripe-webhook")
    assert any("anyone on the internet" in w for w in policy["warnings"])
    assert api.get(f"gateway-policies/{policy['id']}").json()["id"] == policy["id"]
    assert api.get("instances/web-01/gateway-policies").json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"provider": "password"}, ("body", "provider")),
        ({}, ("body", "provider")),
        ({"provider": "api-key", "slug": "Bad_Slug"}, ("body", "slug")),
        ({"provider": "api-key", "slug": "-x"}, ("body", "slug")),
        ({"provider": "oidc", "audience": "a"}, ("body", "issuer")),
        ({"provider": "oidc", "issuer": "https://idp.example"}, ("body", "audience")),
        ({"provider": "github-oidc"}, ("body", "audience")),
        ({"provider": "azure-oidc", "audience": "a"}, ("body", "config", "tenant")),
        ({"provider": "circleci-oidc", "audience": "a"}, ("body", "config", "org_id")),
        ({"provider": "circleci-oidc", "audience": "a", "config": {"org_id": "not-a-uuid"}}, ("body", "config", "org_id")),
        ({"provider": "bitbucket-oidc", "audience": "a"}, ("body", "config", "workspace")),
        ({"provider": "terraform-oidc", "audience": "a", "config": {"hostname": "not a host"}}, ("body", "config", "hostname")),
        ({"provider": "github-oidc", "audience": "a", "config": {"org": "x"}}, ("body", "config", "org")),
        ({"provider": "oidc", "audience": "a", "issuer": "ftp://idp.example"}, ("body", "issuer")),
        ({"provider": "oidc", "audience": "a", "issuer": "http://idp.example"}, ("body", "issuer")),
        ({"provider": "api-key", "issuer": "https://idp.example"}, ("body", "issuer")),
        ({"provider": "api-key", "audience": "x"}, ("body", "audience")),
        ({"provider": "api-key", "allow": {"sub": "x"}}, ("body", "allow")),
        ({"provider": "api-key", "allow": [{"sub": {"nested": 1}}]}, ("body", "allow")),
        ({"provider": "anonymous", "allow": [{"sub": "x"}]}, ("body", "allow")),
    ],
)
def test_validation(api, running, body, loc):
    assert_validation_error(api.post("instances/web-01/gateway-policies", body), loc)
    assert not GatewayPolicy.objects.exists()


def test_http_loopback_issuer_needs_the_setting(api, running, settings):
    body = {"provider": "oidc", "audience": "a", "issuer": "http://127.0.0.1:9/idp"}
    settings.OUTBOUND_ALLOW_LOOPBACK = False
    assert_validation_error(api.post("instances/web-01/gateway-policies", body), ("body", "issuer"))
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    assert api.post("instances/web-01/gateway-policies", body).status_code == 201


def test_default_issuers_per_provider():
    assert expected_issuer("github-oidc") == "https://token.actions.githubusercontent.com"
    assert expected_issuer("gitlab-oidc") == "https://gitlab.com"
    assert expected_issuer("gcp-oidc") == "https://accounts.google.com"
    assert expected_issuer("azure-oidc", config={"tenant": "contoso.onmicrosoft.com"}) == "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
    assert expected_issuer("circleci-oidc", config={"org_id": "0f3a8b1c-1234-4c8a-9a7e-0123456789ab"}) == "https://oidc.circleci.com/org/0f3a8b1c-1234-4c8a-9a7e-0123456789ab"
    assert expected_issuer("terraform-oidc") == "https://app.terraform.io"
    assert expected_issuer("terraform-oidc", config={"hostname": "tfe.acme.example"}) == "https://tfe.acme.example"
    assert expected_issuer("bitbucket-oidc", config={"workspace": "acme"}) == "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc"
    assert expected_issuer("gitlab-oidc", issuer="https://gitlab.acme.example/") == "https://gitlab.acme.example"


def test_effective_issuer_and_warning_in_the_api(api, running):
    body = api.post("instances/web-01/gateway-policies", {"provider": "github-oidc", "audience": "orchestrio", "slug": "deploy"}).json()
    assert body["effective_issuer"] == "https://token.actions.githubusercontent.com"
    assert any("pin no caller" in w for w in body["warnings"])
    pinned = api.patch(f"gateway-policies/{body['id']}", {"allow": [{"repository": "acme/app"}]}).json()
    assert pinned["warnings"] == []


def test_one_policy_per_instance_slug_and_provider(api, running):
    assert api.post("instances/web-01/gateway-policies", {"provider": "api-key", "slug": "hook"}).status_code == 201
    assert_error(api.post("instances/web-01/gateway-policies", {"provider": "api-key", "slug": "hook"}), 409)
    assert api.post("instances/web-01/gateway-policies", {"provider": "anonymous", "slug": "hook"}).status_code == 201
    assert api.post("instances/web-01/gateway-policies", {"provider": "api-key"}).status_code == 201
    assert_error(api.post("instances/web-01/gateway-policies", {"provider": "api-key", "slug": None}), 409)


def test_oidc_needs_a_plan_with_it(api, tenant, running):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(feature_oidc_gateway=False)
    body = assert_error(api.post("instances/web-01/gateway-policies", {"provider": "github-oidc", "audience": "a"}), 402)
    assert body["limit"] == "oidc_gateway"
    assert api.post("instances/web-01/gateway-policies", {"provider": "api-key"}).status_code == 201


def test_patch_is_partial_and_validated(api, running):
    policy = api.post("instances/web-01/gateway-policies", {"provider": "api-key", "slug": "hook", "allow": [{"sub": "ork_live_abc"}]}).json()
    body = api.patch(f"gateway-policies/{policy['id']}", {"enabled": False}).json()
    assert body["enabled"] is False and body["allow"] == [{"sub": "ork_live_abc"}] and body["slug"] == "hook"
    assert_validation_error(api.patch(f"gateway-policies/{policy['id']}", {"provider": "oidc"}), ("body", "issuer"))
    assert_validation_error(api.patch(f"gateway-policies/{policy['id']}", {"slug": "UPPER"}), ("body", "slug"))
    assert api.delete(f"gateway-policies/{policy['id']}").status_code == 204
    assert_error(api.get(f"gateway-policies/{policy['id']}"), 404)


def test_policy_changes_are_audited(api, running):
    from orchestrio.models import ActivityEvent

    policy = api.post("instances/web-01/gateway-policies", {"provider": "api-key"}).json()
    api.patch(f"gateway-policies/{policy['id']}", {"enabled": False})
    api.delete(f"gateway-policies/{policy['id']}")
    actions = list(ActivityEvent.objects.filter(object_type="gateway_policy").order_by("id").values_list("action", flat=True))
    assert actions == ["gateway_policy.create", "gateway_policy.update", "gateway_policy.delete"]


class TestPolicyIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "gateway-policies/{id}", None),
        ("PATCH", "gateway-policies/{id}", {"enabled": False}),
        ("DELETE", "gateway-policies/{id}", None),
        ("GET", "instances/{instance_id}/gateway-policies", None),
        ("POST", "instances/{instance_id}/gateway-policies", {"provider": "api-key", "slug": "x"}),
    ]

    def make_object(self, api):
        InstanceFactory(instance_id="policy-host", tenant=api.tenant, state="running")
        policy = api.post("instances/policy-host/gateway-policies", {"provider": "anonymous", "slug": "public"}).json()
        return {"id": policy["id"], "instance_id": "policy-host"}
