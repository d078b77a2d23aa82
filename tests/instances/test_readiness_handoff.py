"""Issue 14, finding 10: one slow tenant never stalls everyone's jobs.

A create whose instance never answers its health path used to hold the worker for
INSTANCE_READY_TIMEOUT_SECONDS (120 s), with every other tenant's work queued behind it. Now the
job waits a few seconds in place (JOB_INLINE_WAIT_SECONDS), then hands the wait to the readiness
sweep (a periodic job that probes every waiting instance at once) and frees its worker.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from instances.jobs import readiness_sweep
from instances.models import Blueprint, Operation

from ..helpers import call_job, run_jobs

pytestmark = pytest.mark.slow


@pytest.fixture
def patient(settings):
    settings.INSTANCE_READY_TIMEOUT_SECONDS = 60
    settings.JOB_INLINE_WAIT_SECONDS = 0.5


def test_a_sick_instance_does_not_hold_the_worker_from_another_tenant(api, other_api, tenant, patient):
    Blueprint.objects.create(tenant=tenant, name="Sick", health_path="/never-answers")  # the agent answers 401 there
    assert api.post("instances", {"instance_id": "sick-a", "blueprint_name": "Sick"}).status_code == 201
    assert other_api.post("instances", {"instance_id": "fine-b"}).status_code == 201
    # One worker works the queue in order: the sick create first, then the other tenant's.
    assert run_jobs() == 2
    assert other_api.get("instances/fine-b").json()["state"] == "running"
    sick = api.get("instances/sick-a").json()
    assert sick["state"] == "provisioning" and sick["operation"]["status"] == "running"
    waiting = Operation.objects.get(instance__instance_id="sick-a")
    assert waiting.ready_deadline is not None
    assert "waiting for /never-answers" in api.get("instances/sick-a/logs").json()["results"][-1]["message"]

    # The sweep keeps it waiting until its deadline, then fails it with the usual reason.
    assert call_job(readiness_sweep) == {"ready": 0, "failed": 0, "waiting": 1}
    Operation.objects.filter(pk=waiting.pk).update(ready_deadline=timezone.now() - timedelta(seconds=1))
    assert call_job(readiness_sweep) == {"ready": 0, "failed": 1, "waiting": 0}
    op = api.get("instances/sick-a/operations").json()["results"][0]
    assert op["status"] == "failed" and op["error_code"] == "health_check_failed" and "/never-answers" in op["error_message"]
    assert api.get("instances/sick-a").json()["state"] == "error"


def test_the_sweep_finishes_an_instance_that_becomes_ready(api, tenant, patient):
    blueprint = Blueprint.objects.create(tenant=tenant, name="Slow", health_path="/later")
    api.post("instances", {"instance_id": "slow-1", "blueprint_name": "Slow"})
    run_jobs()
    assert api.get("instances/slow-1").json()["state"] == "provisioning"
    blueprint.health_path = "/health"  # what a slow product does: it starts answering
    blueprint.save(update_fields=["health_path"])
    assert call_job(readiness_sweep) == {"ready": 1, "failed": 0, "waiting": 0}
    record = api.get("instances/slow-1").json()
    assert record["state"] == "running" and record["health_status"] == "healthy" and record["operation"] is None
    assert call_job(readiness_sweep) == {"ready": 0, "failed": 0, "waiting": 0}


def test_the_reconciler_leaves_a_waiting_operation_to_the_sweep(api, tenant, patient, settings):
    from instances.jobs import reconcile

    Blueprint.objects.create(tenant=tenant, name="Sick", health_path="/never-answers")
    api.post("instances", {"instance_id": "sick-r", "blueprint_name": "Sick"})
    run_jobs()
    Operation.objects.filter(instance__instance_id="sick-r").update(started_at=timezone.now() - timedelta(minutes=1))
    summary = call_job(reconcile)  # no lease is held while it waits, and that is not a dead worker
    assert summary["requeued"] == 0 and summary["worker_lost"] == 0
    assert Operation.objects.get(instance__instance_id="sick-r").status == "running"


def test_a_deadline_at_or_under_the_inline_wait_fails_in_the_job(api, tenant, settings):
    settings.INSTANCE_READY_TIMEOUT_SECONDS = 1
    settings.JOB_INLINE_WAIT_SECONDS = 5
    Blueprint.objects.create(tenant=tenant, name="Sick", health_path="/never-answers")
    api.post("instances", {"instance_id": "quick-fail", "blueprint_name": "Sick"})
    run_jobs()
    op = Operation.objects.get(instance__instance_id="quick-fail")
    assert op.status == "failed" and op.error_code == "health_check_failed" and op.ready_deadline is None
