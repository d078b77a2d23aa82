"""The console's account pages through Django's test client (the browser test is separate)."""

from __future__ import annotations

import re

import pytest

from orchestrio.models import ApiToken, Membership, Tenant

PASSWORD = "correct horse battery staple"


@pytest.fixture
def logged_in(client, tenant, owner):
    assert client.login(username=owner.username, password=PASSWORD)
    return client


def test_pages_require_login(client, db):
    for path in ("/", "/tokens", "/account", "/activity"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login")


def test_login_with_email_case_insensitive(client, tenant, owner):
    response = client.post("/login", {"username": owner.username.upper(), "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_login_failure_shows_error(client, tenant, owner):
    response = client.post("/login", {"username": owner.username, "password": "wrong"})
    assert response.status_code == 200
    assert b"That email and password do not match an account" in response.content


def test_signup_creates_tenant_and_owner(client, db):
    response = client.post(
        "/signup",
        {"email": "founder@startup.example", "password": "a-long-unusual-passphrase-42", "organization": "Startup", "tenant_id": "startup"},
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(pk="startup")
    membership = Membership.objects.get(tenant=tenant)
    assert membership.role == "owner" and membership.user.username == "founder@startup.example"
    assert tenant.plan_id == "starter"
    home = client.get("/")
    assert home.status_code == 200 and b"startup" in home.content


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"tenant_id": "Bad_Id"}, b"lowercase letters"),
        ({"password": "123"}, b"too short"),
        ({"email": "not-an-email"}, b"valid email"),
    ],
)
def test_signup_validation(client, db, data, error):
    base = {"email": "x@startup.example", "password": "a-long-unusual-passphrase-42", "organization": "S", "tenant_id": "startup"}
    response = client.post("/signup", {**base, **data})
    assert response.status_code == 200
    assert error in response.content
    assert not Tenant.objects.filter(pk="startup").exists()


def test_signup_with_taken_tenant_id(client, tenant):
    response = client.post(
        "/signup", {"email": "y@else.example", "password": "a-long-unusual-passphrase-42", "organization": "S", "tenant_id": tenant.pk}
    )
    assert response.status_code == 200 and b"is taken" in response.content


def test_tokens_page_creates_token_shown_once(logged_in):
    response = logged_in.post("/tokens", {"name": "laptop", "mode": "live", "expires_in_days": "90", "instance_id": ""})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    plaintext = re.search(rb'value="(ork_live_[0-9A-Za-z]+)"', response.content).group(1).decode()
    assert ApiToken.objects.filter(name="laptop").exists()
    # Shown once: a fresh load of the page no longer contains it.
    assert plaintext.encode() not in logged_in.get("/tokens").content


def test_tokens_page_shows_plan_limit_message(logged_in, tenant):
    from orchestrio.models import SubscriptionPlan

    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_tokens=0)
    response = logged_in.post("/tokens", {"name": "over", "mode": "live", "expires_in_days": "", "instance_id": ""})
    assert b"allows 0 active API tokens" in response.content


def test_revoke_asks_for_confirmation_then_revokes(logged_in, token):
    page = logged_in.get(f"/tokens/{token.pk}/revoke")
    assert page.status_code == 200 and b"cannot be undone" in page.content
    token.refresh_from_db()
    assert token.revoked_at is None  # a GET never revokes
    response = logged_in.post(f"/tokens/{token.pk}/revoke")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_revoke_of_another_tenants_token_is_404(logged_in, other_api):
    other_token = ApiToken.objects.get(tenant=other_api.tenant)
    assert logged_in.get(f"/tokens/{other_token.pk}/revoke").status_code == 404
    assert logged_in.post(f"/tokens/{other_token.pk}/revoke").status_code == 404


def test_session_api_access_needs_csrf(tenant, owner):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    assert client.login(username=owner.username, password=PASSWORD)
    assert client.get("/api/v1/tenant").status_code == 200
    refused = client.post("/api/v1/api-tokens", {"name": "x"}, content_type="application/json")
    assert refused.status_code == 403
    client.get("/tokens")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    allowed = client.post("/api/v1/api-tokens", {"name": "x"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert allowed.status_code == 201


def test_user_without_tenant_sees_explanation(client, db):
    from ..factories import UserFactory

    user = UserFactory(username="loner@example.com")
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 403 and b"not a member of any tenant" in response.content
    api = client.get("/api/v1/tenant")
    assert api.status_code == 403


def test_switch_tenant(logged_in, owner):
    from ..factories import MembershipFactory, TenantFactory

    second = TenantFactory(id="second-co")
    MembershipFactory(user=owner, tenant=second, role="member")
    logged_in.post("/account/tenant", {"tenant_id": "second-co"})
    assert logged_in.get("/api/v1/tenant").json()["tenant_id"] == "second-co"
    logged_in.post("/account/tenant", {"tenant_id": "other-corp-not-mine"})
    assert logged_in.get("/api/v1/tenant").json()["tenant_id"] == "second-co"


def test_console_pages_send_a_content_security_policy(logged_in):
    response = logged_in.get("/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_logout(logged_in):
    assert logged_in.post("/logout").status_code == 302
    assert logged_in.get("/").status_code == 302


def test_the_console_has_an_icon(logged_in, client):
    page = logged_in.get("/")
    assert b'rel="icon" href="/static/console/favicon.svg"' in page.content
    redirect = client.get("/favicon.ico")
    assert redirect.status_code == 301 and redirect["Location"] == "/static/console/favicon.svg"
    icon = client.get(redirect["Location"])
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)
