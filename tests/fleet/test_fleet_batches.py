"""One EC2 Fleet / Spot Fleet call for a whole fleet request (issue 18, item 7; docs/fleet.md "One
fleet call per batch"), against moto's mock_aws. moto always has capacity, so a short answer is
made by asking moto for fewer machines than the request did and adding AWS's errors to its
answer; real agents run locally (on 127.0.0.x, one per machine) where a test needs the
machines' agents to answer."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fleet import services as fleet_services
from fleet.jobs import launch_batch
from fleet.models import FleetBatch, FleetRequestItem
from instances.jobs import run_operation
from instances.models import Instance, LogLine, Operation
from instances.providers.aws import AwsProvider
from orchestrio import crypto

from ..helpers import call_job, run_jobs
from ..instances.aws_fixtures import aws, machines  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("aws")

AGENT = Path(__file__).resolve().parents[2] / "instances" / "agent.py"
KEY = "X-Orchestrio-Agent-Key"


def _blueprint(api, aws, name, provider_api, **fields):
    body = {
        "name": name, "provider_api": provider_api, "image_id": aws.image, "subnet_ids": [aws.subnet],
        "security_group_ids": [aws.group], "tags": {"team": "core"}, "machine_types": {"t3.micro": 1, "t3.small": 1}, **fields,
    }  # fmt: skip
    response = api.post("blueprints", body)
    assert response.status_code == 201, response.content


def _spy(aws, monkeypatch) -> dict:
    """Every AWS call the provider makes, by method."""
    sent: dict = {}
    real = aws.provider.call

    def spy(service, region, method, **kwargs):
        sent.setdefault(method, []).append(kwargs)
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", spy)
    return sent


def _request(api, count, blueprint="Fleet", prefix="bt"):
    response = api.post("requests", {"blueprint_name": blueprint, "count": count, "region": "iad", "instance_id_prefix": prefix})
    assert response.status_code == 202, response.content
    call = response.json()["fleet_call"]
    assert call["status"] == "launching" and call["launched"] == 0 and call["provider_api"] in ("EC2Fleet", "SpotFleet")
    return response.json()["request_id"]


def _tags(raw) -> dict:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def _batch_machines(aws, request_id, *states):
    filters = [{"Name": "tag:orchestrio:fleet_request", "Values": [request_id]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    return [i for r in aws.ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def _free_port(hosts) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on every agent address")


@pytest.fixture
def agents(tmp_path, monkeypatch):
    """`agents.start(key_hash, machine_ids)`: one real agent per machine, on 127.0.0.<20+n> and one
    port, as a batch machine's user data starts it (its tenant, no instance, the bootstrap hash);
    the provider reports each machine at its agent's address."""
    procs, where = [], {}
    real_machine = AwsProvider._machine

    def located(raw, spec=None):
        machine = real_machine(raw, spec)
        if machine.provider_instance_id in where:
            machine.ip_address, machine.port = where[machine.provider_instance_id], Agents.port
        return machine

    monkeypatch.setattr(AwsProvider, "_machine", staticmethod(located))

    class Agents:
        port = 0

        def start(self, key_hash: str, machine_ids: list[str], tenant_id: str) -> dict:
            hosts = [f"127.0.0.{20 + n}" for n in range(len(machine_ids))]
            Agents.port = _free_port(hosts)
            for host, machine_id in zip(hosts, machine_ids):
                state = tmp_path / machine_id
                env = {"ORCHESTRIO_AGENT_KEY_SHA256": key_hash, "PATH": "/usr/bin:/bin"}
                argv = [sys.executable, "-I", str(AGENT), "--state-dir", str(state), "--host", host, "--port", str(self.port), "--tenant-id", tenant_id]
                procs.append(subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL))
                where[machine_id] = host
            for host in hosts:
                for _ in range(200):
                    try:
                        httpx.get(f"http://{host}:{self.port}/health", timeout=1)
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
            return dict(where)

    yield Agents()
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


