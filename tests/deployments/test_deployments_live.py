"""The live fragments of the deployments list and a deployment's page (static/console/live.js
polls them): the partials the pages include, tenant-scoped like the pages, constant queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments.models import Deployment
from instances.models import Blueprint, InstancePlan, Region

from ..factories import TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _deployment(tenant, name: str, **fields) -> Deployment:
    return Deployment.objects.create(
        tenant=tenant, name=name, environment="staging", blueprint=Blueprint.objects.get(name="OpenClaw", tenant=None),
        region=Region.objects.first(), plan=InstancePlan.objects.first(), created_by="test", **fields,
    )  # fmt: skip


def _queries(client, url: str) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_deployment_page_and_its_fragment(console, tenant):
    deployment = _deployment(tenant, "web")
    page = console.get(f"/deployments/{deployment.pk}").content.decode()
    assert f'data-live="/deployments/{deployment.pk}/live"' in page
    fragment = console.get(f"/deployments/{deployment.pk}/live").content.decode()
    for part in ("header", "steps", "revisions", "log"):
        assert f'data-live-part="{part}"' in fragment
    assert 'data-testid="deployment-status">provisioning<' in fragment and "<html" not in fragment
    Deployment.objects.filter(pk=deployment.pk).update(status="failed", error="the instance did not become healthy")
    fragment = console.get(f"/deployments/{deployment.pk}/live").content.decode()
    assert 'data-testid="deployment-status">failed<' in fragment and "did not become healthy" in fragment


def test_the_list_fragment_follows_the_deployments(console, tenant):
    assert 'data-live="/deployments/live"' in console.get("/deployments/").content.decode()
    assert "No deployments yet" in console.get("/deployments/live").content.decode()
    _deployment(tenant, "web")
    fragment = console.get("/deployments/live").content.decode()
    assert "<strong>web</strong>" in fragment and "New deployment" not in fragment


def test_another_tenants_deployment_is_404(console, tenant):
    theirs = _deployment(TenantFactory(id="other-corp"), "theirs")
    assert console.get(f"/deployments/{theirs.pk}/live").status_code == 404
    assert console.get("/deployments/dep_missing/live").status_code == 404
    assert "theirs" not in console.get("/deployments/live").content.decode()


def test_the_list_fragment_costs_the_same_queries_for_2_and_20_deployments(console, tenant):
    for n in range(2):
        _deployment(tenant, f"d{n}")
    few = _queries(console, "/deployments/live")
    for n in range(2, 20):
        _deployment(tenant, f"d{n}")
    assert _queries(console, "/deployments/live") == few
