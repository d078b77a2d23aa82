"""EC2Fleet and SpotFleet blueprints on AWS (moto's mock_aws): each instance's machine is launched
by CreateFleet (type instant) or RequestSpotFleet from a launch template made for the launch,
tagged like RunInstances machines, and tied back to its instance; a fleet that launches nothing
(moto always has capacity, so botocore's Stubber answers for AWS there) fails the create with
`provider_capacity` and a message naming the machine types."""

from __future__ import annotations

import base64
import gzip

import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import ANY, Stubber

from instances.models import Instance, Operation

from ..helpers import run_jobs
from .aws_fixtures import _Raw, answer_with, aws, machines  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("aws")

TYPES = {"t3.micro": 1, "t3.small": 2}


def _blueprint(api, aws, name, provider_api, **fields):
    body = {
        "name": name, "provider_api": provider_api, "image_id": aws.image, "subnet_ids": [aws.subnet],
        "security_group_ids": [aws.group], "iam_instance_profile": "orchestrio-ssm", "tags": {"team": "core"},
        "machine_types": TYPES, **fields,
    }  # fmt: skip
    response = api.post("blueprints", body)
    assert response.status_code == 201, response.content
    return response.json()


def _spy(aws, monkeypatch) -> dict:
    sent: dict = {}
    real = aws.provider.call

    def spy(service, region, method, **kwargs):
        sent.setdefault(method, []).append(kwargs)
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", spy)
    client = aws.provider.client("ec2", "us-east-1")
    real_template = client.create_launch_template

    def template_spy(**kwargs):
        sent.setdefault("create_launch_template", []).append(kwargs)
        return real_template(**kwargs)

    monkeypatch.setattr(client, "create_launch_template", template_spy)
    return sent


def _create(api, instance_id, blueprint_name):
    response = api.post("instances", {"instance_id": instance_id, "blueprint_name": blueprint_name, "region": "iad"})
    assert response.status_code == 201, response.content
    run_jobs()
    return Instance.objects.get(instance_id=instance_id, destroyed_at__isnull=True)


def _tags(raw) -> dict:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def test_ec2_fleet_launches_one_tagged_machine_tied_to_its_instance(api, aws, monkeypatch):
    body = _blueprint(api, aws, "Fleet", "EC2Fleet", allocation_strategy="lowest-price")
    assert body["machine_types"] == TYPES and body["on_demand_percentage"] == 100 and body["allocation_strategy"] == "lowest-price"
    sent = _spy(aws, monkeypatch)
    instance = _create(api, "fleet-01", "Fleet")
    op = Operation.objects.get(instance=instance)
    assert instance.state == "running", instance.error_message

    (fleet,) = sent["create_fleet"]
    assert fleet["Type"] == "instant" and fleet["ClientToken"] == f"orchestrio-{instance.pk}-{op.pk}"
    assert fleet["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 1, "OnDemandTargetCapacity": 1, "SpotTargetCapacity": 0, "DefaultTargetCapacityType": "on-demand",
    }  # fmt: skip
    assert fleet["SpotOptions"] == {"AllocationStrategy": "lowest-price"}
    (config,) = fleet["LaunchTemplateConfigs"]
    assert sorted((o["InstanceType"], o["WeightedCapacity"], o["SubnetId"]) for o in config["Overrides"]) == [
        ("t3.micro", 1.0, aws.subnet), ("t3.small", 2.0, aws.subnet),
    ]  # fmt: skip

    (raw,) = machines(aws.ec2, "running")
    tags = _tags(raw)
    assert tags["orchestrio:instance_id"] == "fleet-01" and tags["orchestrio:tenant_id"] == "acme-corp"
    assert tags["orchestrio:instance_pk"] == str(instance.pk) and tags["orchestrio:operation_id"] == str(op.pk)
    assert tags["team"] == "core" and tags["Name"] == "fleet-01"
    assert instance.provider_instance_id == raw["InstanceId"] and instance.instance_type == raw["InstanceType"] in TYPES
    assert instance.provider_data["provider_api"] == "EC2Fleet" and instance.provider_data["fleet_id"] == aws.ec2.describe_fleets()["Fleets"][0]["FleetId"]
    assert instance.provider_data["lifecycle"] == "on-demand"
    # The launch template carried our user data (the agent) and IMDSv2, and is gone after the launch.
    (template,) = sent["create_launch_template"]
    data = template["LaunchTemplateData"]
    assert template["LaunchTemplateName"] == fleet["ClientToken"] and data["ImageId"] == aws.image
    assert data["MetadataOptions"]["HttpTokens"] == "required" and data["SecurityGroupIds"] == [aws.group]
    assert data["IamInstanceProfile"] == {"Name": "orchestrio-ssm"}
    assert {t["Key"]: t["Value"] for t in data["TagSpecifications"][1]["Tags"]}["orchestrio:instance_pk"] == str(instance.pk)  # volumes too
    assert aws.ec2.describe_launch_templates()["LaunchTemplates"] == []
    user_data = aws.ec2.describe_instance_attribute(InstanceId=raw["InstanceId"], Attribute="userData")["UserData"]["Value"]
    assert "systemctl enable --now orchestrio-agent.service" in gzip.decompress(base64.b64decode(user_data)).decode()

    # The reconciler and every later operation find the machine by its tags, as for RunInstances.
    (listed,) = aws.provider.list_machines("us-east-1")
    assert listed.instance_pk == instance.pk
    assert api.delete("instances/fleet-01").status_code == 202
    run_jobs()
    assert machines(aws.ec2, "running") == []