def test_a_request_of_n_is_one_create_fleet_of_n_whose_machines_become_its_instances(api, aws, monkeypatch, settings, agents, tenant):
    settings.INSTANCE_READY_CHECK = True  # the agents answer: each create waits for its agent
    _blueprint(api, aws, "Fleet", "EC2Fleet", allocation_strategy="lowest-price", on_demand_percentage=50)
    sent = _spy(aws, monkeypatch)
    request_id = _request(api, 3)
    batch = FleetBatch.objects.get(request__request_id=request_id)
    ops = list(Operation.objects.filter(instance__instance_id__startswith="bt-").order_by("instance__instance_id"))
    assert [op.status for op in ops] == ["queued"] * 3 and {op.rq_job_id for op in ops} == {batch.rq_job_id}  # held by the batch

    assert run_jobs(max_jobs=1) == 1  # the batch's job, alone: the creates wait for it
    (fleet,) = sent["create_fleet"]
    assert fleet["Type"] == "instant" and fleet["ClientToken"] == f"orchestrio-{request_id}"
    assert fleet["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 3, "OnDemandTargetCapacity": 2, "SpotTargetCapacity": 1, "DefaultTargetCapacityType": "on-demand",
    }  # fmt: skip
    assert fleet["SpotOptions"] == {"AllocationStrategy": "lowest-price"}
    assert sorted(o["InstanceType"] for o in fleet["LaunchTemplateConfigs"][0]["Overrides"]) == ["t3.micro", "t3.small"]
    launched = _batch_machines(aws, request_id)
    assert len(launched) == 3 and aws.ec2.describe_launch_templates()["LaunchTemplates"] == []

    # One user data for the batch: its tenant and the bootstrap key's hash, no instance's identity or key.
    raw_user_data = aws.ec2.describe_instance_attribute(InstanceId=launched[0]["InstanceId"], Attribute="userData")["UserData"]["Value"]
    script = gzip.decompress(base64.b64decode(raw_user_data)).decode()
    bootstrap = crypto.decrypt(batch.bootstrap_key_encrypted)
    bootstrap_hash = hashlib.sha256(bootstrap.encode()).hexdigest()
    (exec_start,) = [line for line in script.splitlines() if line.startswith("ExecStart=")]
    assert bootstrap_hash in script and bootstrap not in script and "--instance-id" not in exec_start and "--tenant-id acme-corp" in exec_start
    for instance in Instance.objects.filter(instance_id__startswith="bt-"):
        assert hashlib.sha256(crypto.decrypt(instance.agent_key_encrypted).encode()).hexdigest() not in script
    assert len(base64.b64decode(raw_user_data)) < 16 * 1024

    # Assigned in position order by machine id, in one go; then each create finishes on its own.
    ids = sorted(m["InstanceId"] for m in launched)
    assert list(FleetRequestItem.objects.filter(request__request_id=request_id).order_by("position").values_list("machine_id", flat=True)) == ids
    where = agents.start(bootstrap_hash, ids, tenant.pk)
    run_jobs()
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["succeeded"], body["failed"]) == ("complete", 3, 0), [(l.instance.instance_id, l.message) for l in LogLine.objects.all()]
    for position, machine_id in enumerate(ids, start=1):
        instance = Instance.objects.get(instance_id=f"bt-{position}")
        op = Operation.objects.get(instance=instance)
        assert instance.state == "running" and instance.provider_instance_id == machine_id and instance.ip_address == where[machine_id]
        assert instance.provider_data["fleet_request"] == request_id and instance.provider_data["provider_api"] == "EC2Fleet"
        (raw,) = aws.ec2.describe_instances(InstanceIds=[machine_id])["Reservations"][0]["Instances"]
        tags = _tags(raw)
        assert tags["orchestrio:instance_id"] == instance.instance_id and tags["orchestrio:instance_pk"] == str(instance.pk)
        assert tags["orchestrio:operation_id"] == str(op.pk) and tags["orchestrio:tenant_id"] == "acme-corp"
        assert tags["Name"] == instance.instance_id and tags["team"] == "core" and tags["orchestrio:fleet_request"] == request_id
        assert instance.instance_type == raw["InstanceType"]
        # The agent is the instance's: its own key opens it, with its identity; the batch's key no more.
        base = f"http://{where[machine_id]}:{agents.port}"
        own = crypto.decrypt(instance.agent_key_encrypted)
        status = httpx.get(base + "/api/status", headers={KEY: own}).json()
        assert status["instance_id"] == instance.instance_id and status["tenant_id"] == "acme-corp"
        assert httpx.get(base + "/api/status", headers={KEY: bootstrap}).status_code == 401
        assert httpx.post(base + "/config", headers={KEY: bootstrap}, json={"x": 1}).status_code == 401
        # …and nobody can make it another instance's.
        other = {"key_sha256": "0" * 64, "identity": {"instance_id": "someone-else", "tenant_id": "acme-corp"}}
        assert httpx.post(base + "/agent-key", headers={KEY: own}, json=other).status_code == 422
        assert LogLine.objects.filter(instance=instance, message__startswith=f"assigned machine {machine_id}").exists()
        assert LogLine.objects.filter(instance=instance, message__contains="its agent took the instance's own key").exists()
    assert len(sent["create_fleet"]) == 1 and "run_instances" not in sent
    assert len(sent["create_tags"]) == 3  # one per machine, with its instance's tags
    batch.refresh_from_db()
    assert batch.status == "assigned" and batch.bootstrap_key_encrypted == "" and batch.key_erased_at is not None
    assert batch.launched == 3 and batch.fleet_id == fleet_id(aws)
    # Every EC2 call the batch made is in the IAM policy docs/aws.md gives the control plane.
    allowed = _policy_actions()
    called = {"ec2:" + "".join(part.title() for part in method.split("_")) for method in sent}
    assert called - allowed == set(), called - allowed
    # The reconciler sees each machine as its instance's (no orphan, nothing vanished).
    assert {m.instance_pk for m in aws.provider.list_machines("us-east-1")} == set(Instance.objects.filter(instance_id__startswith="bt-").values_list("pk", flat=True))


