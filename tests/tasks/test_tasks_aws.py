"""Tasks on AWS: SSM SendCommand / GetCommandInvocation / CancelCommand, with moto and botocore's
Stubber for the states moto skips (it marks commands successful at once and has no cancel)."""

from __future__ import annotations

import pytest
from botocore.stub import ANY, Stubber

from instances.models import Instance

from ..helpers import run_jobs
from ..instances.aws_fixtures import aws  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def ec2_instance(api):
    api.post("instances", {"instance_id": "ssm-host", "blueprint_name": "OnAws", "region": "iad"})
    run_jobs()
    instance = Instance.objects.get(instance_id="ssm-host")
    assert instance.state == "running"
    return instance


def _dispatch(api, **body):
    body = {"operation_code": "backup", "script_path": "/opt/openclaw/scripts/backup.sh", "script_args": {"target": "s3://bucket; rm -rf /"}, "timeout_seconds": 120, **body}
    response = api.post("instances/ssm-host/tasks", body)
    assert response.status_code == 202, response.content
    return response.json()["task_id"]


def test_ssm_path_with_moto(api, aws, ec2_instance, monkeypatch):
    sent = {}
    real = aws.provider.call

    def spy(service, region, method, **kwargs):
        if method == "send_command":
            sent.update(kwargs)
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", spy)
    task_id = _dispatch(api)
    run_jobs()
    task = api.get(f"tasks/{task_id}").json()
    assert task["status"] == "succeeded" and task["exit_code"] == 0
    assert sent["DocumentName"] == "AWS-RunShellScript" and sent["InstanceIds"] == [ec2_instance.provider_instance_id]
    assert sent["Parameters"]["executionTimeout"] == ["120"]
    line = sent["Parameters"]["commands"][0]
    assert line.endswith("/opt/openclaw/scripts/backup.sh --target 's3://bucket; rm -rf /'")
    assert sent["Comment"] == f"orchestrio task {task_id}"


def _stub_ssm(aws, invocations: list[dict], *, cancel: bool = False):
    ssm = aws.provider.client("ssm", "us-east-1")
    stubber = Stubber(ssm)
    stubber.add_response("list_commands", {"Commands": []}, {"InstanceId": ANY, "MaxResults": 50})
    stubber.add_response("send_command", {"Command": {"CommandId": "0b2e7d0c-1111-4c8a-9a7e-0123456789ab"}}, {
        "InstanceIds": ANY, "DocumentName": "AWS-RunShellScript", "Comment": ANY, "Parameters": ANY, "TimeoutSeconds": ANY,
    })  # fmt: skip
    for index, invocation in enumerate(invocations):
        if cancel and index == 1:
            stubber.add_response("cancel_command", {}, {"CommandId": "0b2e7d0c-1111-4c8a-9a7e-0123456789ab"})
        stubber.add_response("get_command_invocation", {"CommandId": "0b2e7d0c-1111-4c8a-9a7e-0123456789ab", "InstanceId": "i-x", **invocation}, {"CommandId": "0b2e7d0c-1111-4c8a-9a7e-0123456789ab", "InstanceId": ANY})
    return stubber


def test_intermediate_states_and_output(api, aws, ec2_instance, monkeypatch):
    from tasks import services

    seen = []
    real_update = services.task_update_output
    monkeypatch.setattr(services, "task_update_output", lambda **kw: (seen.append(kw["stdout"]), real_update(**kw))[1])
    stubber = _stub_ssm(aws, [
        {"Status": "Pending", "ResponseCode": -1},
        {"Status": "InProgress", "ResponseCode": -1, "StandardOutputContent": "step 1\n"},
        {"Status": "Success", "ResponseCode": 0, "StandardOutputContent": "step 1\nstep 2\n", "StandardErrorContent": ""},
    ])  # fmt: skip
    task_id = _dispatch(api)
    with stubber:
        run_jobs()
    task = api.get(f"tasks/{task_id}").json()
    assert task["status"] == "succeeded" and task["exit_code"] == 0 and task["stdout"] == "step 1\nstep 2\n"
    assert seen == ["step 1\n"]  # the running output was saved while it ran


@pytest.mark.parametrize(
    ("ssm_status", "code", "expected", "exit_code"),
    [("Failed", 2, "failed", 2), ("TimedOut", -1, "timed_out", None), ("Undeliverable", -1, "failed", None)],
)
def test_final_statuses(api, aws, ec2_instance, ssm_status, code, expected, exit_code):
    stubber = _stub_ssm(aws, [{"Status": ssm_status, "ResponseCode": code, "StandardErrorContent": "boom"}])
    task_id = _dispatch(api)
    with stubber:
        run_jobs()
    task = api.get(f"tasks/{task_id}").json()
    assert task["status"] == expected and task["exit_code"] == exit_code


def test_cancel_calls_cancel_command(api, aws, ec2_instance, monkeypatch):
    from instances.providers import get_provider
    from orchestrio.tenancy import Actor
    from tasks import services
    from tasks.models import Task

    stubber = _stub_ssm(aws, [
        {"Status": "InProgress", "ResponseCode": -1},
        {"Status": "Cancelling", "ResponseCode": -1},
        {"Status": "Cancelled", "ResponseCode": -1},
    ], cancel=True)  # fmt: skip
    task_id = _dispatch(api)
    provider = get_provider("aws")
    real = provider.task_status

    def status_then_cancel(spec, request, command):
        result = real(spec, request, command)
        task = Task.objects.get(task_id=task_id)
        if task.cancel_requested_at is None:
            services.task_cancel(task=task, actor=Actor.system("test"))
        return result

    monkeypatch.setattr(provider, "task_status", status_then_cancel)
    with stubber:
        run_jobs()
    stubber.assert_no_pending_responses()
    assert api.get(f"tasks/{task_id}").json()["status"] == "cancelled"


def test_retried_job_finds_the_command_instead_of_sending_it_again(api, aws, ec2_instance):
    ssm = aws.provider.client("ssm", "us-east-1")
    task_id = _dispatch(api)
    stubber = Stubber(ssm)
    stubber.add_response("list_commands", {"Commands": [{"CommandId": "5c1e7d0c-2222-4c8a-9a7e-0123456789ab", "Comment": f"orchestrio task {task_id}"}]}, {"InstanceId": ANY, "MaxResults": 50})
    stubber.add_response("get_command_invocation", {"CommandId": "5c1e7d0c-2222-4c8a-9a7e-0123456789ab", "InstanceId": "i-x", "Status": "Success", "ResponseCode": 0}, {"CommandId": "5c1e7d0c-2222-4c8a-9a7e-0123456789ab", "InstanceId": ANY})
    with stubber:
        run_jobs()  # no send_command was stubbed: sending again would fail the test
    from tasks.models import Task

    task = Task.objects.get(task_id=task_id)
    assert task.status == "succeeded" and task.provider_command_id == "5c1e7d0c-2222-4c8a-9a7e-0123456789ab"
