"""The instance's Add-ons tab (issue 19, item 5): create, status, reveal with a confirmation
(owners and admins; members see none), destroy with the id typed, back up now, the backups'
download/restore/delete, the automatic backups' toggle, errors in a person's words."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from addons import engines
from addons.models import AddOn, AddOnBackup, AddOnOperation
from orchestrio.models import ActivityEvent, SubscriptionPlan, Tenant

from ..factories import MembershipFactory, UserFactory
from ..helpers import CommitClient

pytestmark = pytest.mark.skipif(engines.postgres_bin() is None, reason="needs the host's PostgreSQL binaries (apt-get install postgresql)")


@pytest.fixture
def console(owner):
    client = CommitClient()
    client.force_login(owner)
    return client


def _url(name, *args):
    return reverse(f"instances:{name}", args=["web-01", *args])


def _messages(response) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def _available(addon_id):
    AddOn.objects.filter(addon_id=addon_id).update(status="available")
    AddOnOperation.objects.update(status="succeeded")


def test_create_reveal_and_destroy(console, running, tenant):
    page = console.get(_url("addons"))
    assert page.status_code == 200 and b'data-testid="no-addons"' in page.content and b"Add-ons" in page.content
    created = console.post(_url("addons"), {"engine": "postgres", "plan": "hobby"}, follow=True)
    addon = AddOn.objects.get()
    assert f"Creating PostgreSQL add-on {addon.addon_id}" in _messages(created)
    assert b'data-status="provisioning"' in console.get(_url("addons-live")).content
    _available(addon.addon_id)
    live = console.get(_url("addons-live")).content.decode()
    assert 'data-status="available"' in live and "DATABASE_URL" in live and "Reveal URL" in live
    assert "postgres://" not in created.content.decode() and "postgres://" not in live  # the URL is never on the tab itself

    # Reveal: a confirmation first (nothing shown, nothing audited), then the URL, not cached.
    ask = console.get(_url("addon-reveal", addon.addon_id))
    assert ask.status_code == 200 and b"postgres://" not in ask.content and not ActivityEvent.objects.filter(action="addon.reveal").exists()
    shown = console.post(_url("addon-reveal", addon.addon_id))
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    assert b'data-testid="connection-url">postgres://app:' in shown.content
    assert ActivityEvent.objects.filter(action="addon.reveal", object_id=addon.addon_id).count() == 1

    # Destroy: the id typed, or nothing happens.
    wrong = console.post(_url("addon-destroy", addon.addon_id), {"confirm": "yes"})
    assert wrong.status_code == 400 and AddOn.objects.get().status == "available"
    done = console.post(_url("addon-destroy", addon.addon_id), {"confirm": addon.addon_id}, follow=True)
    assert "and its data" in _messages(done) and AddOn.objects.get().status == "deleting"


def test_a_member_sees_no_reveal_and_no_restore(running, tenant):
    from addons.services import addon_create
    from orchestrio.tenancy import Actor

    addon, _ = addon_create(instance=running, actor=Actor.system("test"), engine="postgres")
    _available(addon.addon_id)
    AddOnBackup.objects.create(backup_id="bak_member000000000000001", addon=addon, tenant=tenant, status="available", storage="local", location="x", stored=True, requested_by="t")
    user = UserFactory(username="member@acme.example")
    MembershipFactory(user=user, tenant=tenant, role="member")
    client = CommitClient()
    client.force_login(user)
    live = client.get(_url("addons-live")).content.decode()
    assert "Back up now" in live and "Reveal URL" not in live and "Restore" not in live and "Download" not in live and ">Destroy<" not in live
    assert client.get(_url("addon-reveal", addon.addon_id)).status_code == 403
    refused = client.post(_url("addon-action", addon.addon_id, "restore"), {"backup_id": "bak_member000000000000001"})
    assert refused.status_code == 403 and b"needs the owner or admin role" in refused.content


def test_backups_from_the_tab(console, running, tenant):
    console.post(_url("addons"), {"engine": "postgres", "plan": "hobby"})
    addon = AddOn.objects.get()
    _available(addon.addon_id)
    backed = console.post(_url("addon-action", addon.addon_id, "backup"), follow=True)
    backup = AddOnBackup.objects.get()
    assert f"Backing up {addon.addon_id} ({backup.backup_id})" in _messages(backed)
    # A second one while the first runs: said in words, nothing queued.
    again = console.post(_url("addon-action", addon.addon_id, "backup"), follow=True)
    assert "one runs at a time" in _messages(again) and AddOnBackup.objects.count() == 1
    AddOnOperation.objects.update(status="succeeded")
    AddOn.objects.update(status="available")  # as the job ends it
    AddOnBackup.objects.update(status="available", stored=True, sha256="0" * 64, size_bytes=10)
    live = console.get(_url("addons-live")).content.decode()
    assert backup.backup_id in live and "Download" in live and "Restore" in live and 'class="table-wrap"' in live

    # Download: a redirect to the signed URL (the local store).
    download = console.post(_url("addon-action", addon.addon_id, "download"), {"backup_id": backup.backup_id})
    assert download.status_code == 302 and urlsplit(download["Location"]).path.startswith("/addons/backups/download/")
    # The toggle, and the plan's limits in a person's words.
    on = console.post(_url("addon-action", addon.addon_id, "auto-backup"), {"enabled": "on"}, follow=True)
    assert "automatic backups are on" in _messages(on) and AddOn.objects.get().auto_backup_since is not None
    Tenant.objects.update(plan=SubscriptionPlan.objects.get(pk="starter"))
    refused = console.post(_url("addon-action", addon.addon_id, "backup"), follow=True)
    assert "does not include add-on backups" in _messages(refused)
    assert "your plan has no backups" in console.get(_url("addons-live")).content.decode()
    deleted = console.post(_url("addon-action", addon.addon_id, "delete-backup"), {"backup_id": backup.backup_id}, follow=True)
    assert f"Backup {backup.backup_id} deleted" in _messages(deleted) and AddOnBackup.objects.get().status == "deleted"


def test_the_admin_lists_and_searches_addons_and_backups_with_no_secret(client, running, tenant):
    from django.contrib.auth import get_user_model

    from addons.services import addon_connection_url, addon_create
    from orchestrio.tenancy import Actor

    addon, url = addon_create(instance=running, actor=Actor.system("test"), engine="postgres")
    backup = AddOnBackup.objects.create(backup_id="bak_admin0000000000000001", addon=addon, tenant=tenant, status="available", storage="local", location="acme/x.pgdump", stored=True, sha256="b" * 64, requested_by="t")
    staff = get_user_model().objects.create_superuser("ops@orchestrio.example", "ops@orchestrio.example", "staff-password-1")
    client.force_login(staff)
    password = url.split(":")[2].split("@")[0]
    for path in (
        f"/admin/addons/addon/?q={addon.addon_id}", f"/admin/addons/addon/{addon.pk}/change/",
        f"/admin/addons/addonbackup/?q={addon.addon_id}", f"/admin/addons/addonbackup/{backup.pk}/change/",
    ):  # fmt: skip
        page = client.get(path)
        assert page.status_code == 200, path
        assert password not in page.content.decode() and addon.password_encrypted not in page.content.decode()
    assert backup.backup_id in client.get(f"/admin/addons/addonbackup/?q={addon.addon_id}").content.decode()
    assert client.get(f"/admin/addons/addonbackup/{backup.pk}/delete/").status_code == 403
    assert addon_connection_url(addon=addon) == url
