"""Debug consent and the conversations behind it (issue 21, item 2): 403 while off, readable
while on by the tenant's owners and admins and by support staff in the admin, every toggle and
every staff read audited and shown to the tenant."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from orchestrio.models import ActivityEvent
from runtime.models import InstanceRuntime

from ..factories import InstanceFactory
from ..helpers import assert_error


@pytest.fixture
def staff(client, db):
    user = get_user_model().objects.create_superuser("ops@orchestrio.example", "ops@orchestrio.example", "staff-password-1")
    client.force_login(user)
    return client


def test_consent_toggles_are_audited_with_who_and_when(api, admin_api, member_api, other_api, tenant):
    InstanceFactory(tenant=tenant, instance_id="agent-1", state="running")
    assert api.get("instances/agent-1/consent").json() == {"instance_id": "agent-1", "debug_access": False, "changed_at": None, "changed_by": ""}
    assert member_api.get("instances/agent-1/consent").status_code == 200  # everyone may see it
    assert_error(member_api.patch("instances/agent-1/consent", {"debug_access": True}), 403, contains="owner or admin")

    granted = admin_api.patch("instances/agent-1/consent", {"debug_access": True}).json()
    assert granted["debug_access"] is True and granted["changed_by"] == admin_api.token[:12] and granted["changed_at"].endswith("Z")
    assert api.patch("instances/agent-1/consent", {"debug_access": True}).status_code == 200  # no change: no new row
    revoked = api.patch("instances/agent-1/consent", {"debug_access": False}).json()
    assert revoked["debug_access"] is False and revoked["changed_at"]

    events = list(ActivityEvent.objects.filter(object_id="agent-1", action__startswith="instance.consent").order_by("id"))
    assert [(e.action, e.actor_type, e.data) for e in events] == [
        ("instance.consent.grant", "token", {"debug_access": True}),
        ("instance.consent.revoke", "token", {"debug_access": False}),
    ]
    assert events[0].actor_label != events[1].actor_label  # the admin's token, then the owner's
    assert "instance.consent.grant" in [e["action"] for e in api.get("activity").json()["results"]]

    assert_error(api.patch("instances/agent-1/consent", {"debug_access": "yes"}), 422)
    for call in (lambda: other_api.get("instances/agent-1/consent"), lambda: other_api.patch("instances/agent-1/consent", {"debug_access": True})):
        assert_error(call(), 404)


@pytest.mark.slow
def test_conversations_are_403_while_consent_is_off_and_readable_when_on(api, admin_api, member_api, other_api, live, staff):
    live("agent-2")
    cid = api.post("instances/agent-2/chat", {"message": "hello, keep this", "user": "u1"}).json()["conversation_id"]

    for path in ("instances/agent-2/conversations", f"instances/agent-2/conversations/{cid}"):
        assert_error(api.get(path), 403, contains="debug consent is off")
        assert_error(member_api.get(path), 403, contains="owner or admin")
        assert_error(other_api.get(path), 404)
    api.patch("instances/agent-2/consent", {"debug_access": False})  # set (to off) once: the admin lists it
    row = InstanceRuntime.objects.get(instance__instance_id="agent-2")
    assert staff.get(f"/admin/runtime/instanceruntime/{row.pk}/conversations/").status_code == 302  # back, with the reason
    assert not ActivityEvent.objects.filter(action="instance.conversations.staff_read").exists()  # refused reads are not reads

    api.patch("instances/agent-2/consent", {"debug_access": True})
    listed = admin_api.get("instances/agent-2/conversations", limit=5).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == cid and listed["results"][0]["preview"] == "hello, keep this"
    one = api.get(f"instances/agent-2/conversations/{cid}").json()
    assert [m["role"] for m in one["messages"]] == ["user", "assistant"] and one["messages"][0]["content"] == "hello, keep this"
    assert_error(api.get("instances/agent-2/conversations/nope"), 404)
    assert_error(api.get("instances/agent-2/conversations", limit=101), 422)
    assert_error(member_api.get("instances/agent-2/conversations"), 403, contains="owner or admin")
    assert not ActivityEvent.objects.filter(action="instance.conversations.staff_read").exists()  # the tenant's own reads

    # Support staff read it in the admin: each read audited, and the tenant sees who and when.
    assert staff.get("/admin/runtime/instanceruntime/").status_code == 200
    page = staff.get(f"/admin/runtime/instanceruntime/{row.pk}/conversations/")
    assert page.status_code == 200 and cid.encode() in page.content
    detail = staff.get(f"/admin/runtime/instanceruntime/{row.pk}/conversations/{cid}/")
    assert detail.status_code == 200 and b"hello, keep this" in detail.content
    reads = ActivityEvent.objects.filter(action="instance.conversations.staff_read", object_id="agent-2").order_by("id")
    assert [(e.actor_type, e.actor_label, e.data) for e in reads] == [
        ("staff", "ops@orchestrio.example", {"list": True}), ("staff", "ops@orchestrio.example", {"conversation_id": cid}),
    ]  # fmt: skip
    activity = [e for e in api.get("activity").json()["results"] if e["action"] == "instance.conversations.staff_read"]
    assert len(activity) == 2
    owner = api.client
    owner.force_login(api.user)
    trail = owner.get("/instances/agent-2/chat")  # the Chat tab's audit trail
    assert trail.status_code == 200 and b"ops@orchestrio.example (support staff)" in trail.content
    assert f"?conversation={cid}".encode() in trail.content  # and the conversations, for owners and admins
    read = owner.get(f"/instances/agent-2/chat?conversation={cid}").content
    assert b'<div class="chat-message chat-user">hello, keep this</div>' in read
    from django.test import Client

    as_member = Client()
    as_member.force_login(member_api.user)
    assert b"hello, keep this" not in as_member.get(f"/instances/agent-2/chat?conversation={cid}").content  # members never

    api.patch("instances/agent-2/consent", {"debug_access": False})
    assert staff.get(f"/admin/runtime/instanceruntime/{row.pk}/conversations/").status_code == 302
    assert b'data-testid="conversations"' not in owner.get(f"/instances/agent-2/chat?conversation={cid}").content
    assert reads.count() == 2

