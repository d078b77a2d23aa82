"""The console's sidebar marks one current page (issue 16, item 8: Billing and Alerts were both
highlighted, each by its own prefix of /billing/alerts)."""

from __future__ import annotations

import re

import pytest

from orchestrio.context_processors import _nav

from ..factories import InstanceFactory

SIDEBAR = re.compile(r'<nav class="sidebar"[^>]*>(.*?)</nav>', re.S)
CURRENT = re.compile(r'<a href="[^"]*" class="active" aria-current="(page|true)">([^<]*)</a>')


def _active(path: str, section: str | None = None) -> list[str]:
    return [item["label"] for item in _nav(path, None, section) if item["active"]]


def test_the_page_itself_is_page_below_it_the_current_section():
    assert [item["current"] for item in _nav("/billing/alerts", None) if item["active"]] == ["page"]
    assert [item["current"] for item in _nav("/instances/web-01", None) if item["active"]] == ["true"]


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/", "Overview"),
        ("/billing/", "Billing"),
        ("/billing/alerts", "Alerts"),
        ("/billing/alerts/test", "Alerts"),
        ("/billing/checkout/pro", "Billing"),
        ("/instances/", "Instances"),
        ("/instances/web-01/tasks", "Instances"),
        ("/tokens/3/revoke", "API tokens"),
        ("/account/password", "Account"),
    ],
)
def test_one_item_is_current_the_longest_address_that_covers_the_path(path, label):
    assert _active(path) == [label]


def test_a_prefix_counts_only_at_a_segment_boundary():
    assert _active("/teams") == []
    assert _active("/activityfeed") == []
    assert _active("/somewhere/else") == []


def test_a_declared_section_wins_over_the_address():
    assert _active("/tasks/tsk_1", "instances:list") == ["Instances"]
    assert _active("/billing/alerts", "billing:overview") == ["Billing"]
    assert _active("/tasks/tsk_1", "no:such-section") == []  # an unknown section: the address decides


@pytest.mark.django_db
def test_the_pages_render_one_current_item(client, tenant, owner):
    from tasks.models import Task

    client.force_login(owner)
    instance = InstanceFactory(tenant=tenant, instance_id="web-01")
    task = Task.objects.create(task_id="tsk_nav1", instance=instance, tenant=tenant, operation_code="backup", script_path="/opt/orchestrio/scripts/backup.sh", requested_by="t", requested_by_type="user")
    for url, label in (("/billing/alerts", "Alerts"), ("/billing/", "Billing"), (f"/tasks/{task.task_id}", "Instances"), ("/instances/web-01/tasks", "Instances")):
        response = client.get(url)
        assert response.status_code == 200, url
        (sidebar,) = SIDEBAR.findall(response.content.decode())
        assert [m[1] for m in CURRENT.findall(sidebar)] == [label], url
        assert sidebar.count("aria-current") == 1, url