def _policy_actions() -> set[str]:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "aws.md").read_text()
    policy = json.loads(doc.split("## The control plane's IAM policy", 1)[1].split("```json", 1)[1].split("```", 1)[0])
    actions = set()
    for statement in policy["Statement"]:
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def fleet_id(aws) -> str:
    return aws.ec2.describe_fleets()["Fleets"][0]["FleetId"]


def test_partial_capacity_fails_the_rest_with_provider_capacity_and_aws_reasons(api, aws, monkeypatch, owner):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    errors = [
        {"Lifecycle": "on-demand", "ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "no more t3.micro in us-east-1a"},
        {"Lifecycle": "on-demand", "ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "no more t3.small in us-east-1a"},
    ]
    real = aws.provider.call
    asked = []

    def short(service, region, method, **kwargs):
        if method == "create_fleet":
            asked.append(kwargs["TargetCapacitySpecification"]["TotalTargetCapacity"])
            kwargs["TargetCapacitySpecification"] = {**kwargs["TargetCapacitySpecification"], "TotalTargetCapacity": 1, "OnDemandTargetCapacity": 1}
            return {**real(service, region, method, **kwargs), "Errors": errors}
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", short)
    request_id = _request(api, 3, prefix="pc")
    run_jobs()
    assert asked == [3]
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["succeeded"], body["failed"]) == ("partial", 1, 2), body
    call = body["fleet_call"]
    assert (call["provider_api"], call["status"], call["launched"]) == ("EC2Fleet", "assigned", 1) and call["fleet_id"].startswith("fleet-")
    assert call["reasons"] == ["InsufficientInstanceCapacity: no more t3.micro in us-east-1a", "InsufficientInstanceCapacity: no more t3.small in us-east-1a"]
    first, *rest = body["instances"]
    assert first["instance_id"] == "pc-1" and first["state"] == "running" and first["reason"] is None
    for item in rest:
        assert item["state"] == "error" and item["operation"]["error_code"] == "provider_capacity"
        assert "launched 1 of the 3 machines" in item["reason"] and "no more t3.micro in us-east-1a" in item["reason"]
        assert "no more t3.small" in item["reason"] and f"POST /instances/{item['instance_id']}/start" in item["reason"]
    (raw,) = machines(aws.ec2, "running")
    assert _tags(raw)["orchestrio:instance_id"] == "pc-1"
    batch = FleetBatch.objects.get(request__request_id=request_id)
    assert batch.launched == 1 and len(batch.reasons) == 2
    # No agent answered (moto's machine runs none, the readiness check is off): the reconciler's
    # pass erases the key once every create has finished.
    fleet_services.fleet_batch_reconcile({})
    assert FleetBatch.objects.get(pk=batch.pk).bootstrap_key_encrypted == ""
    # The console's request page says what the one call did.
    from django.test import Client

    console = Client()
    console.force_login(owner)
    page = console.get(f"/fleet/{request_id}").content.decode()
    assert "one EC2Fleet call for the whole batch" in page and "1 of 3 machines launched" in page and "no more t3.small in us-east-1a" in page
    assert "fleet-call" not in console.get("/fleet/").content.decode()
    # A failed one is retried on its own: its own fleet call of capacity 1, as a single create.
    monkeypatch.setattr(aws.provider, "call", real)
    assert api.post("instances/pc-2/start").status_code == 202
    run_jobs()
    assert Instance.objects.get(instance_id="pc-2").state == "running"


def test_machines_beyond_the_count_are_terminated(api, aws, monkeypatch):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    real = aws.provider.call

    def generous(service, region, method, **kwargs):
        if method == "create_fleet":
            kwargs["TargetCapacitySpecification"] = {**kwargs["TargetCapacitySpecification"], "TotalTargetCapacity": 3, "OnDemandTargetCapacity": 3}
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", generous)
    request_id = _request(api, 2, prefix="ex")
    run_jobs()
    assert api.get(f"requests/{request_id}").json()["status"] == "complete"
    batch = FleetBatch.objects.get(request__request_id=request_id)
    (extra,) = batch.extra_machine_ids
    assert extra == max(m["InstanceId"] for m in _batch_machines(aws, request_id))  # sorted: the last is left over
    assert _batch_machines(aws, request_id, "running", "pending") and extra not in {m["InstanceId"] for m in _batch_machines(aws, request_id, "running", "pending")}
    assert len(machines(aws.ec2, "running")) == 2


def test_spot_fleet_batch_is_one_request_spot_fleet_of_n(api, aws, monkeypatch):
    _blueprint(api, aws, "Spot", "SpotFleet", on_demand_percentage=0, allocation_strategy="capacityOptimized")
    sent = _spy(aws, monkeypatch)
    request_id = _request(api, 2, blueprint="Spot", prefix="sp")
    run_jobs()
    (request,) = sent["request_spot_fleet"]
    config = request["SpotFleetRequestConfig"]
    assert config["TargetCapacity"] == 2 and config["OnDemandTargetCapacity"] == 0 and config["Type"] == "request"
    assert config["ClientToken"] == f"orchestrio-{request_id}" and config["AllocationStrategy"] == "capacityOptimized"
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["succeeded"]) == ("complete", 2), body
    running = machines(aws.ec2, "running")
    assert sorted(_tags(raw)["orchestrio:instance_id"] for raw in running) == ["sp-1", "sp-2"]
    spot_request = Instance.objects.get(instance_id="sp-1").provider_data["spot_fleet_request_id"]
    (state,) = aws.ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[spot_request])["SpotFleetRequestConfigs"]
    assert state["SpotFleetRequestState"] == "cancelled_running"  # no request outlives the launch
    assert "create_fleet" not in sent and aws.ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_a_retried_batch_job_launches_nothing_new_and_resumes_the_assignment(api, aws, monkeypatch):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    sent = _spy(aws, monkeypatch)
    request_id = _request(api, 2, prefix="rt")
    batch = FleetBatch.objects.get(request__request_id=request_id)
    # A create requeued by the reconciler while its batch launches launches nothing of its own:
    # it waits again, queued under the batch's job.
    op = Operation.objects.get(instance__instance_id="rt-1")
    call_job(run_operation, op.pk)
    op.refresh_from_db()
    assert op.status == "queued" and op.rq_job_id == batch.rq_job_id and not sent.get("create_fleet") and not sent.get("run_instances")

    # The worker dies after AWS answered, before the assignment was recorded.
    real_assign = fleet_services.fleet_batch_assign
    monkeypatch.setattr(fleet_services, "fleet_batch_assign", lambda **kw: (_ for _ in ()).throw(SystemExit("worker killed")))
    with pytest.raises(SystemExit):
        call_job(launch_batch, batch.pk)
    assert len(sent["create_fleet"]) == 1 and len(_batch_machines(aws, request_id)) == 2
    monkeypatch.setattr(fleet_services, "fleet_batch_assign", real_assign)
    call_job(launch_batch, batch.pk)  # the job again (the reconciler's, or RQ's retry)
    call_job(launch_batch, batch.pk)  # …and once more after it finished: nothing to do
    assert len(sent["create_fleet"]) == 1, "a second fleet was launched for the same batch"
    run_jobs()
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["succeeded"]) == ("complete", 2), body
    assert len(machines(aws.ec2, "running")) == 2 and "run_instances" not in sent
    assert sorted(Instance.objects.filter(instance_id__startswith="rt-").values_list("provider_instance_id", flat=True)) == sorted(
        m["InstanceId"] for m in _batch_machines(aws, request_id)
    )


