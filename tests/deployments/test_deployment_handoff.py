"""Issue 14, finding 10: a deployment never holds a worker while its instance comes up.

The provision step used to poll the instance's state for up to DEPLOY_PROVISION_TIMEOUT_SECONDS
(900 s) in place. Now the job records that the revision waits for its instance (and until when)
and returns; the instances app's `instance_running` hook enqueues the job again once the instance
runs, and the reconciler resumes one whose enqueue was lost, or fails it at its deadline.
"""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from instances import hooks
from instances.jobs import readiness_sweep, reconcile
from deployments.models import Deployment
from instances.models import Blueprint, Operation

from ..helpers import call_job, run_jobs

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_blueprint(tenant, settings):
    """Instances of it answer their health path only once the test says so."""
    settings.INSTANCE_READY_TIMEOUT_SECONDS = 60
    settings.JOB_INLINE_WAIT_SECONDS = 0.3
    return Blueprint.objects.create(tenant=tenant, name="Slow", health_path="/later")


def _become_ready(blueprint) -> dict:
    blueprint.health_path = "/health"  # what a slow product does: it starts answering
    blueprint.save(update_fields=["health_path"])
    return call_job(readiness_sweep)


def _waiting(api, slow_blueprint) -> dict:
    response = api.post("deployments", {"name": "slowpoke", "blueprint_name": "Slow", "config": {"timeout": 30}, "secrets": {"k": "v"}})
    assert response.status_code == 201, response.content
    body = response.json()
    # One worker, in order: the create (handed to the readiness sweep), then the deployment's job,
    # which finds its instance still provisioning and returns at once.
    assert run_jobs() == 2
    assert django_rq.get_queue("default").count == 0
    record = api.get(f"deployments/{body['id']}").json()
    assert record["status"] == "provisioning" and api.get(f"instances/{body['instance_id']}").json()["state"] == "provisioning"
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["provision"]["status"] == "running" and "waiting for instance" in steps["provision"]["message"]
    assert Deployment.objects.get(pk=body["id"]).instance_deadline is not None
    return body


def test_a_deployment_waits_for_its_instance_without_a_worker_and_resumes_when_it_runs(api, slow_blueprint):
    body = _waiting(api, slow_blueprint)
    assert _become_ready(slow_blueprint)["ready"] == 1
    # The instance is running: the hook enqueued the deployment's job again (nothing polled).
    assert django_rq.get_queue("default").count == 1
    run_jobs()
    done = api.get(f"deployments/{body['id']}").json()
    assert done["status"] == "active" and done["revision"] == 1
    assert [(s["name"], s["status"]) for s in done["steps"]] == [("provision", "succeeded"), ("configure", "succeeded"), ("health_check", "succeeded"), ("done", "succeeded")]
    assert Deployment.objects.get(pk=body["id"]).instance_deadline is None
    logs = [line["message"] for line in api.get(f"deployments/{body['id']}/logs").json()["results"]]
    assert any("is running; resuming revision 1" in line for line in logs)


def test_a_lost_enqueue_is_recovered_by_the_reconciler(api, slow_blueprint):
    body = _waiting(api, slow_blueprint)
    _become_ready(slow_blueprint)
    django_rq.get_queue("default").empty()  # Redis lost the job the hook enqueued
    Deployment.objects.filter(pk=body["id"]).update(updated_at=timezone.now() - timedelta(minutes=1))
    assert call_job(reconcile)["deployments_requeued"] == 1
    run_jobs()
    assert api.get(f"deployments/{body['id']}").json()["status"] == "active"


def test_a_missed_hook_is_recovered_by_the_reconciler(api, slow_blueprint, monkeypatch):
    body = _waiting(api, slow_blueprint)
    monkeypatch.setattr(hooks, "_instance_running", [])  # no listener heard the instance come up
    _become_ready(slow_blueprint)
    assert django_rq.get_queue("default").count == 0
    assert call_job(reconcile)["deployments_requeued"] == 1
    run_jobs()
    assert api.get(f"deployments/{body['id']}").json()["status"] == "active"


def test_the_reconciler_leaves_a_waiting_deployment_alone_until_its_deadline(api, slow_blueprint, settings):
    body = _waiting(api, slow_blueprint)
    Deployment.objects.filter(pk=body["id"]).update(updated_at=timezone.now() - timedelta(minutes=1))
    assert call_job(reconcile)["deployments_requeued"] == 0  # no worker holds it, by design
    assert django_rq.get_queue("default").count == 0
    Deployment.objects.filter(pk=body["id"]).update(instance_deadline=timezone.now() - timedelta(seconds=1))
    call_job(reconcile)
    record = api.get(f"deployments/{body['id']}").json()
    assert record["status"] == "failed"
    assert f"was still provisioning after {settings.DEPLOY_PROVISION_TIMEOUT_SECONDS}s" in record["error"]
    assert {s["name"]: s["status"] for s in record["steps"]} == {"provision": "failed", "configure": "skipped", "health_check": "skipped", "done": "skipped"}
    assert Deployment.objects.get(pk=body["id"]).instance_deadline is None


def test_an_instance_that_fails_while_waited_for_fails_the_revision(api, slow_blueprint):
    body = _waiting(api, slow_blueprint)
    Operation.objects.filter(instance__instance_id=body["instance_id"]).update(ready_deadline=timezone.now() - timedelta(seconds=1))
    assert call_job(readiness_sweep)["failed"] == 1
    assert api.get(f"instances/{body['instance_id']}").json()["state"] == "error"
    call_job(reconcile)
    record = api.get(f"deployments/{body['id']}").json()
    assert record["status"] == "failed" and f"instance {body['instance_id']} is error" in record["error"]
    assert "/later" in record["error"]  # the instance's own reason
