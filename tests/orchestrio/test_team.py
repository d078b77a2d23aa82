"""Team management (issue 16 item 11): /api/v1/members and /api/v1/invitations, and the console's
invitation page. Roles as docs/roles.md says: admins and owners manage the team, only owners grant
or take away `owner`, the last owner stays; every change is in the audit log."""

from __future__ import annotations

from datetime import timedelta

from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrio import services
from orchestrio.models import ActivityEvent, ApiToken, IdempotencyKey, Invitation, Membership

from ..factories import ApiTokenFactory, MembershipFactory, UserFactory
from ..helpers import Api, CommitClient, assert_error, assert_validation_error
from ..isolation import TenantIsolationContract


def role_api(tenant, role: str, email: str | None = None) -> Api:
    user = UserFactory(username=email or f"{role}-{Membership.objects.count()}@acme.example")
    MembershipFactory(user=user, tenant=tenant, role=role)
    return Api(ApiTokenFactory(tenant=tenant, created_by=user, role=role).plaintext, tenant=tenant, user=user)


def member_id(tenant, user) -> int:
    return Membership.objects.get(tenant=tenant, user=user).pk


def token_from(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def open_link(client, body) -> str:
    """Open an invitation's link as its mail does: the token moves into the session, and the
    browser on to the token-free page, which is returned."""
    response = client.get(body["url"].removeprefix("http://127.0.0.1:8000"))
    assert response.status_code == 302 and response["Location"] == "/invitation", response
    return "/invitation"


def invite(api, email="new@acme.example", role="member", **extra):
    response = api.post("invitations", {"email": email, "role": role, **extra})
    assert response.status_code == 201, response.content
    return response.json()


# --- members ------------------------------------------------------------------------------------


def test_members_list_shows_every_member_with_role(api, tenant, owner):
    member = role_api(tenant, "member", "dev@acme.example")
    body = api.get("members").json()
    assert [(row["email"], row["role"]) for row in body["results"]] == [(owner.username, "owner"), ("dev@acme.example", "member")]
    assert body["results"][0]["joined_at"].endswith("Z")
    # Every member reads the team.
    assert member.get("members").json()["count"] == 2


def test_admin_changes_a_role_and_it_is_audited(tenant):
    admin = role_api(tenant, "admin")
    dev = role_api(tenant, "member", "dev@acme.example")
    response = admin.patch(f"members/{member_id(tenant, dev.user)}", {"role": "admin"})
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "admin"
    event = ActivityEvent.objects.get(action="member.role_change")
    assert event.actor_label.startswith("ork_") and event.data["from"] == "member" and event.data["to"] == "admin"
    assert event.data["email"] == "dev@acme.example"


def test_a_member_cannot_change_roles_remove_or_invite(tenant, owner):
    member = role_api(tenant, "member")
    target = member_id(tenant, owner)
    assert_error(member.patch(f"members/{target}", {"role": "member"}), 403, contains="needs the owner or admin role")
    assert_error(member.delete(f"members/{target}"), 403, contains="needs the owner or admin role")
    assert_error(member.post("invitations", {"email": "x@acme.example"}), 403)
    assert_error(member.get("invitations"), 403)
    assert not ActivityEvent.objects.filter(action__startswith=("member.")).exists()


def test_only_owners_grant_or_take_away_owner(tenant, owner):
    admin = role_api(tenant, "admin")
    dev = role_api(tenant, "member", "dev@acme.example")
    assert_error(admin.patch(f"members/{member_id(tenant, dev.user)}", {"role": "owner"}), 403, contains="owner role")
    assert_error(admin.patch(f"members/{member_id(tenant, admin.user)}", {"role": "owner"}), 403)  # not even oneself
    assert_error(admin.patch(f"members/{member_id(tenant, owner)}", {"role": "admin"}), 403, contains="needs the owner role")
    assert_error(admin.delete(f"members/{member_id(tenant, owner)}"), 403)
    assert_error(admin.post("invitations", {"email": "boss@acme.example", "role": "owner"}), 403)
    assert Membership.objects.get(tenant=tenant, user=owner).role == "owner"


def test_the_last_owner_cannot_be_demoted_or_removed(api, tenant, owner):
    mine = member_id(tenant, owner)
    assert_error(api.patch(f"members/{mine}", {"role": "admin"}), 400, contains="only owner")
    assert_error(api.delete(f"members/{mine}"), 400, contains="make someone else an owner first")
    # With a second owner, the first may step down.
    second = role_api(tenant, "member", "second@acme.example")
    assert api.patch(f"members/{member_id(tenant, second.user)}", {"role": "owner"}).status_code == 200
    assert api.patch(f"members/{mine}", {"role": "admin"}).status_code == 200
    # The first owner's token went down with them (a token never outranks its creator)...
    assert ApiToken.objects.get(token_hash__isnull=False, created_by=owner).role == "admin"
    assert_error(api.patch(f"members/{member_id(tenant, second.user)}", {"role": "member"}), 403)
    # ...and a promotion raises no token: the second owner's old member token stays a member's.
    assert_error(second.patch(f"members/{mine}", {"role": "member"}), 403)
    # The second is now the last owner.
    new_owner = Api(ApiTokenFactory(tenant=tenant, created_by=second.user, role="owner").plaintext)
    assert_error(new_owner.delete(f"members/{member_id(tenant, second.user)}"), 400, contains="only owner")


def test_removal_revokes_the_members_tokens_and_demotion_lowers_them(api, tenant):
    dev = role_api(tenant, "admin", "dev@acme.example")
    extra = ApiTokenFactory(tenant=tenant, created_by=dev.user, role="admin")
    assert api.patch(f"members/{member_id(tenant, dev.user)}", {"role": "member"}).status_code == 200
    assert set(ApiToken.objects.filter(created_by=dev.user).values_list("role", flat=True)) == {"member"}
    assert_error(dev.post("instances/cleanup"), 403, contains="you are member")  # the token now acts as a member

    response = api.delete(f"members/{member_id(tenant, dev.user)}")
    assert response.status_code == 204
    assert not Membership.objects.filter(tenant=tenant, user=dev.user).exists()
    assert ApiToken.objects.get(pk=extra.pk).revoked_at is not None
    assert_error(dev.get("tenant"), 401)
    event = ActivityEvent.objects.get(action="member.remove")
    assert event.data == {"email": "dev@acme.example", "role": "member", "tokens_revoked": 2}


def test_member_payloads_are_validated(api, tenant, owner):
    target = member_id(tenant, owner)
    assert_validation_error(api.patch(f"members/{target}", {"role": "god"}), ("body", "role"))
    assert_validation_error(api.patch(f"members/{target}", {}), ("body", "role"))
    assert_error(api.patch("members/999999", {"role": "member"}), 404)
    assert_error(api.get("members/not-a-number"), 404)
    assert api.put(f"members/{target}", {"role": "owner"}).status_code == 405


def test_scoped_tokens_cannot_manage_the_team(tenant, owner):
    scoped = ApiTokenFactory(tenant=tenant, created_by=owner, role="owner", instance_id="acme-web")
    client = Api(scoped.plaintext, tenant=tenant, user=owner)
    for method, path, body in (("GET", "members", None), ("POST", "invitations", {"email": "x@acme.example"}), ("GET", "invitations", None)):
        assert_error(client.request(method, path, body), 403, contains="scoped to instance")


class TestMemberIsolation(TenantIsolationContract):
    endpoints = [
        ("GET", "members/{id}", None),
        ("PATCH", "members/{id}", {"role": "member"}),
        ("DELETE", "members/{id}", None),
    ]

    def make_object(self, api):
        user = UserFactory(username="victim@acme.example")
        return {"id": MembershipFactory(user=user, tenant=api.tenant, role="admin").pk}


class TestInvitationIsolation(TenantIsolationContract):
    endpoints = [("GET", "invitations/{id}", None), ("DELETE", "invitations/{id}", None)]

    def make_object(self, api):
        return {"id": invite(api)["id"]}


def test_other_tenants_members_never_listed(api, other_api):
    invite(api, "secret-hire@acme.example")
    assert "acme" not in str(other_api.get("members").json())
    assert "secret-hire" not in str(other_api.get("invitations").json())


# --- invitations --------------------------------------------------------------------------------


def test_invitation_is_mailed_shown_once_and_stored_as_a_hash(api, tenant):
    response = api.post("invitations", {"email": " New@Acme.Example ", "role": "admin"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["email"] == "new@acme.example" and body["role"] == "admin" and body["status"] == "pending"
    assert body["url"].startswith("http://127.0.0.1:8000/invitations/inv_")
    token = token_from(body["url"])
    row = Invitation.objects.get(pk=body["id"])
    assert token not in row.token_hash and len(row.token_hash) == 64
    assert abs(row.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new@acme.example"] and body["url"] in mail.outbox[0].body
    # Never again: not in the list, not in the detail, not in the audit log.
    assert token not in str(api.get("invitations").json()) and token not in str(api.get(f"invitations/{body['id']}").json())
    event = ActivityEvent.objects.get(action="invitation.create")
    assert token not in str(event.data) and event.data["email"] == "new@acme.example"


def test_invitation_refusals(api, tenant, owner):
    invite(api, "new@acme.example")
    assert_error(api.post("invitations", {"email": "new@acme.example"}), 409, contains="already has an invitation")
    assert_error(api.post("invitations", {"email": owner.username}), 409, contains="already a member")
    assert_validation_error(api.post("invitations", {"email": "not an email"}), ("body", "email"))
    assert_validation_error(api.post("invitations", {"email": "a@acme.example", "expires_in_days": 31}), ("body", "expires_in_days"))
    assert_validation_error(api.post("invitations", {"email": "a@acme.example", "role": "root"}), ("body", "role"))


def test_pending_invitations_are_capped(api, tenant):
    for n in range(services.INVITATION_MAX_PENDING):
        Invitation.objects.create(tenant=tenant, email=f"p{n}@acme.example", token_hash=f"{n:064d}", expires_at=timezone.now() + timedelta(days=1))
    assert_error(api.post("invitations", {"email": "one-more@acme.example"}), 409, contains="invitations are waiting already")
    Invitation.objects.filter(email="p0@acme.example").update(revoked_at=timezone.now())
    assert api.post("invitations", {"email": "one-more@acme.example"}).status_code == 201
    assert len(mail.outbox) == 1


def test_revoke_stops_the_link_and_is_audited(api, tenant):
    body = invite(api)
    assert api.delete(f"invitations/{body['id']}").status_code == 204
    assert api.get(f"invitations/{body['id']}").json()["status"] == "revoked"
    assert_error(api.delete(f"invitations/{body['id']}"), 400, contains="only a pending one")
    assert ActivityEvent.objects.filter(action="invitation.revoke", object_id=str(body["id"])).count() == 1
    user = UserFactory(username="new@acme.example")
    client = CommitClient()
    client.force_login(user)
    response = client.post(open_link(client, body))
    assert response.status_code == 410 and b"withdrawn" in response.content
    assert not Membership.objects.filter(user=user).exists()


def test_an_invited_user_with_an_account_logs_in_and_joins_once(api, tenant):
    body = invite(api, "dev@acme.example", role="admin")
    user = UserFactory(username="dev@acme.example")
    anonymous = CommitClient()
    path = open_link(anonymous, body)
    page = anonymous.get(path)
    assert page.status_code == 200 and b"Log in as dev@acme.example" in page.content
    assert token_from(body["url"]).encode() not in page.content  # the secret is not in the page
    assert anonymous.post(path).status_code == 422  # no account made, nobody joined
    # Logging in keeps the opened invitation (the session's data survives the login).
    assert anonymous.post("/login?next=/invitation", {"username": "dev@acme.example", "password": "correct horse battery staple"}).status_code == 302
    assert b"Join Acme Corp" in anonymous.get(path).content
    client = CommitClient()
    client.force_login(user)
    open_link(client, body)
    response = client.post(path)
    assert response.status_code == 302
    membership = Membership.objects.get(tenant=tenant, user=user)
    assert membership.role == "admin"
    assert client.session["tenant_id"] == tenant.pk
    event = ActivityEvent.objects.get(action="member.join")
    assert event.actor_label == "dev@acme.example" and event.data["role"] == "admin"
    assert api.get(f"invitations/{body['id']}").json()["status"] == "accepted"
    # Single use: the link is spent.
    again = client.post(open_link(client, body))
    assert again.status_code == 410 and b"already been used" in again.content


def test_someone_else_logged_in_cannot_take_the_invitation(api, tenant):
    body = invite(api, "dev@acme.example")
    mallory = UserFactory(username="mallory@evil.example")
    client = CommitClient()
    client.force_login(mallory)
    response = client.post(open_link(client, body))
    assert response.status_code == 403 and b"this invitation is for dev@acme.example" in response.content
    assert not Membership.objects.filter(user=mallory).exists()
    assert api.get(f"invitations/{body['id']}").json()["status"] == "pending"


def test_signing_up_with_the_invited_email_joins(api, tenant):
    body = invite(api, "fresh@acme.example")
    client = CommitClient()
    path = open_link(client, body)
    weak = client.post(path, {"password": "123"})
    assert weak.status_code == 422 and b"too short" in weak.content
    response = client.post(path, {"password": "a-long-enough passphrase 7"})
    assert response.status_code == 302
    membership = Membership.objects.get(tenant=tenant, user__username="fresh@acme.example")
    assert membership.role == "member" and membership.user.check_password("a-long-enough passphrase 7")
    assert client.get("/").status_code == 200  # logged in, in the tenant


def test_expired_and_unknown_links(api, tenant):
    body = invite(api, "late@acme.example", expires_in_days=1)
    Invitation.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = CommitClient()
    response = client.post(open_link(client, body), {"password": "a-long-enough passphrase 7"})
    assert response.status_code == 410 and b"expired" in response.content
    assert not Membership.objects.filter(user__username="late@acme.example").exists()
    assert api.get(f"invitations/{body['id']}").json()["status"] == "expired"
    # An expired invitation no longer blocks a new one.
    assert api.post("invitations", {"email": "late@acme.example"}).status_code == 201
    for bad in ("inv_" + "x" * 43, "x" * 47, "short", "%00" * 30, "é" * 30):
        assert CommitClient().get(f"/invitations/{bad}").status_code == 404, bad
    fresh = CommitClient()
    nothing = fresh.get("/invitation")
    assert nothing.status_code == 404 and b"open the link from your invitation email" in nothing.content
    assert fresh.post("/invitation", {"password": "a-long-enough passphrase 7"}).status_code == 404


def test_support_staff_see_invitations_read_only_without_the_hash(api, tenant):
    body = invite(api, "seen@acme.example")
    row = Invitation.objects.get(pk=body["id"])
    staff = UserFactory(username="ops@example.com", is_staff=True, is_superuser=True)
    client = CommitClient()
    client.force_login(staff)
    listing = client.get("/admin/orchestrio/invitation/?q=seen")
    assert listing.status_code == 200 and b"seen@acme.example" in listing.content
    detail = client.get(f"/admin/orchestrio/invitation/{row.pk}/change/")
    assert detail.status_code == 200 and row.token_hash.encode() not in detail.content
    assert client.post(f"/admin/orchestrio/invitation/{row.pk}/delete/", {"post": "yes"}).status_code == 403


def test_account_page_points_at_the_team(tenant, owner):
    role_api(tenant, "member", "dev@acme.example")
    client = CommitClient()
    client.force_login(owner)
    page = client.get("/account").content.decode()
    assert page.count("Manage the team") == 1 and "2 members in acme-corp" in page
    team = client.get("/team")
    assert team.status_code == 200 and "dev@acme.example" in team.content.decode()


def test_an_idempotent_retry_shows_the_same_link_again_and_sends_one_mail(api, tenant):
    headers = {"Idempotency-Key": "invite-dev-1"}
    first = api.post("invitations", {"email": "dev@acme.example"}, headers=headers)
    again = api.post("invitations", {"email": "dev@acme.example"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again["Cache-Control"] == "no-store"
    assert again.json()["url"] == first.json()["url"]
    assert Invitation.objects.count() == 1 and len(mail.outbox) == 1
    stored = IdempotencyKey.objects.get(key="invite-dev-1")
    assert stored.response_body is None and token_from(first.json()["url"]) not in stored.response_body_encrypted


def test_an_owner_may_leave_when_another_owner_stays(tenant, owner):
    second = UserFactory(username="co-owner@acme.example")
    MembershipFactory(user=second, tenant=tenant, role="owner")
    client = CommitClient()
    client.force_login(owner)
    response = client.post(f"/team/members/{member_id(tenant, owner)}/remove")
    assert response.status_code == 302 and response["Location"] == "/account"
    assert not Membership.objects.filter(tenant=tenant, user=owner).exists()
    assert client.get("/team").status_code == 403  # no tenant left for this account
    event = ActivityEvent.objects.get(action="member.remove")
    assert event.actor_label == owner.username and event.data["role"] == "owner"


def test_team_lists_do_not_grow_queries_with_the_team(api, tenant):
    def counted(path):
        with CaptureQueriesContext(connection) as captured:
            assert api.get(path).status_code == 200
        return len(captured)

    role_api(tenant, "member")
    invite(api, "a@acme.example")
    small = counted("members"), counted("invitations")
    for n in range(5):
        role_api(tenant, "member", f"m{n}@acme.example")
        invite(api, f"i{n}@acme.example")
    assert (counted("members"), counted("invitations")) == small