def test_a_lost_batch_job_is_enqueued_again_by_a_waiting_create(api, aws, monkeypatch):
    import django_rq

    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="lo")
    django_rq.get_queue("default").empty()  # Redis lost the batch's job
    batch = FleetBatch.objects.get(request__request_id=request_id)
    op = Operation.objects.get(instance__instance_id="lo-2")
    call_job(run_operation, op.pk)  # the reconciler's requeue of a create whose job is gone
    batch.refresh_from_db()
    op.refresh_from_db()
    assert batch.rq_job_id == f"fleet-batch-{request_id}-2" and op.rq_job_id == batch.rq_job_id and op.status == "queued"
    run_jobs()
    assert api.get(f"requests/{request_id}").json()["status"] == "complete"
    assert len(machines(aws.ec2, "running")) == 2


def test_a_fleet_call_that_fails_fails_every_create_with_its_typed_error(api, aws, monkeypatch):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    real = aws.provider.call

    def refused(service, region, method, **kwargs):
        if method == "create_fleet":
            return {"FleetId": "fleet-0bad", "Instances": [], "Errors": [{"ErrorCode": "InvalidSubnetID.NotFound", "ErrorMessage": "no such subnet"}]}
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", refused)
    request_id = _request(api, 2, prefix="bad")
    run_jobs()
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["failed"]) == ("failed", 2), body
    assert all("InvalidSubnetID.NotFound" in item["reason"] for item in body["instances"])
    assert {item["operation"]["error_code"] for item in body["instances"]} == {"provider_invalid_request"}  # typed, not "capacity"
    assert FleetBatch.objects.get(request__request_id=request_id).bootstrap_key_encrypted == ""


