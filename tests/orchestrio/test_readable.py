"""Readable state (issue 16 item 7): every main console page shows states as badges (an icon
class as well as a colour, the state as text) and times as <time> with the exact time on hover,
never a raw ISO timestamp; the JSON editors keep their textarea fallback and its validation."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.template import Context, Template
from django.utils import timezone

from billing.models import AlertAttempt, AlertDelivery
from deployments.models import Deployment, DeploymentLogLine, DeploymentRevision, DeploymentStep
from domains.models import CustomDomain
from gateway.models import GatewayPolicy
from instances.models import Blueprint, Instance, InstancePlan, LogLine, Operation, Region
from orchestrio.models import ActivityEvent
from orchestrio.templatetags.readable import relative, status_tone
from tasks.models import Task

from ..factories import ApiTokenFactory, InstanceFactory

pytestmark = pytest.mark.django_db

ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _visible_text(html: str) -> str:
    """What a reader sees: no tags (so no attributes: `datetime`, `title`), no JSON data blocks."""
    html = re.sub(r"<script\b.*?</script>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.fixture
def world(tenant, owner):
    """One of each object whose state and times the console shows."""
    a_while_ago = timezone.now() - timedelta(hours=3)
    instance = InstanceFactory(instance_id="read-01", tenant=tenant, state="running", health_status="healthy", last_health_check=a_while_ago, config={"greeting": "hi"})
    operation = Operation.objects.create(instance=instance, tenant=tenant, kind="start", status="succeeded", requested_by="test", requested_by_type="user", finished_at=a_while_ago)
    LogLine.objects.create(instance=instance, operation=operation, seq=1, stage="start", message="started")
    task = Task.objects.create(
        task_id="tsk_read01", instance=instance, tenant=tenant, operation_code="backup", script_path="/opt/orchestrio/scripts/backup.sh",
        requested_by="test", requested_by_type="user", status="succeeded", started_at=a_while_ago, finished_at=a_while_ago,
    )  # fmt: skip
    GatewayPolicy.objects.create(instance=instance, tenant=tenant, slug="deploy", provider="github-oidc", audience="orchestrio", allow=[{"repository": "acme/app", "ref": ["main", "release"]}])
    CustomDomain.objects.create(instance=instance, tenant=tenant, domain="app.acme.example", verification_token="tok123", last_checked_at=a_while_ago, next_check_at=timezone.now() + timedelta(minutes=5))
    deployment = Deployment.objects.create(
        tenant=tenant, name="web", environment="staging", blueprint=Blueprint.objects.get(name="OpenClaw", tenant=None),
        region=Region.objects.first(), plan=InstancePlan.objects.first(), created_by="test", instance=instance,
    )  # fmt: skip
    revision = DeploymentRevision.objects.create(deployment=deployment, number=1, reason="first", created_by="test", status="applied")
    DeploymentStep.objects.create(deployment=deployment, revision=revision, name="provision", position=1, status="succeeded", finished_at=a_while_ago)
    DeploymentLogLine.objects.create(deployment=deployment, seq=1, message="provisioned")
    delivery = AlertDelivery.objects.create(id="alr_read1", tenant=tenant, event="instance.failed", payload={}, url="https://hooks.example/x")
    AlertAttempt.objects.create(delivery=delivery, number=1, response_code=500)
    ApiTokenFactory(tenant=tenant, created_by=owner, last_used_at=a_while_ago)
    ActivityEvent.objects.create(tenant=tenant, actor_type="user", actor_label="owner", action="instance.start", object_type="instance", object_id="read-01")
    return {"instance": instance, "task": task, "deployment": deployment}


PAGES = [  # (path, shows a state, shows a time)
    ("/", False, True),
    ("/instances/", True, True),
    ("/instances/read-01", True, True),
    ("/instances/read-01/tasks", True, True),
    ("/instances/read-01/gateway", True, False),
    ("/instances/read-01/domain", True, True),
    ("/tasks/tsk_read01", True, True),
    ("/deployments/", True, True),
    ("/deployments/{deployment}", True, True),
    ("/billing/", False, False),
    ("/billing/alerts", True, True),
    ("/tokens", True, True),
    ("/team", False, True),
    ("/activity", False, True),
]


@pytest.mark.parametrize(("path", "has_state", "has_time"), PAGES)
def test_pages_show_badges_and_times_never_raw_iso(console, world, path, has_state, has_time):
    response = console.get(path.format(deployment=world["deployment"].pk))
    assert response.status_code == 200, path
    html = response.content.decode()
    assert not ISO_TIMESTAMP.search(_visible_text(html)), (path, ISO_TIMESTAMP.findall(_visible_text(html))[:3])
    if has_state:
        assert re.search(r'<span class="status status-(good|busy|bad|idle)[^"]*" data-status="[a-z_]+"', html), path
    if has_time:
        times = re.findall(r'<time datetime="(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)" title="(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC)"(?: data-relative)?[^>]*>([^<]+)</time>', html)
        assert times, path
        for iso, exact, text in times:
            assert exact == iso.replace("T", " ").replace("Z", " UTC") and text  # the hover is the same moment


def test_the_status_tag_marks_tone_and_keeps_the_hooks():
    html = Template('{% load readable %}{% status state kind="instance" css="state" field="state" testid="state" %}').render(Context({"state": "running"}))
    assert html == '<span class="status status-good state" data-status="running" data-field="state" data-testid="state">running</span>'
    assert status_tone("running", "instance") == "good" and status_tone("running", "operation") == "busy" and status_tone("running", "task") == "busy"
    assert status_tone("failed") == "bad" and status_tone("stopped") == "idle" and status_tone("pending_dns") == "busy" and status_tone("something-new") == "idle"
    assert ">timed out<" in Template("{% load readable %}{% status 'timed_out' %}").render(Context())
    assert Template("{% load readable %}{% status s %}").render(Context({"s": "<b>"})).endswith("&lt;b&gt;</span>")  # escaped


def test_the_time_tag_is_relative_with_the_exact_time_on_hover():
    moment = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=dt_timezone.utc)
    html = Template("{% load readable %}{% when t %}|{% when none %}|{% when none default='never' %}").render(Context({"t": moment, "none": None}))
    first, second, third = html.split("|")
    assert first.startswith('<time datetime="2026-03-04T05:06:07Z" title="2026-03-04 05:06:07 UTC" data-relative>')
    assert second == "—" and third == "never"
    clock = Template("{% load readable %}{% when t clock=True %}").render(Context({"t": moment}))
    assert clock == '<time datetime="2026-03-04T05:06:07Z" title="2026-03-04 05:06:07 UTC">05:06:07</time>'  # log lines
    now = datetime(2026, 3, 4, 12, 0, tzinfo=dt_timezone.utc)
    cases = [(timedelta(seconds=10), "just now"), (timedelta(minutes=3), "3 min ago"), (timedelta(minutes=59, seconds=50), "1 h ago"), (timedelta(hours=5), "5 h ago"), (timedelta(days=3), "3 d ago"), (-timedelta(minutes=2), "in 2 min")]
    for ago, words in cases:
        assert relative(now - ago, now) == words
    assert relative(now - timedelta(days=90), now) == (now - timedelta(days=90)).strftime("%Y-%m-%d")


def test_allow_rules_read_as_claim_equals_values(console, world):
    html = console.get("/instances/read-01/gateway").content.decode()
    rules = html.split('data-testid="allow-rules">')[1].split("</ul>")[0]
    assert "<code>repository</code> = <code>acme/app</code>" in rules
    assert "<code>ref</code> = <code>main</code> or <code>release</code>" in rules and '<span class="muted">and</span>' in rules


def test_dns_records_are_copyable_wrapping_text(console, world):
    html = console.get("/instances/read-01/domain").content.decode()
    assert re.search(r'<code class="record-value" id="rec-2" data-testid="record-value">[^<]*tok123[^<]*</code><button type="button" class="small" data-copy-text="#rec-2"', html)


def test_the_config_editor_falls_back_to_its_textarea_and_validates_as_before(console, world):
    page = console.get("/instances/read-01").content.decode()
    textarea = re.search(r'<textarea name="config"[^>]*>(.*?)</textarea>', page, re.S)
    assert textarea and 'data-editor="object"' in textarea.group(0)
    assert json.loads(textarea.group(1).replace("&quot;", '"')) == {"greeting": "hi"}
    # What the rows write (JSON.stringify(value, null, 2)) is what a JSON-typing person sends.
    console.post("/instances/read-01/config", {"config": json.dumps({"greeting": "hello", "debug": True}, indent=2)})
    assert Instance.objects.get(instance_id="read-01").config == {"greeting": "hello", "debug": True}
    page = console.post("/instances/read-01/config", {"config": "[1, 2]"}, follow=True).content.decode()
    assert "the config must be a JSON object" in page
    assert Instance.objects.get(instance_id="read-01").config == {"greeting": "hello", "debug": True}


def test_the_allow_rules_editor_falls_back_to_its_textarea_and_validates_as_before(console, world):
    page = console.get("/instances/read-01/gateway").content.decode()
    assert re.search(r'<textarea name="allow"[^>]*data-editor="rules"', page) and re.search(r'<textarea name="config"[^>]*data-editor="object"', page)
    body = {"provider": "github-oidc", "slug": "rows", "audience": "orchestrio", "config": "{}", "enabled": "on"}
    response = console.post("/instances/read-01/gateway", {**body, "allow": json.dumps([{"repository": ["acme/app", "acme/web"], "ref": "main"}], indent=2)})
    assert response.status_code == 302
    assert GatewayPolicy.objects.get(slug="rows").allow == [{"repository": ["acme/app", "acme/web"], "ref": "main"}]
    response = console.post("/instances/read-01/gateway", {**body, "slug": "bad", "allow": '{"repository": "acme/app"}'})
    assert response.status_code == 200 and response.context["form"].errors["allow"] == ["allow must be a JSON list"]
    assert not GatewayPolicy.objects.filter(slug="bad").exists()
