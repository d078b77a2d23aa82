from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from instances.models import Instance, Operation
from orchestrio.models import ActivityEvent

from ..helpers import run_jobs

PASSWORD = "correct horse battery staple"


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def test_list_and_filters(console, make_instance):
    make_instance(instance_id="shown-1", state="running", labels={"env": "prod"})
    make_instance(instance_id="shown-2", state="stopped")
    page = console.get("/instances/")
    assert b"shown-1" in page.content and b"shown-2" in page.content
    filtered = console.get("/instances/?state=stopped")
    assert b"shown-2" in filtered.content and b"shown-1" not in filtered.content
    assert b"shown-1" in console.get("/instances/?label=env:prod").content
    assert b"label filters look like" in console.get("/instances/?label=nope").content


def test_create_form(console):
    page = console.get("/instances/new")
    assert b"OpenClaw" in page.content and b"openclaw-basic" in page.content
    response = console.post("/instances/new", {"instance_id": "from-form", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "labels": "env=dev\nteam = core"})
    assert response.status_code == 302 and response["Location"] == "/instances/from-form"
    instance = Instance.objects.get(instance_id="from-form")
    assert instance.labels == {"env": "dev", "team": "core"}
    assert ActivityEvent.objects.get(action="instance.create").actor_type == "user"


def test_create_form_errors(console, make_instance):
    make_instance(instance_id="taken-1")
    response = console.post("/instances/new", {"instance_id": "taken-1", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local"})
    assert response.status_code == 200 and b"is taken" in response.content
    response = console.post("/instances/new", {"instance_id": "x", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local"})
    assert b"3\xe2\x80\x9363" in response.content  # the slug message


def test_detail_and_actions(console, make_instance):
    make_instance(instance_id="acted-1", state="running")
    assert console.get("/instances/acted-1").status_code == 200
    console.post("/instances/acted-1/stop")
    assert Operation.objects.get().kind == "stop"
    page = console.post("/instances/acted-1/start", follow=True)
    assert b"cannot start acted-1" in page.content or b"operation is queued" in page.content
    assert console.get("/instances/missing-1").status_code == 404


def test_destroy_needs_the_typed_id(console, make_instance):
    make_instance(instance_id="doomed-1", state="stopped")
    assert console.post("/instances/doomed-1/destroy", {"confirm": "wrong"}).status_code == 400
    assert Instance.objects.get(instance_id="doomed-1").state == "stopped"
    assert console.post("/instances/doomed-1/destroy", {"confirm": "doomed-1"}).status_code == 302
    assert Instance.objects.get(instance_id="doomed-1").state == "destroying"


def test_config_editor_replaces_the_config(console, make_instance):
    make_instance(instance_id="cfg-ed", state="stopped", config={"old": 1, "keep": 2})
    console.post("/instances/cfg-ed/config", {"config": '{"keep": 3, "new": true}'})
    assert Instance.objects.get(instance_id="cfg-ed").config == {"keep": 3, "new": True}
    page = console.post("/instances/cfg-ed/config", {"config": "{not json"}, follow=True)
    assert b"not valid JSON" in page.content


def test_other_tenants_instance_is_404_in_the_console(console, other_api):
    from ..factories import InstanceFactory

    InstanceFactory(tenant=other_api.tenant, instance_id="theirs-1")
    for path in ("/instances/theirs-1", "/instances/theirs-1/destroy"):
        assert console.get(path).status_code == 404
    assert console.post("/instances/theirs-1/stop").status_code == 404


@pytest.fixture
def staff(client, db):
    user = get_user_model().objects.create_superuser("ops@orchestrio.example", "ops@orchestrio.example", "staff-password-1")
    client.force_login(user)
    return client


def test_admin_instance_pages(staff, make_instance):
    instance = make_instance(instance_id="adm-1", state="running")
    for url in ("/admin/instances/instance/", "/admin/instances/instance/?state=running&provider=local", "/admin/instances/instance/?q=adm",
                f"/admin/instances/instance/{instance.pk}/change/", "/admin/instances/operation/", "/admin/instances/blueprint/"):
        assert staff.get(url).status_code == 200, url


def test_admin_force_destroy_and_retry_are_audited_staff_actions(staff, api, make_instance):
    instance = make_instance(instance_id="adm-2", state="running")
    api.post("instances/adm-2/stop")
    staff.post("/admin/instances/instance/", {"action": "force_destroy", "_selected_action": [instance.pk]})
    stop, destroy = Operation.objects.filter(instance=instance).order_by("id")
    assert stop.status == "failed" and stop.error_code == "superseded"
    assert destroy.kind == "destroy" and destroy.requested_by == "ops@orchestrio.example"
    event = ActivityEvent.objects.get(action="instance.destroy")
    assert event.actor_type == "staff" and event.data["forced"] is True

    # Fail the destroy, then retry it from the admin.
    from instances import services

    services.operation_fail(operation=destroy, code="provider_error", message="simulated")
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):  # the admin's request commits and enqueues
        staff.post("/admin/instances/instance/", {"action": "retry_failed_operation", "_selected_action": [instance.pk]})
    retry = Operation.objects.filter(instance=instance).order_by("id").last()
    assert retry.kind == "destroy" and retry.status == "queued"
    assert ActivityEvent.objects.get(action="instance.destroy.retry").actor_type == "staff"
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "destroyed"


def test_admin_health_check_action(staff, make_instance):
    instance = make_instance(instance_id="adm-3", state="running", ip_address="127.0.0.1", port=1)
    response = staff.post("/admin/instances/instance/", {"action": "run_health_check", "_selected_action": [instance.pk]}, follow=True)
    assert b"unhealthy" in response.content
    event = ActivityEvent.objects.get(action="instance.health_check")
    assert event.actor_type == "staff" and event.data == {"healthy": False}