def test_the_bootstrap_key_never_outlives_its_ttl(api, aws, settings):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="ttl")
    batch = FleetBatch.objects.get(request__request_id=request_id)
    summary: dict = {}
    fleet_services.fleet_batch_reconcile(summary)
    assert FleetBatch.objects.get(pk=batch.pk).bootstrap_key_encrypted and not summary  # minutes old: kept
    settings.FLEET_BOOTSTRAP_KEY_SECONDS = 0
    fleet_services.fleet_batch_reconcile(summary)
    assert FleetBatch.objects.get(pk=batch.pk).bootstrap_key_encrypted == "" and summary["fleet_bootstrap_keys_erased"] == 1
    run_jobs()  # the batch cannot launch without it: its creates fail, nothing is launched
    body = api.get(f"requests/{request_id}").json()
    assert body["status"] == "failed" and "bootstrap key was erased" in body["instances"][0]["reason"]
    assert _batch_machines(aws, request_id) == []


def test_another_tenants_batch_is_404_and_its_secrets_never_answered(api, other_api, aws):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="iso")
    run_jobs()
    assert other_api.get(f"requests/{request_id}").status_code == 404
    assert other_api.get("instances/iso-1").status_code == 404
    assert other_api.post(f"requests/{request_id}/return").status_code == 404
    assert request_id not in json.dumps(other_api.get("requests").json())
    body = api.get(f"requests/{request_id}").content.decode()
    batch = FleetBatch.objects.get(request__request_id=request_id)
    assert "bootstrap" not in body and (not batch.bootstrap_key_encrypted or batch.bootstrap_key_encrypted not in body)


