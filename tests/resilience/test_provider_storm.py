"""A storm of AWS errors (moto behind a fault-injecting botocore): throttling, 5xx answers, and
launches whose answer is lost after AWS performed them. Every operation ends either done or
failed with a typed error a user can act on; no instance is left in a transitional state; and
retrying the failures afterwards gives each instance exactly one machine (no duplicates from the
lost answers, no orphans)."""

from __future__ import annotations

import random
from urllib.parse import parse_qs

import pytest
from botocore.endpoint import Endpoint

from instances.models import Instance, Operation
from instances.reconciler import reconcile_all

from ..helpers import run_jobs
from ..instances.aws_fixtures import aws, error_answer, machines  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow]

TYPED = {"provider_throttled", "provider_error"}


@pytest.fixture
def storm(monkeypatch):
    """Faults below botocore's retry handler, where a real endpoint's errors arrive, so botocore
    retries them as it would AWS's. RunInstances is idempotent on its ClientToken as on AWS (moto
    does not de-duplicate): a retry after a lost answer gets the first launch back."""
    rng = random.Random(20261122)
    real = Endpoint._do_get_response
    weather = {"on": True, "throttled": 0, "failed": 0, "lost": 0}
    launches: dict[str, tuple] = {}

    def stormy(self, request, operation_model, context):
        name = operation_model.name
        token = None
        if name == "RunInstances":
            body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
            token = (parse_qs(body).get("ClientToken") or [None])[0]
            if token in launches:
                return launches[token]
        if weather["on"] and operation_model.service_model.service_name == "ec2":
            roll = rng.random()
            if roll < 0.35:
                weather["throttled"] += 1
                return error_answer("RequestLimitExceeded", message="storm")
            if roll < 0.45 and name == "RunInstances":
                launches[token] = real(self, request, operation_model, context)  # AWS launched it; the answer never arrived
                weather["lost"] += 1
                return error_answer("InternalError", status=500, message="lost answer")
            if roll < 0.42:
                weather["failed"] += 1
                return error_answer("Unavailable", status=503, message="storm")
        answer = real(self, request, operation_model, context)
        if token:
            launches[token] = answer
        return answer

    monkeypatch.setattr(Endpoint, "_do_get_response", stormy)
    return weather


def _machines_by_instance(ec2) -> dict[str, list[str]]:
    owned: dict[str, list[str]] = {}
    for raw in machines(ec2, "pending", "running", "stopping", "stopped"):
        tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
        owned.setdefault(tags["orchestrio:instance_id"], []).append(raw["InstanceId"])
    return owned


def test_throttling_storm_ends_in_typed_failures_and_retries_leave_one_machine_each(api, aws, storm, settings):  # noqa: F811
    settings.AWS_MAX_ATTEMPTS = 3
    ids = [f"storm-{n:02d}" for n in range(10)]  # the pro plan's instance limit
    for instance_id in ids:
        assert api.post("instances", {"instance_id": instance_id, "blueprint_name": "OnAws", "region": "iad"}).status_code == 201
    run_jobs()

    assert storm["throttled"] and storm["lost"] and storm["failed"]  # the storm really happened
    instances = {i.instance_id: i for i in Instance.objects.filter(instance_id__in=ids)}
    assert {i.state for i in instances.values()} <= {"running", "error"}
    assert not Operation.objects.filter(status__in=("queued", "running")).exists()
    failed = [i for i in instances.values() if i.state == "error"]
    assert failed and len(failed) < len(ids)  # some made it through retries, some did not
    for instance in failed:
        op = Operation.objects.filter(instance=instance).latest("pk")
        assert op.status == "failed" and op.error_code in TYPED, (op.error_code, op.error_message)
        assert "AWS" in op.error_message and "Traceback" not in op.error_message
        body = api.get(f"instances/{instance.instance_id}").json()
        assert body["state"] == "error" and body["error_message"] == op.error_message

    # The weather clears; each failure is retried (start retries an instance in error).
    storm["on"] = False
    for instance in failed:
        assert api.post(f"instances/{instance.instance_id}/start").status_code == 202
    run_jobs()
    states = {r["instance_id"]: r["state"] for r in api.get("instances", limit=50).json()["results"]}
    errors = {i: Operation.objects.filter(instance__instance_id=i).latest("pk").error_message for i, st in states.items() if st != "running"}
    assert states == {instance_id: "running" for instance_id in ids}, errors
    owned = _machines_by_instance(aws.ec2)
    assert {instance_id: len(owned.get(instance_id, [])) for instance_id in ids} == {instance_id: 1 for instance_id in ids}
    for instance in Instance.objects.filter(instance_id__in=ids):
        assert owned[instance.instance_id] == [instance.provider_instance_id]
    summary = reconcile_all()
    assert summary["orphans"] == [] and summary["machines_lost"] == 0