def test_spot_fleet_launches_a_tagged_spot_machine_and_cancels_its_request(api, aws, monkeypatch):
    _blueprint(api, aws, "Spot", "SpotFleet", on_demand_percentage=0, allocation_strategy="capacityOptimized")
    sent = _spy(aws, monkeypatch)
    instance = _create(api, "spot-01", "Spot")
    op = Operation.objects.get(instance=instance)
    assert instance.state == "running", instance.error_message

    (request,) = sent["request_spot_fleet"]
    config = request["SpotFleetRequestConfig"]
    assert config["Type"] == "request" and config["TargetCapacity"] == 1 and config["OnDemandTargetCapacity"] == 0
    assert config["AllocationStrategy"] == "capacityOptimized"
    assert config["IamFleetRole"] == "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"
    assert {o["InstanceType"]: o["WeightedCapacity"] for o in config["LaunchTemplateConfigs"][0]["Overrides"]} == {"t3.micro": 1.0, "t3.small": 2.0}

    (raw,) = machines(aws.ec2, "running")
    tags = _tags(raw)
    assert tags["orchestrio:instance_pk"] == str(instance.pk) and tags["orchestrio:operation_id"] == str(op.pk)
    assert tags["orchestrio:instance_id"] == "spot-01" and tags["team"] == "core"
    assert instance.provider_instance_id == raw["InstanceId"] and instance.instance_type in TYPES
    request_id = instance.provider_data["spot_fleet_request_id"]
    assert instance.provider_data["lifecycle"] == "spot" and instance.provider_data["provider_api"] == "SpotFleet"
    # The one-time request is cancelled once its machine runs; the machine stays.
    (state,) = aws.ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[request_id])["SpotFleetRequestConfigs"]
    assert state["SpotFleetRequestState"] == "cancelled_running"
    assert aws.ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_ec2_fleet_spot_split(api, aws, monkeypatch):
    _blueprint(api, aws, "FleetSpot", "EC2Fleet", machine_types={"t3.micro": 1}, on_demand_percentage=0)
    sent = _spy(aws, monkeypatch)
    instance = _create(api, "fleet-spot", "FleetSpot")
    assert instance.state == "running", instance.error_message
    spec = sent["create_fleet"][0]["TargetCapacitySpecification"]
    assert spec["SpotTargetCapacity"] == 1 and spec["OnDemandTargetCapacity"] == 0 and spec["DefaultTargetCapacityType"] == "spot"
    assert sent["create_fleet"][0]["SpotOptions"] == {"AllocationStrategy": "price-capacity-optimized"}  # the default
    assert instance.provider_data["lifecycle"] == "spot" and instance.instance_type == "t3.micro"
    (raw,) = machines(aws.ec2, "running")
    assert _tags(raw)["orchestrio:instance_pk"] == str(instance.pk)


