"""Who may open an instance to the world (issue 14, finding 13; docs/roles.md).

A gateway policy that lets anyone in — `anonymous`, or an OIDC policy whose rules pin no caller —
is the `expose` capability (admin, owner); any other policy is `operate` (members too), and
deleting one is `destroy`. Whether a write makes a policy public depends on its body (or on the
policy it changes), so the service decides, with the same `roles.require` as every route.
"""

from __future__ import annotations

import pytest

from gateway.models import GatewayPolicy

from ..factories import ApiTokenFactory, MembershipFactory, UserFactory
from ..helpers import Api, assert_error

PINNED = [{"repository": "acme/app"}]


@pytest.fixture
def admin_api(tenant):
    user = UserFactory(username="admin@example.com")
    MembershipFactory(user=user, tenant=tenant, role="admin")
    return Api(ApiTokenFactory(tenant=tenant, created_by=user, role="admin").plaintext, tenant=tenant, user=user)


def create(api, **body):
    return api.post("instances/web-01/gateway-policies", body)


@pytest.mark.parametrize(
    "body",
    [
        {"slug": "hook", "provider": "anonymous"},
        {"provider": "anonymous"},  # the whole tunnel
        {"slug": "ci", "provider": "github-oidc", "audience": "orchestrio"},  # any GitHub workflow passes
        {"slug": "ci", "provider": "github-oidc", "audience": "orchestrio", "allow": [{"ref": "refs/heads/main"}]},  # still no pin
    ],
)
def test_a_member_cannot_make_an_instance_public(member_api, admin_api, running, body):
    assert_error(create(member_api, **body), 403, contains="needs the owner or admin role; you are member")
    assert not GatewayPolicy.objects.exists()
    assert create(admin_api, **body).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"slug": "hook", "provider": "api-key"},
        {"slug": "ci", "provider": "github-oidc", "audience": "orchestrio", "allow": PINNED},
        {"slug": "hook", "provider": "anonymous", "enabled": False},  # public only once enabled
    ],
)
def test_a_member_may_add_policies_that_admit_only_known_callers(member_api, running, body):
    assert create(member_api, **body).status_code == 201


def test_a_member_cannot_turn_a_policy_public(member_api, admin_api, running):
    policy = create(member_api, slug="ci", provider="github-oidc", audience="orchestrio", allow=PINNED).json()
    assert_error(member_api.patch(f"gateway-policies/{policy['id']}", {"allow": []}), 403)
    assert_error(member_api.patch(f"gateway-policies/{policy['id']}", {"provider": "anonymous", "audience": "", "allow": []}), 403)
    assert GatewayPolicy.objects.get().allow == PINNED
    assert member_api.patch(f"gateway-policies/{policy['id']}", {"allow": [{"repository": "acme/other"}]}).status_code == 200
    assert admin_api.patch(f"gateway-policies/{policy['id']}", {"allow": []}).status_code == 200


def test_a_member_cannot_enable_a_public_policy_but_may_close_one(member_api, admin_api, running):
    policy = create(admin_api, slug="hook", provider="anonymous").json()
    assert member_api.patch(f"gateway-policies/{policy['id']}", {"enabled": False}).status_code == 200
    assert_error(member_api.patch(f"gateway-policies/{policy['id']}", {"enabled": True}), 403)
    assert GatewayPolicy.objects.get().enabled is False


def test_deleting_a_policy_needs_an_admin(member_api, admin_api, running):
    policy = create(member_api, slug="hook", provider="api-key").json()
    assert_error(member_api.delete(f"gateway-policies/{policy['id']}"), 403, contains="destroying")
    assert admin_api.delete(f"gateway-policies/{policy['id']}").status_code == 204


def test_the_console_keeps_the_same_rules(client, tenant, running, admin_api):
    member = UserFactory(username="console-member@example.com")
    MembershipFactory(user=member, tenant=tenant, role="member")
    client.force_login(member)
    form = {"provider": "anonymous", "slug": "hook", "audience": "", "issuer": "", "allow": "[]", "config": "{}", "enabled": "on"}
    response = client.post("/instances/web-01/gateway", form)
    assert response.status_code == 200 and b"needs the owner or admin role" in response.content
    assert not GatewayPolicy.objects.exists()
    assert client.post("/instances/web-01/gateway", {**form, "provider": "api-key"}).status_code == 302

    closed = create(admin_api, slug="open", provider="anonymous", enabled=False).json()
    client.post(f"/gateway-console/policies/{closed['id']}/toggle")  # enabling it would open it
    assert GatewayPolicy.objects.get(pk=closed["id"]).enabled is False
    assert client.post(f"/gateway-console/policies/{closed['id']}/delete").status_code == 403
    assert GatewayPolicy.objects.filter(pk=closed["id"]).exists()
