"""The live fragments of the Tasks tab and the task page (static/console/live.js polls them):
the same partials the pages include, tenant-scoped like the pages, constant queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks.models import Task

from ..factories import InstanceFactory, MembershipFactory, TenantFactory, UserFactory


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _task(instance, n: int, **fields) -> Task:
    fields.setdefault("status", "queued")
    return Task.objects.create(
        task_id=f"tsk_live{instance.pk}x{n}", instance=instance, tenant=instance.tenant, operation_code="backup",
        script_path="/opt/orchestrio/scripts/backup.sh", requested_by="test", requested_by_type="user", **fields,
    )  # fmt: skip


def test_the_task_page_polls_until_the_task_finishes(console, running):
    task = _task(running, 1, status="running")
    page = console.get(f"/tasks/{task.task_id}").content.decode()
    assert f'data-live="/tasks/{task.task_id}/live"' in page and "data-live-done" not in page
    fragment = console.get(f"/tasks/{task.task_id}/live").content.decode()
    assert 'data-testid="task-status">running<' in fragment and "<html" not in fragment

    Task.objects.filter(pk=task.pk).update(status="succeeded", exit_code=0, stdout="backed up\n")
    fragment = console.get(f"/tasks/{task.task_id}/live").content.decode()
    assert 'data-testid="task-status">succeeded<' in fragment and "backed up" in fragment
    assert "data-live-done" in fragment  # final: live.js stops polling


def test_the_tasks_tab_fragment_follows_the_tasks(console, running):
    page = console.get("/instances/web-01/tasks").content.decode()
    assert 'data-live="/instances/web-01/tasks/live"' in page
    assert "No tasks yet" in console.get("/instances/web-01/tasks/live").content.decode()
    task = _task(running, 1)
    fragment = console.get("/instances/web-01/tasks/live").content.decode()
    assert task.task_id in fragment and "Run a script" not in fragment


def test_another_tenants_tasks_are_404(console, running):
    theirs = InstanceFactory(tenant=TenantFactory(id="other-corp"), instance_id="theirs-1", state="running")
    task = _task(theirs, 1)
    assert console.get(f"/tasks/{task.task_id}/live").status_code == 404
    assert console.get("/instances/theirs-1/tasks/live").status_code == 404
    stranger = UserFactory(username="stranger@example.com")
    MembershipFactory(user=stranger, tenant=TenantFactory(id="stranger-co"), role="owner")
    console.force_login(stranger)
    assert console.get("/instances/web-01/tasks/live").status_code == 404


def test_the_tasks_tab_fragment_costs_the_same_queries_for_2_and_20_tasks(console, running):
    def measured() -> int:
        console.get("/instances/web-01/tasks/live")
        with CaptureQueriesContext(connection) as captured:
            assert console.get("/instances/web-01/tasks/live").status_code == 200
        return len(captured)

    for n in range(2):
        _task(running, n, status="succeeded")
    few = measured()
    for n in range(2, 20):
        _task(running, n, status="succeeded")
    assert measured() == few
