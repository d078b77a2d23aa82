"""Objects named on console pages are links while they exist in the tenant, plain text once
gone: the instance page ↔ its deployment, a task's instance, a scoped token's instance, the
object an alert is about. Another tenant's object is never linked."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import AlertDelivery
from deployments.models import Deployment
from instances.models import Blueprint, InstancePlan, Region
from tasks.models import Task

from ..factories import ApiTokenFactory, InstanceFactory, TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _deployment(tenant, name, instance, **fields):
    return Deployment.objects.create(
        tenant=tenant, name=name, environment="staging", blueprint=Blueprint.objects.get(name="OpenClaw", tenant=None),
        region=Region.objects.first(), plan=InstancePlan.objects.first(), created_by="test", instance=instance, **fields,
    )  # fmt: skip


def _destroy(instance):
    instance.state, instance.destroyed_at = "destroyed", timezone.now()
    instance.save(update_fields=["state", "destroyed_at"])


def test_the_instance_page_links_its_deployment_and_back(console, tenant):
    instance = InstanceFactory(tenant=tenant, instance_id="web-1")
    deployment = _deployment(tenant, "site", instance)
    page = console.get("/instances/web-1").content.decode()
    assert 'data-testid="related-link"' in page and f'href="/deployments/{deployment.pk}">site (staging)</a>' in page
    back = console.get(f"/deployments/{deployment.pk}").content.decode()
    assert 'href="/instances/web-1"' in back
    # Not on each live update: the live parts do not carry it.
    assert "related-link" not in console.get("/instances/web-1/live").content.decode()
    # Both link their own audit log, filtered.
    assert 'href="/activity?instance=web-1"' in page
    assert f'href="/activity?object_type=deployment&amp;object_id={deployment.pk}"' in back


def test_an_instance_without_a_live_deployment_shows_none(console, tenant):
    instance = InstanceFactory(tenant=tenant, instance_id="web-1")
    InstanceFactory(tenant=tenant, instance_id="plain-1")
    _deployment(tenant, "gone", instance, deleted_at=timezone.now())
    assert "related-link" not in console.get("/instances/web-1").content.decode()
    assert "related-link" not in console.get("/instances/plain-1").content.decode()


def test_a_deployments_destroyed_instance_is_plain_text(console, tenant):
    instance = InstanceFactory(tenant=tenant, instance_id="web-1")
    deployment = _deployment(tenant, "site", instance)
    _destroy(instance)
    page = console.get(f"/deployments/{deployment.pk}").content.decode()
    assert "web-1" in page and 'href="/instances/web-1"' not in page
    assert 'href="/instances/web-1"' not in console.get("/deployments/").content.decode()


def test_the_instance_page_costs_the_same_queries_with_a_deployment(console, tenant):
    InstanceFactory(tenant=tenant, instance_id="plain-1")
    _deployment(tenant, "site", InstanceFactory(tenant=tenant, instance_id="web-1"))

    def count(url):
        console.get(url)
        with CaptureQueriesContext(connection) as captured:
            assert console.get(url).status_code == 200
        return len(captured)

    assert count("/instances/web-1") == count("/instances/plain-1")


def test_a_tasks_instance_is_a_link_until_destroyed(console, tenant):
    instance = InstanceFactory(tenant=tenant, instance_id="web-1")
    Task.objects.create(task_id="tsk_1", instance=instance, tenant=tenant, operation_code="x", script_path="/x", requested_by="t", requested_by_type="user")
    page = console.get("/tasks/tsk_1").content.decode()
    assert 'href="/instances/web-1"' in page and 'href="/instances/web-1/tasks"' in page
    _destroy(instance)
    page = console.get("/tasks/tsk_1").content.decode()
    assert "web-1" in page and "(destroyed)" in page and 'href="/instances/web-1' not in page


def test_a_scoped_tokens_instance_is_linked_while_live(console, tenant, owner):
    InstanceFactory(tenant=tenant, instance_id="web-1")
    InstanceFactory(tenant=TenantFactory(id="other-corp"), instance_id="theirs-1")
    ApiTokenFactory(tenant=tenant, created_by=owner, instance_id="web-1")
    ApiTokenFactory(tenant=tenant, created_by=owner, instance_id="theirs-1")  # a name that is not ours
    ApiTokenFactory(tenant=tenant, created_by=owner, instance_id="gone-1")
    page = console.get("/tokens").content.decode()
    assert 'href="/instances/web-1"' in page
    assert "theirs-1" in page and 'href="/instances/theirs-1"' not in page
    assert "gone-1" in page and 'href="/instances/gone-1"' not in page


def test_an_alert_links_what_it_is_about(console, tenant):
    instance = InstanceFactory(tenant=tenant, instance_id="web-1")
    Task.objects.create(task_id="tsk_1", instance=instance, tenant=tenant, operation_code="x", script_path="/x", requested_by="t", requested_by_type="user")
    InstanceFactory(tenant=TenantFactory(id="other-corp"), instance_id="theirs-1")
    for n, data in enumerate([{"instance_id": "web-1", "task_id": "tsk_1"}, {"instance_id": "theirs-1"}, {"instance_id": "gone-1"}, {}]):
        AlertDelivery.objects.create(id=f"alr_{n}", tenant=tenant, event="task.failed", payload={"data": data}, url="https://hooks.example/x")
    for url in ("/billing/alerts", "/billing/alerts/live"):
        page = console.get(url).content.decode()
        assert 'href="/instances/web-1"' in page and 'href="/tasks/tsk_1"' in page
        assert "theirs-1" in page and 'href="/instances/theirs-1"' not in page
        assert "gone-1" in page and 'href="/instances/gone-1"' not in page


def test_a_member_links_their_activity(console, owner):
    page = console.get("/team").content.decode()
    assert f'href="/activity?actor={owner.username.replace("@", "%40")}"' in page
