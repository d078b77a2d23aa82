"""The reconciler on the local provider: lost jobs, wedged operations, vanished machines, orphans.
(The AWS provider's machine checks are in tests/instances/test_aws_*.)"""

from __future__ import annotations

from datetime import timedelta

import django_rq
from django.utils import timezone

from instances.jobs import reconcile
from instances.models import Instance, LogLine, Operation
from instances.providers.local import LocalProvider
from orchestrio.models import ActivityEvent

from ..helpers import call_job, run_jobs


def _age(model_qs, **fields):
    model_qs.update(**{name: timezone.now() - delta for name, delta in fields.items()})


def test_queued_operation_whose_job_is_gone_is_enqueued_again(api, running):
    api.post("instances/web-01/stop")
    django_rq.get_queue("default").empty()  # Redis lost the job
    op = Operation.objects.get()
    _age(Operation.objects.filter(pk=op.pk), created_at=timedelta(minutes=1))
    assert call_job(reconcile)["requeued"] == 1
    assert django_rq.get_queue("default").count == 1
    op.refresh_from_db()
    assert op.status == "queued" and op.rq_job_id.endswith("-1") is False
    assert ActivityEvent.objects.filter(action="instance.operation_requeued").count() == 1


def test_fresh_queued_operations_are_left_alone(api, running):
    api.post("instances/web-01/stop")
    django_rq.get_queue("default").empty()
    assert call_job(reconcile)["requeued"] == 0


def test_running_operation_without_a_lease_is_retried_then_given_up(api, running, settings):
    settings.OPERATION_MAX_ATTEMPTS = 2
    api.post("instances/web-01/stop")
    django_rq.get_queue("default").empty()
    op = Operation.objects.get()
    Operation.objects.filter(pk=op.pk).update(status="running", attempts=1, started_at=timezone.now() - timedelta(minutes=1))
    assert call_job(reconcile)["requeued"] == 1
    Operation.objects.filter(pk=op.pk).update(status="running", attempts=2, started_at=timezone.now() - timedelta(minutes=1))
    django_rq.get_queue("default").empty()
    assert call_job(reconcile)["worker_lost"] == 1
    op.refresh_from_db()
    assert op.status == "failed" and op.error_code == "worker_lost"
    instance = Instance.objects.get(instance_id="web-01")
    assert instance.state == "error" and "gave up after 2 attempts" in instance.error_message


def test_wedged_operation_is_failed(api, running, settings):
    settings.OPERATION_WEDGED_SECONDS = 300
    api.post("instances/web-01/stop")
    op = Operation.objects.get()
    _age(Operation.objects.filter(pk=op.pk), created_at=timedelta(minutes=6))
    _age(Instance.objects.filter(pk=running.pk), state_changed_at=timedelta(minutes=6))
    summary = call_job(reconcile)
    assert summary["wedged"] == 1
    op.refresh_from_db()
    assert op.status == "failed" and op.error_code == "timeout" and "wedged" in op.error_message
    running.refresh_from_db()
    assert running.state == "error"
    assert LogLine.objects.filter(instance=running, level="error", message__contains="wedged").exists()
    event = ActivityEvent.objects.get(action="instance.operation_failed")
    assert event.actor_label == "reconciler"
    # A late job cannot overwrite the reconciler's verdict.
    from instances.services import operation_succeed

    assert operation_succeed(operation=op, to_state="stopped", message="late") is False


def test_vanished_machine_is_marked(running):
    # web-01 is "running" but the local provider has no machine for it.
    assert call_job(reconcile)["machines_lost"] == 1
    running.refresh_from_db()
    assert running.state == "error" and "vanished" in running.error_message
    assert ActivityEvent.objects.filter(action="instance.machine_lost", object_id="web-01").exists()
    assert call_job(reconcile)["machines_lost"] == 0  # once


def test_orphans_are_reported_and_terminated_only_when_configured(api, live, settings):
    live("orphan-1")
    instance = Instance.objects.get(instance_id="orphan-1")
    directory = instance.provider_data["dir"]
    # The database forgets the instance (as if a destroy was recorded but the machine stayed).
    Instance.objects.filter(pk=instance.pk).update(state="destroyed", destroyed_at=timezone.now())

    settings.RECONCILER_TERMINATE_ORPHANS = False
    summary = call_job(reconcile)
    assert [o["instance_id"] for o in summary["orphans"]] == ["orphan-1"]
    assert summary["orphans_terminated"] == 0
    assert any(m.state == "running" for m in LocalProvider().list_machines(""))
    event = ActivityEvent.objects.get(action="reconciler.orphan")
    assert event.data["action"] == "reported" and event.tenant_id == "acme-corp"

    settings.RECONCILER_TERMINATE_ORPHANS = True
    summary = call_job(reconcile)
    assert summary["orphans_terminated"] == 1
    assert LocalProvider().list_machines("") == []
    import os

    assert not os.path.exists(directory)


def test_reconciler_runs_one_at_a_time():
    from orchestrio.queue import singleton

    with singleton("reconciler", ttl=30):
        assert call_job(reconcile) == {"skipped": "another reconciler is running"}


def test_requeued_operation_finishes(api, live):
    live("again-1")
    api.post("instances/again-1/stop")
    django_rq.get_queue("default").empty()
    _age(Operation.objects.filter(kind="stop"), created_at=timedelta(minutes=1))
    call_job(reconcile)
    run_jobs()
    assert api.get("instances/again-1").json()["state"] == "stopped"
