"""moto-backed AWS for tests: fake credentials, `aws` enabled, no readiness probe (moto's
machines run no agent), the provider's sleeps skipped."""

from __future__ import annotations

import boto3
import pytest


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
    with mock_aws():
        reset_providers()
        provider = get_provider("aws")
        provider.sleep = lambda seconds: None
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
        yield type("Aws", (), {"ec2": ec2, "provider": provider, "image": image, "subnet": subnet, "group": group})
    reset_providers()


def machines(ec2, *states: str) -> list[dict]:
    filters = [{"Name": "tag-key", "Values": ["orchestrio:instance_pk"]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