def test_support_sees_the_batch_in_the_admin_without_its_key(api, aws, client):
    from django.contrib.auth import get_user_model

    from fleet.models import FleetRequest

    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="adm")
    batch = FleetBatch.objects.get(request__request_id=request_id)
    client.force_login(get_user_model().objects.create_superuser("ops@orchestrio.example", "ops@orchestrio.example", "staff-password-1"))
    page = client.get(f"/admin/fleet/fleetrequest/{FleetRequest.objects.get(request_id=request_id).pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "launching" in text and batch.rq_job_id in text
    assert batch.bootstrap_key_encrypted not in text and crypto.decrypt(batch.bootstrap_key_encrypted) not in text


def test_a_spot_fleet_batch_that_gets_nothing_fails_with_provider_capacity_and_aws_reasons(api, aws, monkeypatch):
    """moto's Spot Fleet always launches: botocore's Stubber answers for AWS from the request on."""
    from botocore.stub import ANY, Stubber

    import instances.providers.aws as aws_module

    monkeypatch.setattr(aws_module, "FLEET_POLL_SECONDS", 0)
    _blueprint(api, aws, "Spot", "SpotFleet", on_demand_percentage=0)
    request_id = _request(api, 2, blueprint="Spot", prefix="sn")
    stubber = Stubber(aws.provider.client("ec2", "us-east-1"))
    stubber.add_response("describe_instances", {"Reservations": []})
    stubber.add_response("create_launch_template", {"LaunchTemplate": {"LaunchTemplateName": "orchestrio-x"}}, {"LaunchTemplateName": f"orchestrio-{request_id}", "ClientToken": ANY, "LaunchTemplateData": ANY})
    stubber.add_response("describe_spot_fleet_requests", {"SpotFleetRequestConfigs": []})
    stubber.add_response("request_spot_fleet", {"SpotFleetRequestId": "sfr-0789"})
    stubber.add_response("describe_spot_fleet_instances", {"ActiveInstances": [], "SpotFleetRequestId": "sfr-0789"})
    stubber.add_response("describe_spot_fleet_requests", {"SpotFleetRequestConfigs": [{"SpotFleetRequestId": "sfr-0789", "SpotFleetRequestState": "active", "ActivityStatus": "error"}]})
    history = {"HistoryRecords": [{"EventType": "error", "EventInformation": {"EventSubType": "launchSpecUnusable", "EventDescription": "InsufficientInstanceCapacity: no t3 spot capacity"}}]}
    stubber.add_response("describe_spot_fleet_request_history", history, {"SpotFleetRequestId": "sfr-0789", "StartTime": ANY, "EventType": "error"})
    stubber.add_response("cancel_spot_fleet_requests", {"SuccessfulFleetRequests": []}, {"SpotFleetRequestIds": ["sfr-0789"], "TerminateInstances": False})
    stubber.add_response("describe_spot_fleet_instances", {"ActiveInstances": [], "SpotFleetRequestId": "sfr-0789"})
    stubber.add_response("delete_launch_template", {}, {"LaunchTemplateName": f"orchestrio-{request_id}"})
    with stubber:
        run_jobs()
    stubber.assert_no_pending_responses()
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["failed"]) == ("failed", 2), body
    for item in body["instances"]:
        assert item["operation"]["error_code"] == "provider_capacity"
        assert "Spot Fleet request sfr-0789 launched no machine" in item["reason"] and "no t3 spot capacity" in item["reason"]
    assert body["fleet_call"]["status"] == "assigned" and body["fleet_call"]["launched"] == 0


