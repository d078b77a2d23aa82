"""moto-backed AWS for tests: fake credentials, `aws` enabled, no readiness probe (moto's
machines run no agent), botocore's retry backoff recorded and not slept (`aws.retry_delays`), and
`answer_with`, which makes AWS answer an operation with errors below botocore's retry handler (as
a real endpoint would), unlike botocore's Stubber, which answers before it."""

from __future__ import annotations

from collections import defaultdict

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.endpoint import Endpoint
from botocore.loaders import JSONFileLoader
from botocore.retries.standard import ExponentialBackoff

# botocore's data files (EC2's model alone is megabytes of JSON), parsed once per test process.
# Every test's provider makes new boto3 sessions (reset_providers), and each new session parsed
# them all again: seconds of every AWS test's setup. Shared as one session shares them between
# its clients (botocore's own per-loader cache): the same parsed objects, read only.
_parsed: dict[str, object] = {}
_real_load_file = JSONFileLoader.load_file


def _load_file_once(self, file_path):
    if file_path not in _parsed:
        _parsed[file_path] = _real_load_file(self, file_path)
    return _parsed[file_path]


@pytest.fixture
def aws(settings, monkeypatch, tenant):
    from moto import mock_aws

    from instances.models import Blueprint
    from instances.providers import get_provider, reset_providers

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.ENABLED_PROVIDERS = ["local", "aws"]
    settings.INSTANCE_READY_CHECK = False
    delays = []

    def no_wait(self, context):
        delays.append(real_delay(self, context))
        return 0

    real_delay = ExponentialBackoff.delay_amount
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", no_wait)
    monkeypatch.setattr(JSONFileLoader, "load_file", _load_file_once)
    with mock_aws():
        reset_providers()
        provider = get_provider("aws")
        ec2 = boto3.client("ec2", region_name="us-east-1")
        image = "ami-0a1b2c3d4e5f67890"  # tests/instances/moto_amis.json
        vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
        boto3.client("iam").create_instance_profile(InstanceProfileName="orchestrio-ssm")
        group = ec2.create_security_group(GroupName="orchestrio-agents", Description="agents", VpcId=vpc)["GroupId"]
        Blueprint.objects.create(
            tenant=tenant, name="OnAws", image_id=image, subnet_ids=[subnet], security_group_ids=[group],
            iam_instance_profile="orchestrio-ssm", key_name="", tags={"team": "core"},
        )  # fmt: skip
        yield type("Aws", (), {"ec2": ec2, "provider": provider, "image": image, "subnet": subnet, "group": group, "retry_delays": delays})
    reset_providers()


def machines(ec2, *states: str) -> list[dict]:
    filters = [{"Name": "tag-key", "Values": ["orchestrio:instance_pk"]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def error_answer(code: str, status: int = 400, message: str = "injected"):
    """What `Endpoint._do_get_response` returns for an AWS error answer."""
    http = AWSResponse("https://aws.invalid/", status, {}, _Raw(b""))
    return (http, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}), None


@pytest.fixture
def answer_with(monkeypatch):
    """`answer_with("DescribeInstances", error_answer("Throttling"), ConnectionClosedError(...), …)`:
    the next calls of that operation get these answers (an exception: no answer at all), one per
    HTTP attempt, each seen by botocore's retry handler; then AWS (moto) answers again."""
    queued: dict[str, list] = defaultdict(list)
    real = Endpoint._do_get_response

    def answer(self, request, operation_model, context):
        pending = queued.get(operation_model.name)
        if pending:
            item = pending.pop(0)
            return (None, item) if isinstance(item, Exception) else item
        return real(self, request, operation_model, context)

    monkeypatch.setattr(Endpoint, "_do_get_response", answer)

    def add(operation: str, *answers) -> dict[str, list]:
        queued[operation].extend(answers)
        return queued

    return add
