"""`GET /api/v1/deployments/{id}/stats` over a known history (issue 18, item 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import Deployment, DeploymentRevision, DeploymentStep
from instances.models import Blueprint


@pytest.fixture
def history(tenant):
    deployment = Deployment.objects.create(
        tenant=tenant, name="known", blueprint=Blueprint.objects.get(name="OpenClaw", tenant=None), region_id="local",
        plan_id="openclaw-basic", created_by="owner@example.com", status="active", current_revision=20,
    )  # fmt: skip
    start = timezone.now() - timedelta(days=1)
    # 20 revisions: configure takes 1 s, 2 s, … 20 s; revisions 5 and 9 failed at health_check.
    for n in range(1, 21):
        failed = n in (5, 9)
        reason = {1: "created", 6: "automatic rollback to revision 4: …", 12: "rollback to revision 3 by owner@example.com"}.get(n, "updated by x")
        created = start + timedelta(minutes=n)
        revision = DeploymentRevision.objects.create(
            deployment=deployment, number=n, reason=reason, created_by="x", created_at=created,
            status="failed" if failed else "applied", applied_at=None if failed else created + timedelta(seconds=n + 10),
        )  # fmt: skip
        for position, name in enumerate(DeploymentStep.STEPS):
            seconds = n if name == "configure" else 1
            status = "failed" if failed and name == "health_check" else "skipped" if failed and name == "done" else "succeeded"
            ends = None if status == "skipped" else created + timedelta(seconds=seconds)
            DeploymentStep.objects.create(
                deployment=deployment, revision=revision, name=name, position=position, status=status,
                started_at=None if status == "skipped" else created, finished_at=ends,
            )  # fmt: skip
    return deployment


def test_stats_over_a_known_history(api, history, django_assert_max_num_queries):
    with django_assert_max_num_queries(5):
        response = api.get(f"deployments/{history.pk}/stats")
    stats = response.json()
    assert (stats["revisions"], stats["succeeded"], stats["failed"], stats["in_progress"]) == (20, 18, 2, 0)
    assert stats["success_rate"] == 0.9
    assert stats["rollbacks"] == {"manual": 1, "automatic": 1}
    configure = next(s for s in stats["steps"] if s["name"] == "configure")
    assert configure["count"] == 20 and configure["avg_seconds"] == 10.5 and configure["p95_seconds"] == 19.0  # nearest rank
    health = next(s for s in stats["steps"] if s["name"] == "health_check")
    assert (health["succeeded"], health["failed"]) == (18, 2)
    done = next(s for s in stats["steps"] if s["name"] == "done")
    assert (done["skipped"], done["count"]) == (2, 18)
    applied = [n + 10 for n in range(1, 21) if n not in (5, 9)]
    assert stats["duration"]["count"] == 18 and stats["duration"]["avg_seconds"] == round(sum(applied) / 18, 3)
    assert stats["last_deploy"]["revision"] == 20 and stats["last_deploy"]["duration_seconds"] == 30.0


def test_a_new_deployment_has_no_rates_yet(api, tenant):
    deployment = Deployment.objects.create(
        tenant=tenant, name="fresh", blueprint=Blueprint.objects.get(name="OpenClaw", tenant=None), region_id="local",
        plan_id="openclaw-basic", created_by="owner@example.com",
    )  # fmt: skip
    stats = api.get(f"deployments/{deployment.pk}/stats").json()
    assert stats["success_rate"] is None and stats["last_deploy"] is None and stats["duration"]["avg_seconds"] is None


def test_another_tenants_deployment_is_404(other_api, history):
    assert other_api.get(f"deployments/{history.pk}/stats").status_code == 404