def test_a_batch_machines_agent_keeps_its_identity_and_own_key_across_restarts(tmp_path):
    """systemd restarts the agent (and user data runs once): what the first POST /agent-key gave a
    batch machine (its instance's key and identity) is what it knows from then on."""
    bootstrap, own = "oak_bootstrap-shared", "oak_own-key-of-b-1"

    def start(env):
        port_file = tmp_path / "port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-I", str(AGENT), "--state-dir", str(tmp_path / "state"), "--port", "0", "--port-file", str(port_file), "--tenant-id", "acme-corp"]
        proc = subprocess.Popen(argv, env={"PATH": "/usr/bin:/bin", **env}, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if port_file.exists() and port_file.read_text():
                return proc, f"http://127.0.0.1:{port_file.read_text()}"
            time.sleep(0.05)
        raise AssertionError("the agent did not start")

    proc, base = start({"ORCHESTRIO_AGENT_KEY_SHA256": hashlib.sha256(bootstrap.encode()).hexdigest()})
    try:
        assert httpx.get(base + "/api/status", headers={KEY: bootstrap}).json()["instance_id"] == ""
        identity = {"instance_id": "b-1", "tenant_id": "acme-corp"}
        bad = httpx.post(base + "/agent-key", headers={KEY: bootstrap}, json={"key_sha256": hashlib.sha256(own.encode()).hexdigest(), "identity": {"instance_id": "b-1"}})
        assert bad.status_code == 422  # an identity names both
        taken = httpx.post(base + "/agent-key", headers={KEY: bootstrap}, json={"key_sha256": hashlib.sha256(own.encode()).hexdigest(), "identity": identity})
        assert taken.json() == {"rotated": True, "instance_id": "b-1"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, base = start({})  # restarted: no launcher's hash, the files it kept
    try:
        assert httpx.get(base + "/api/status", headers={KEY: bootstrap}).status_code == 401
        status = httpx.get(base + "/api/status", headers={KEY: own}).json()
        assert (status["instance_id"], status["tenant_id"]) == ("b-1", "acme-corp")
        again = {"key_sha256": hashlib.sha256(own.encode()).hexdigest(), "identity": {"instance_id": "b-2", "tenant_id": "acme-corp"}}
        assert httpx.post(base + "/agent-key", headers={KEY: own}, json=again).status_code == 422
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_reconciler_resumes_a_batch_whose_job_redis_lost(api, aws):
    """End to end: the queue loses the batch's job; the reconciler requeues the waiting creates
    (their job is gone), the first to run enqueues the batch's job again and both wait for it; one
    fleet call launches the batch."""
    from datetime import timedelta

    import django_rq

    from instances.reconciler import reconcile_all

    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="rc")
    django_rq.get_queue("default").empty()
    Operation.objects.filter(instance__instance_id__startswith="rc-").update(created_at=Operation.objects.first().created_at - timedelta(minutes=1))
    summary = call_job(reconcile_all)
    assert summary["requeued"] == 2
    run_jobs()
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["succeeded"]) == ("complete", 2), body
    assert len(_batch_machines(aws, request_id)) == 2 and len(aws.ec2.describe_fleets()["Fleets"]) == 1
    assert FleetBatch.objects.get(request__request_id=request_id).rq_job_id == f"fleet-batch-{request_id}-2"


def test_when_weights_fill_the_units_with_fewer_machines_the_missing_ones_are_asked_for_again(api, aws, monkeypatch):
    """A type of weight 2 counts two units, so AWS (and moto, which honours the weights) may answer
    3 units with fewer than 3 machines, reporting no error. An instance is one machine: the batch
    asks for the missing ones, each call with a ClientToken of its own, until it has 3."""
    _blueprint(api, aws, "Weighted", "EC2Fleet", machine_types={"m6i.large": 2})
    sent = _spy(aws, monkeypatch)
    request_id = _request(api, 3, blueprint="Weighted", prefix="wt")
    run_jobs()
    asked = [(call["TargetCapacitySpecification"]["TotalTargetCapacity"], call["ClientToken"]) for call in sent["create_fleet"]]
    assert asked[0] == (3, f"orchestrio-{request_id}") and len(asked) > 1
    token, got = f"orchestrio-{request_id}", 0
    for capacity, sent_token in asked[1:]:
        got = 3 - capacity
        assert sent_token == f"{token}-{got}"  # the machines so far name the call: a re-run repeats it, AWS answers the first
    body = api.get(f"requests/{request_id}").json()
    assert (body["status"], body["succeeded"]) == ("complete", 3), body
    assert body["fleet_call"]["launched"] == 3 and body["fleet_call"]["reasons"] == []
    assert len(machines(aws.ec2, "running")) == 3


