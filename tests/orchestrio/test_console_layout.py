"""The console's layout rules that need no browser (issue 16, item 8): the sidebar marks one
current page (Billing and Alerts were both highlighted, each by its own prefix of
/billing/alerts), every table scrolls in its own box, checkboxes are rendered beside their label.
The browser side is tests/browser/test_layout_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

from django import forms
from django.template.loader import render_to_string

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


TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_every_table_sits_in_a_scrolling_box():
    """A wide table scrolls inside its .table-wrap (console.css), never the page at 390 px."""
    unwrapped = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text()
        for match in re.finditer(r"<table\b", text):
            if not text[: match.start()].rstrip().endswith('<div class="table-wrap">'):
                unwrapped.append(f"{template.relative_to(TEMPLATES)}:{text.count(chr(10), 0, match.start()) + 1}")
    assert not unwrapped, f"wrap these tables in <div class=\"table-wrap\">: {unwrapped}"


def test_a_checkbox_is_rendered_on_its_labels_line():
    class Form(forms.Form):
        url = forms.CharField(label="Webhook URL")
        enabled = forms.BooleanField(required=False, help_text="Send alerts")

    html = render_to_string("console/_form.html", {"form": Form()})
    assert re.search(r'<div class="check"><input type="checkbox" name="enabled"[^>]*><label for="id_enabled">Enabled</label></div>', html), html
    assert '<label for="id_url">Webhook URL</label>' in html and 'class="field field-check"' in html
    # The help text is the one the box's aria-describedby names.
    assert 'aria-describedby="id_enabled_helptext"' in html and '<small class="muted" id="id_enabled_helptext">Send alerts</small>' in html
