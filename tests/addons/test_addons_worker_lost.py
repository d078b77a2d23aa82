"""A worker killed half-way through an add-on's operation: the reconciler finds its lease expired
(or its queued job gone) and runs the operation again — every step is idempotent — and after
OPERATION_MAX_ATTEMPTS fails it as `worker_lost`. A real redis-server on the local engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from addons import engines
from addons.models import AddOn, AddOnOperation
from addons.services import addons_reconcile
from instances.models import LogLine

from ..helpers import run_jobs

pytestmark = [pytest.mark.slow, pytest.mark.skipif(engines.redis_server() is None, reason="needs redis-server (apt-get install redis-server)")]


def _killed_after_begin(addon_id: str) -> AddOnOperation:
    """As if a worker took the job, marked it running, and died (no lease held any more)."""
    op = AddOnOperation.objects.get(addon__addon_id=addon_id)
    AddOnOperation.objects.filter(pk=op.pk).update(status="running", attempts=op.attempts + 1, started_at=timezone.now() - timedelta(minutes=5))
    return AddOnOperation.objects.get(pk=op.pk)


def test_an_operation_whose_worker_died_is_run_again(api, running):
    created = api.post("instances/web-01/addons", {"engine": "redis"}).json()
    op = _killed_after_begin(created["addon_id"])
    summary: dict = {}
    addons_reconcile(summary)
    assert summary["addon_operations_requeued"] == 1
    op.refresh_from_db()
    assert op.status == "queued" and op.rq_job_id != f"addon-op-{op.pk}-1"
    assert LogLine.objects.filter(message__contains="queued again: its worker stopped").exists()
    run_jobs()
    op.refresh_from_db()
    assert op.status == "succeeded" and op.attempts == 2
    addon = api.get(f"addons/{created['addon_id']}").json()
    assert addon["status"] == "available"
    assert redis.Redis.from_url(created["connection_url"]).ping()
    # A live run is left alone: nothing to do on the next pass.
    summary = {}
    addons_reconcile(summary)
    assert "addon_operations_requeued" not in summary and "addon_operations_lost" not in summary
    assert api.delete(f"addons/{created['addon_id']}?confirm={created['addon_id']}").status_code == 202
    run_jobs()


def test_a_queued_job_that_redis_lost_is_queued_again_and_a_hopeless_one_fails(api, running, settings):
    created = api.post("instances/web-01/addons", {"engine": "redis"}).json()
    op = AddOnOperation.objects.get(addon__addon_id=created["addon_id"])
    # Queued long ago under a job id RQ does not have (Redis restarted).
    AddOnOperation.objects.filter(pk=op.pk).update(created_at=timezone.now() - timedelta(minutes=5), rq_job_id="addon-op-gone")
    summary: dict = {}
    addons_reconcile(summary)
    assert summary["addon_operations_requeued"] == 1
    assert AddOnOperation.objects.get(pk=op.pk).rq_job_id.startswith(f"addon-op-{op.pk}-")

    # Its worker dies every time: after OPERATION_MAX_ATTEMPTS it is given up, and said why.
    AddOnOperation.objects.filter(pk=op.pk).update(status="running", attempts=settings.OPERATION_MAX_ATTEMPTS, started_at=timezone.now() - timedelta(minutes=5))
    summary = {}
    addons_reconcile(summary)
    assert summary["addon_operations_lost"] == 1
    op.refresh_from_db()
    assert op.status == "failed" and op.error_message.startswith("worker_lost: its worker stopped while running it")
    assert AddOn.objects.get(pk=op.addon_id).status == "error"