def _stubbed_launch(aws):
    """A Stubber on the EC2 client with the calls before the fleet's: no machine yet, the template made."""
    stubber = Stubber(aws.provider.client("ec2", "us-east-1"))
    stubber.add_response("describe_instances", {"Reservations": []})
    stubber.add_response("create_launch_template", {"LaunchTemplate": {"LaunchTemplateName": "orchestrio-x"}}, {"LaunchTemplateName": ANY, "ClientToken": ANY, "LaunchTemplateData": ANY})
    return stubber


def test_ec2_fleet_without_capacity_fails_with_provider_capacity(api, aws):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    api.post("instances", {"instance_id": "fleet-none", "blueprint_name": "Fleet", "region": "iad"})
    stubber = _stubbed_launch(aws)
    errors = [
        {"Lifecycle": "on-demand", "ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "We currently do not have sufficient t3.micro capacity"},
        {"Lifecycle": "on-demand", "ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "We currently do not have sufficient t3.small capacity"},
    ]
    stubber.add_response("create_fleet", {"FleetId": "fleet-0123", "Errors": errors, "Instances": []})
    stubber.add_response("delete_launch_template", {}, {"LaunchTemplateName": ANY})
    with stubber:
        run_jobs()
    stubber.assert_no_pending_responses()
    op = Operation.objects.get()
    assert op.status == "failed" and op.error_code == "provider_capacity", op.error_message
    assert "EC2 Fleet launched no machine" in op.error_message and "t3.micro, t3.small in us-east-1" in op.error_message
    assert "InsufficientInstanceCapacity" in op.error_message and "Traceback" not in op.error_message
    assert api.get("instances/fleet-none").json()["state"] == "error"


def test_ec2_fleet_error_other_than_capacity_is_typed(api, aws):
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    api.post("instances", {"instance_id": "fleet-bad", "blueprint_name": "Fleet", "region": "iad"})
    stubber = _stubbed_launch(aws)
    errors = [
        {"Lifecycle": "on-demand", "ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "none in us-east-1a"},
        {"Lifecycle": "on-demand", "ErrorCode": "InvalidParameterValue", "ErrorMessage": "bad subnet"},
    ]
    stubber.add_response("create_fleet", {"FleetId": "fleet-0123", "Errors": errors, "Instances": []})
    stubber.add_response("delete_launch_template", {}, {"LaunchTemplateName": ANY})
    with stubber:
        run_jobs()
    op = Operation.objects.get()
    assert op.error_code == "provider_invalid_request" and "bad subnet" in op.error_message


def test_spot_fleet_without_capacity_cancels_and_fails_with_provider_capacity(api, aws, monkeypatch):
    import instances.providers.aws as aws_module

    monkeypatch.setattr(aws_module, "FLEET_POLL_SECONDS", 0)
    _blueprint(api, aws, "Spot", "SpotFleet", on_demand_percentage=0)
    api.post("instances", {"instance_id": "spot-none", "blueprint_name": "Spot", "region": "iad"})
    stubber = _stubbed_launch(aws)
    stubber.add_response("request_spot_fleet", {"SpotFleetRequestId": "sfr-0123"})
    stubber.add_response("describe_spot_fleet_instances", {"ActiveInstances": [], "SpotFleetRequestId": "sfr-0123"})
    stubber.add_response("describe_spot_fleet_requests", {"SpotFleetRequestConfigs": [{"SpotFleetRequestId": "sfr-0123", "SpotFleetRequestState": "active", "ActivityStatus": "error"}]})
    history = {"HistoryRecords": [{"EventType": "error", "EventInformation": {"EventSubType": "launchSpecUnusable", "EventDescription": "InsufficientInstanceCapacity: no t3.micro spot capacity"}}]}
    stubber.add_response("describe_spot_fleet_request_history", history, {"SpotFleetRequestId": "sfr-0123", "StartTime": ANY, "EventType": "error"})
    stubber.add_response("cancel_spot_fleet_requests", {"SuccessfulFleetRequests": [], "UnsuccessfulFleetRequests": []}, {"SpotFleetRequestIds": ["sfr-0123"], "TerminateInstances": True})
    stubber.add_response("delete_launch_template", {}, {"LaunchTemplateName": ANY})
    with stubber:
        run_jobs()
    stubber.assert_no_pending_responses()
    op = Operation.objects.get()
    assert op.error_code == "provider_capacity", op.error_message
    assert "Spot Fleet request sfr-0123 launched no machine" in op.error_message and "no t3.micro spot capacity" in op.error_message


def test_spot_fleet_that_never_launches_times_out_as_capacity(api, aws, monkeypatch, settings):
    import instances.providers.aws as aws_module

    monkeypatch.setattr(aws_module, "FLEET_POLL_SECONDS", 0)
    settings.AWS_FLEET_WAIT_SECONDS = 0
    _blueprint(api, aws, "Spot", "SpotFleet", on_demand_percentage=0)
    api.post("instances", {"instance_id": "spot-slow", "blueprint_name": "Spot", "region": "iad"})
    stubber = _stubbed_launch(aws)
    stubber.add_response("request_spot_fleet", {"SpotFleetRequestId": "sfr-0456"})
    stubber.add_response("describe_spot_fleet_instances", {"ActiveInstances": [], "SpotFleetRequestId": "sfr-0456"})
    stubber.add_response("describe_spot_fleet_requests", {"SpotFleetRequestConfigs": [{"SpotFleetRequestId": "sfr-0456", "SpotFleetRequestState": "active", "ActivityStatus": "pending_fulfillment"}]})
    stubber.add_response("describe_spot_fleet_request_history", {"HistoryRecords": []}, {"SpotFleetRequestId": "sfr-0456", "StartTime": ANY, "EventType": "error"})
    stubber.add_response("cancel_spot_fleet_requests", {"SuccessfulFleetRequests": []}, {"SpotFleetRequestIds": ["sfr-0456"], "TerminateInstances": True})
    stubber.add_response("delete_launch_template", {}, {"LaunchTemplateName": ANY})
    with stubber:
        run_jobs()
    op = Operation.objects.get()
    assert op.error_code == "provider_capacity" and "got no machine within 0s" in op.error_message


def test_fleet_request_whose_one_fleet_call_finds_no_capacity_fails_each_instance_with_the_reasons(api, aws, answer_with):
    """A fleet request of 2 from an EC2Fleet blueprint makes one CreateFleet for both (the batch,
    tests/fleet/test_fleet_batches.py); AWS answers it (below botocore) with no machine: both
    instances fail with provider_capacity naming AWS's reason, and nothing is left behind."""
    _blueprint(api, aws, "Fleet", "EC2Fleet")
    errors = [{"Lifecycle": "on-demand", "ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "no t3 capacity"}]
    empty = {"FleetId": "fleet-0empty", "Errors": errors, "Instances": [], "ResponseMetadata": {"HTTPStatusCode": 200}}
    answer_with("CreateFleet", ((AWSResponse("https://aws.invalid/", 200, {}, _Raw(b"")), empty), None))
    response = api.post("requests", {"blueprint_name": "Fleet", "count": 2, "region": "iad", "instance_id_prefix": "fl"})
    assert response.status_code == 202, response.content
    run_jobs()
    body = api.get(f"requests/{response.json()['request_id']}").json()
    assert (body["status"], body["succeeded"], body["failed"]) == ("failed", 0, 2), body
    for item in body["instances"]:
        assert item["operation"]["error_code"] == "provider_capacity" and item["state"] == "error"
        assert "EC2 Fleet launched no machine" in item["reason"] and "InsufficientInstanceCapacity: no t3 capacity" in item["reason"]
    assert machines(aws.ec2) == []
    assert aws.ec2.describe_launch_templates()["LaunchTemplates"] == []  # the batch's template too
