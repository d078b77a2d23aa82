from __future__ import annotations

import pytest

from tasks.models import Task


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def test_tasks_tab_dispatches_and_shows_errors(console, running):
    page = console.get("/instances/web-01/tasks")
    assert page.status_code == 200 and b"Run a script" in page.content
    response = console.post("/instances/web-01/tasks", {"operation_code": "backup", "script_path": "/opt/orchestrio/scripts/backup.sh", "script_args": '{"a": 1}', "timeout_seconds": 60})
    task = Task.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/tasks/{task.task_id}"
    assert task.script_args == {"a": 1}
    busy = console.post("/instances/web-01/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/backup.sh", "script_args": "{}", "timeout_seconds": 60})
    assert b"one runs at a time" in busy.content
    bad = console.post("/instances/web-01/tasks", {"operation_code": "x", "script_path": "../etc", "script_args": "[1]", "timeout_seconds": 60})
    assert b"must be a JSON object" in bad.content


def _field_errors(response, name: str) -> str:
    """The errors the console form shows on one field, checked to be in the page too."""
    from html import unescape

    errors = response.context["form"].errors.get(name, [])
    page = unescape(response.content.decode())
    for error in errors:
        assert f'<small class="error">{error}</small>' in page
    return " ".join(errors)


def test_the_task_form_shows_every_error_in_one_submit(console, running):
    """The form's own checks (JSON, the number) and the service's rules (operation code, path,
    argument names) come back together, each on its field, in a person's words."""
    bad = console.post("/instances/web-01/tasks", {"operation_code": "has spaces", "script_path": "etc/passwd", "script_args": '{"a": ', "timeout_seconds": "0"})
    assert bad.status_code == 200 and not Task.objects.exists()
    assert "operation code is 1–64 letters" in _field_errors(bad, "operation_code")
    assert "must be absolute: start it with /" in _field_errors(bad, "script_path")
    assert "this is not valid JSON: expecting value at line 1, column 6" in _field_errors(bad, "script_args")
    assert "timeout must be from 1 to 3600 seconds" in _field_errors(bad, "timeout_seconds")
    # Once the JSON parses, its argument names are checked in the same pass as the path's folder.
    bad = console.post("/instances/web-01/tasks", {"operation_code": "ok", "script_path": "/etc/passwd", "script_args": '{"bad key": 1}', "timeout_seconds": "soon"})
    assert "under one of this blueprint's task folders" in _field_errors(bad, "script_path")
    assert "argument name 'bad key' must start with a letter" in _field_errors(bad, "script_args")
    assert "whole number of seconds" in _field_errors(bad, "timeout_seconds")
    for leak in (b"script_path must", b"operation_code is", b"JSON parse error", b"char "):
        assert leak not in bad.content


def test_task_detail_and_cancel(console, running, api):
    task = api.post("instances/web-01/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/backup.sh"}).json()
    page = console.get(f"/tasks/{task['task_id']}")
    assert page.status_code == 200 and task["task_id"].encode() in page.content
    console.post(f"/tasks/{task['task_id']}/cancel")
    assert Task.objects.get().status == "cancelled"
    assert console.get("/tasks/tsk_missing").status_code == 404


def test_admin_task_pages_and_cancel(client, running, api):
    from django.contrib.auth import get_user_model

    from orchestrio.models import ActivityEvent

    staff = get_user_model().objects.create_superuser("s@orchestrio.example", "s@orchestrio.example", "pw-staff-123")
    client.force_login(staff)
    task = api.post("instances/web-01/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/backup.sh", "script_args": {"token": "s3cr3t-value"}}).json()
    row = Task.objects.get()
    assert client.get("/admin/tasks/task/?status=queued&q=web-01").status_code == 200
    detail = client.get(f"/admin/tasks/task/{row.pk}/change/")
    assert detail.status_code == 200 and b"s3cr3t-value" not in detail.content and b"token" in detail.content
    client.post("/admin/tasks/task/", {"action": "cancel_tasks", "_selected_action": [row.pk]})
    assert Task.objects.get().status == "cancelled"
    assert ActivityEvent.objects.get(action="task.cancel", object_id=task["task_id"]).actor_type == "staff"
