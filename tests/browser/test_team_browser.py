"""Issue 16 item 11, end to end in Chromium: an owner invites by email on the Team page, the
invitee opens the link in a browser of their own, signs up with the invited address and joins;
the owner changes their role, then removes them, and the invitee's console follows each step."""

from __future__ import annotations

import pytest
from django.core import mail

from orchestrio.models import ActivityEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_invite_join_change_role_and_remove(logged_in_page, live_server, browser, settings):
    settings.PUBLIC_URL = live_server.url  # the links the mail and the page show
    owner = logged_in_page
    owner.get_by_role("navigation", name="Console").get_by_role("link", name="Team").click()
    owner.get_by_label("Email", exact=True).fill("newbie@example.com")
    owner.get_by_label("Role", exact=True).select_option("member")
    owner.get_by_role("button", name="Send invitation").click()

    created = owner.get_by_test_id("invitation-created")
    assert "shown only once" in created.inner_text()
    link = owner.get_by_test_id("invitation-url").input_value()
    assert link.startswith(f"{live_server.url}/invitations/")
    assert len(mail.outbox) == 1 and link in mail.outbox[0].body and mail.outbox[0].to == ["newbie@example.com"]
    assert "newbie@example.com" in owner.get_by_test_id("invitations-table").inner_text()
    owner.reload()
    assert link not in owner.content()  # shown once

    # The invitee, in a browser of their own (no session, no cookies of the owner's).
    context = browser.new_context()
    try:
        invitee = context.new_page()
        invitee.set_default_timeout(15_000)
        invitee.goto(link)
        assert "invited newbie@example.com to join Browser Co" in invitee.get_by_test_id("invitation").inner_text().replace("\n", " ")
        invitee.get_by_label("Password").fill("short")
        invitee.get_by_role("button", name="Create account and join").click()
        assert "too short" in invitee.content()
        invitee.get_by_label("Password").fill("a brand new passphrase 42")
        invitee.get_by_role("button", name="Create account and join").click()
        invitee.wait_for_url(f"{live_server.url}/")
        assert "Welcome to Browser Co" in invitee.content()
        assert invitee.get_by_test_id("current-tenant").inner_text() == "browser-co"

        # The link is spent.
        invitee.goto(link)
        assert "already been used" in invitee.content()

        # The owner sees the new member and makes them an admin.
        owner.goto(f"{live_server.url}/team")
        row = owner.locator("tr[data-member='newbie@example.com']")
        assert row.get_by_test_id("member-role").inner_text() == "member"
        assert "newbie@example.com" not in owner.content().split("Pending invitations")[1]
        row.get_by_label("Role of newbie@example.com").select_option("admin")
        row.get_by_role("button", name="Change role").click()
        assert "newbie@example.com is now admin" in owner.content()
        assert owner.locator("tr[data-member='newbie@example.com']").get_by_test_id("member-role").inner_text() == "admin"

        # The invitee's console acts with the new role at once: an admin sees the invite form.
        invitee.goto(f"{live_server.url}/team")
        assert invitee.get_by_role("button", name="Send invitation").count() == 1

        # The last owner cannot be demoted, even by themselves.
        me = owner.locator("tr[data-member='browser@example.com']")
        me.get_by_label("Role of browser@example.com").select_option("admin")
        me.get_by_role("button", name="Change role").click()
        assert "only owner" in owner.content()

        # Removal: the invitee's next page has no tenant any more.
        owner.locator("tr[data-member='newbie@example.com']").get_by_role("button", name="Remove").click()
        assert "newbie@example.com was removed from the team" in owner.content()
        assert owner.locator("tr[data-member='newbie@example.com']").count() == 0
        response = invitee.goto(f"{live_server.url}/team")
        assert response.status == 403
    finally:
        context.close()

    actions = list(ActivityEvent.objects.filter(tenant_id="browser-co").order_by("created_at", "id").values_list("action", flat=True))
    assert actions == ["invitation.create", "member.join", "member.role_change", "member.remove"]