def test_a_killed_batch_worker_is_found_by_the_reconciler_and_its_job_enqueued_again(api, aws):
    """The worker dies while running the batch's job: RQ still reports the job started, but the
    batch's lock (kept alive only while a job runs it) lapses; the fleet app's reconciler pass
    enqueues the job again and moves the waiting creates under it, before they count as wedged."""
    from datetime import timedelta

    import django_rq
    from rq.job import Job, JobStatus

    from instances.reconciler import reconcile_all

    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="kw")
    batch = FleetBatch.objects.get(request__request_id=request_id)
    job = Job.fetch(batch.rq_job_id, connection=django_rq.get_connection("default"))
    django_rq.get_queue("default").remove(job)
    job.set_status(JobStatus.STARTED)  # what RQ says of a job whose worker was killed
    summary = call_job(reconcile_all)
    assert "fleet_batches_requeued" not in summary  # seconds young: its worker may be starting
    FleetBatch.objects.filter(pk=batch.pk).update(created_at=batch.created_at - timedelta(minutes=2))
    Operation.objects.filter(instance__instance_id__startswith="kw-").update(created_at=batch.created_at - timedelta(minutes=2))
    summary = call_job(reconcile_all)
    assert summary["fleet_batches_requeued"] == 1 and summary["requeued"] == 0
    batch.refresh_from_db()
    assert batch.rq_job_id == f"fleet-batch-{request_id}-2"
    assert set(Operation.objects.filter(instance__instance_id__startswith="kw-").values_list("rq_job_id", flat=True)) == {batch.rq_job_id}
    run_jobs()
    assert api.get(f"requests/{request_id}").json()["status"] == "complete"
    assert len(machines(aws.ec2, "running")) == 2


def test_one_job_runs_a_batch_at_a_time(api, aws):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="one")
    batch = FleetBatch.objects.get(request__request_id=request_id)
    with fleet_services.fleet_batch_held(batch=batch) as mine:
        assert mine
        assert call_job(launch_batch, batch.pk) == "another attempt is launching this batch"
        assert _batch_machines(aws, request_id) == []
    assert call_job(launch_batch, batch.pk).startswith("launched 2")


def test_machines_nobody_waits_for_any_more_are_terminated(api, aws, monkeypatch):
    """The batch's job died after AWS launched; meanwhile its creates were given up (wedged). The
    job run again assigns nothing and terminates what the batch launched."""
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    request_id = _request(api, 2, prefix="gone")
    batch = FleetBatch.objects.get(request__request_id=request_id)
    real_assign = fleet_services.fleet_batch_assign
    monkeypatch.setattr(fleet_services, "fleet_batch_assign", lambda **kw: (_ for _ in ()).throw(SystemExit("worker killed")))
    with pytest.raises(SystemExit):
        call_job(launch_batch, batch.pk)
    monkeypatch.setattr(fleet_services, "fleet_batch_assign", real_assign)
    assert len(_batch_machines(aws, request_id, "pending", "running")) == 2
    for op in Operation.objects.filter(instance__instance_id__startswith="gone-"):
        from instances.services import operation_fail

        operation_fail(operation=op, code="timeout", message="wedged")
    assert call_job(launch_batch, batch.pk) == "no instance waits: 2 machines terminated"
    assert _batch_machines(aws, request_id, "pending", "running") == []
    batch.refresh_from_db()
    assert batch.status == "assigned" and len(batch.extra_machine_ids) == 2 and batch.bootstrap_key_encrypted == ""


def test_a_spot_fleet_batch_aws_stops_answering_about_is_cancelled_with_what_it_launched(api, aws, monkeypatch):
    from botocore.stub import ANY, Stubber

    _blueprint(api, aws, "Spot", "SpotFleet", on_demand_percentage=0)
    request_id = _request(api, 2, blueprint="Spot", prefix="sq")
    stubber = Stubber(aws.provider.client("ec2", "us-east-1"))
    stubber.add_response("describe_instances", {"Reservations": []})
    stubber.add_response("create_launch_template", {"LaunchTemplate": {"LaunchTemplateName": "orchestrio-x"}}, {"LaunchTemplateName": ANY, "ClientToken": ANY, "LaunchTemplateData": ANY})
    stubber.add_response("describe_spot_fleet_requests", {"SpotFleetRequestConfigs": []})
    stubber.add_response("request_spot_fleet", {"SpotFleetRequestId": "sfr-0999"})
    stubber.add_client_error("describe_spot_fleet_instances", "UnauthorizedOperation", "not allowed to describe it")
    stubber.add_response("cancel_spot_fleet_requests", {"SuccessfulFleetRequests": []}, {"SpotFleetRequestIds": ["sfr-0999"], "TerminateInstances": True})
    stubber.add_response("delete_launch_template", {}, {"LaunchTemplateName": ANY})
    with stubber:
        run_jobs()
    stubber.assert_no_pending_responses()
    body = api.get(f"requests/{request_id}").json()
    assert body["status"] == "failed" and {i["operation"]["error_code"] for i in body["instances"]} == {"provider_auth"}
