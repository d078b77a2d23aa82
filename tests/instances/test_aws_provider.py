"""The AWS provider with moto's mock_aws: launches, lifecycle, Route 53, typed errors, throttling,
and the reconciler. (moto goes straight to running/stopped and does not de-duplicate ClientToken,
so our own idempotency is what these tests prove.)"""

from __future__ import annotations

import base64
import gzip

import boto3
import pytest

from instances.providers.aws import agent_for_user_data
from botocore.stub import Stubber

from instances.jobs import reconcile, run_operation
from instances.models import Instance, LogLine, Operation, instance_url
from instances.providers import MachineState, ProviderError, spec_for
from orchestrio.models import ActivityEvent

from ..helpers import assert_error, call_job, run_jobs
from .aws_fixtures import answer_with, aws, error_answer, machines  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("aws")


def _create(api, instance_id="aws-01", **body):
    response = api.post("instances", {"instance_id": instance_id, "blueprint_name": "OnAws", "region": "iad", **body})
    assert response.status_code == 201, response.content
    run_jobs()
    return Instance.objects.get(instance_id=instance_id, destroyed_at__isnull=True)


def _ec2_state(aws, instance) -> str:
    return aws.ec2.describe_instances(InstanceIds=[instance.provider_instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_create_launches_a_tagged_machine_with_a_client_token(api, aws, monkeypatch):
    sent = {}
    real = aws.provider.call

    def spy(service, region, method, **kwargs):
        if method == "run_instances":
            sent.update(kwargs)
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", spy)
    instance = _create(api)
    op = Operation.objects.get(instance=instance)
    assert instance.state == "running" and instance.provider == "aws", instance.error_message
    assert instance.provider_instance_id.startswith("i-") and instance.ip_address.startswith("10.1.1.")
    assert sent["ClientToken"] == f"orchestrio-{instance.pk}-{op.pk}"
    assert sent["ImageId"] == aws.image and sent["InstanceType"] == "t3.small"
    assert sent["SubnetId"] == aws.subnet and sent["SecurityGroupIds"] == [aws.group]
    assert sent["IamInstanceProfile"] == {"Name": "orchestrio-ssm"}
    assert sent["MetadataOptions"]["HttpTokens"] == "required"
    (raw,) = machines(aws.ec2, "running")
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags["orchestrio:instance_id"] == "aws-01" and tags["orchestrio:tenant_id"] == "acme-corp"
    assert tags["orchestrio:operation_id"] == str(op.pk) and tags["orchestrio:instance_pk"] == str(instance.pk)
    assert tags["team"] == "core" and tags["Name"] == "aws-01"


def test_user_data_installs_and_starts_the_agent(api, aws):
    instance = _create(api)
    raw = aws.ec2.describe_instance_attribute(InstanceId=instance.provider_instance_id, Attribute="userData")["UserData"]["Value"]
    packed = base64.b64decode(raw)
    assert len(packed) <= 16 * 1024  # EC2's limit applies to the user data as sent: gzip-compressed
    script = gzip.decompress(packed).decode()  # as cloud-init unpacks it
    assert script.startswith("#!/bin/bash")
    assert "systemctl enable --now orchestrio-agent.service" in script
    assert "--instance-id aws-01" in script and "--port 8080" in script
    from orchestrio.crypto import decrypt

    key = decrypt(instance.agent_key_encrypted)
    assert key not in script  # only the key's hash travels in user data
    import hashlib

    assert hashlib.sha256(key.encode()).hexdigest() in script
    from pathlib import Path

    import instances

    # The bootstrap's own here-document writes the agent (bash, as on the instance).
    import subprocess

    start = script.index("cat > /opt/orchestrio/agent.py")
    end = script.index("\nORCHESTRIO_AGENT_EOF\n", start) + len("\nORCHESTRIO_AGENT_EOF\n")
    heredoc = script[start:end].replace("cat > /opt/orchestrio/agent.py", "cat", 1)
    shipped = subprocess.run(["bash", "-c", heredoc], capture_output=True, check=True).stdout
    assert shipped == agent_for_user_data()
    # The same code as instances/agent.py, without its docstrings (and comments, which ast drops).
    assert _without_docstrings(shipped.decode()) == _without_docstrings((Path(instances.__file__).parent / "agent.py").read_text())
    # The sample scripts arrive byte for byte too.
    from instances.providers.aws import SCRIPTS_DIR

    for sample in sorted(SCRIPTS_DIR.glob("*.sh")):
        assert f"cat > /opt/orchestrio/scripts/{sample.name} <<'ORCHESTRIO_SCRIPT_EOF'\n{sample.read_text().rstrip(chr(10))}\nORCHESTRIO_SCRIPT_EOF" in script
    assert "--own-cgroup" in script  # systemd gives the agent a cgroup of its own: its CPU and memory limit


def _without_docstrings(source: str) -> str:
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def test_the_shipped_agent_runs(tmp_path):
    """The agent as user data carries it starts and answers, keyed, like the original."""
    import hashlib
    import subprocess
    import sys
    import time

    import httpx

    path = tmp_path / "agent.py"
    path.write_bytes(agent_for_user_data())
    env = {"ORCHESTRIO_AGENT_KEY_SHA256": hashlib.sha256(b"oak_shipped").hexdigest(), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-I", str(path), "--state-dir", str(tmp_path / "state"), "--port", "0", "--port-file", str(tmp_path / "port")],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if (tmp_path / "port").exists() and (tmp_path / "port").read_text():
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{(tmp_path / 'port').read_text()}"
        assert httpx.get(base + "/health").json()["status"] == "ok"
        assert httpx.get(base + "/api/status", headers={"X-Orchestrio-Agent-Key": "oak_shipped"}).json()["version"]
        assert httpx.get(base + "/app-logs", headers={"X-Orchestrio-Agent-Key": "oak_shipped"}).json()["starts"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_oversized_user_data_is_refused_clearly(api, aws, tenant):
    from instances.models import Blueprint

    import hashlib

    # Incompressible (the limit is on the gzip-compressed user data): 15 KB of distinct hex lines.
    lines = "".join(f"echo {hashlib.sha256(str(n).encode()).hexdigest()}\n" for n in range(220))
    Blueprint.objects.filter(name="OnAws").update(user_data=lines)
    instance = Instance.objects.get(pk=_create(api).pk)
    assert instance.state == "error" and "EC2 allows 16384" in instance.error_message


def test_create_job_run_twice_launches_one_machine(api, aws):
    api.post("instances", {"instance_id": "aws-twice", "blueprint_name": "OnAws", "region": "iad"})
    op = Operation.objects.get()
    run_operation(op.pk)
    # Simulate the retry of a job whose worker died after RunInstances: the operation is still
    # running and nothing was recorded.
    instance = Instance.objects.get(instance_id="aws-twice")
    Operation.objects.filter(pk=op.pk).update(status="running", finished_at=None)
    Instance.objects.filter(pk=instance.pk).update(state="provisioning", provider_instance_id="", ip_address=None)
    run_operation(op.pk)
    assert len(machines(aws.ec2, "pending", "running")) == 1
    instance.refresh_from_db()
    assert instance.state == "running" and instance.provider_instance_id == machines(aws.ec2)[0]["InstanceId"]


def test_stop_start_suspend_resume_resize_destroy(api, aws, tenant):
    instance = _create(api, "aws-life")
    api.post("instances/aws-life/stop")
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "stopped" and _ec2_state(aws, instance) == "stopped"

    api.post("instances/aws-life/start")
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "running" and _ec2_state(aws, instance) == "running"

    # The pro plan allows hibernation; the machine was launched with it configured.
    api.post("instances/aws-life/suspend")
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "suspended" and _ec2_state(aws, instance) == "stopped"
    assert instance.provider_data["hibernated"] is True
    assert LogLine.objects.filter(instance=instance, message__startswith="hibernated").exists()
    api.post("instances/aws-life/resume")
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "running" and _ec2_state(aws, instance) == "running"

    # Resize while running: stop, modify, start, back to running.
    api.put("instances/aws-life/resize", {"plan_id": "openclaw-pro"})
    run_jobs()
    instance.refresh_from_db()
    raw = aws.ec2.describe_instances(InstanceIds=[instance.provider_instance_id])["Reservations"][0]["Instances"][0]
    assert raw["InstanceType"] == "t3.large" and raw["State"]["Name"] == "running"
    assert instance.state == "running" and instance.instance_type == "t3.large"

    api.delete("instances/aws-life")
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "destroyed" and _ec2_state(aws, instance) == "terminated"


def test_suspend_without_hibernation_is_a_plain_stop(api, aws, tenant):
    from orchestrio.models import SubscriptionPlan

    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(feature_hibernation=False)
    instance = _create(api, "aws-plain")
    api.post("instances/aws-plain/suspend")
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "suspended" and instance.provider_data["hibernated"] is False
    assert LogLine.objects.filter(instance=instance, message__startswith="suspended").exists()


def test_sleep_hibernates_and_wake_starts_the_machine_again(api, aws, tenant):
    """Scale to zero on AWS: a sleep is a suspend (hibernation where the plan allows it), a wake
    starts the machine, and the instance records its new address (docs/lifecycle.md)."""
    instance = _create(api, "aws-nap")
    assert api.post("instances/aws-nap/sleep").status_code == 202
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "asleep" and _ec2_state(aws, instance) == "stopped"
    assert instance.provider_data["hibernated"] is True
    assert LogLine.objects.filter(instance=instance, message__startswith="asleep, hibernated").exists()
    assert api.post("instances/aws-nap/wake").status_code == 202
    run_jobs()
    instance.refresh_from_db()
    assert instance.state == "running" and _ec2_state(aws, instance) == "running"
    raw = aws.ec2.describe_instances(InstanceIds=[instance.provider_instance_id])["Reservations"][0]["Instances"][0]
    assert instance.ip_address == (raw.get("PublicIpAddress") or raw.get("PrivateIpAddress"))


def test_resize_stops_first(api, aws, monkeypatch):
    """moto accepts ModifyInstanceAttribute on a running machine (AWS does not): prove we stop first."""
    instance = _create(api, "aws-order")
    calls = []
    real = aws.provider.call

    def spy(service, region, method, **kwargs):
        if method in ("stop_instances", "modify_instance_attribute", "start_instances"):
            state = _ec2_state(aws, instance)
            calls.append((method, state))
        return real(service, region, method, **kwargs)

    monkeypatch.setattr(aws.provider, "call", spy)
    api.put("instances/aws-order/resize", {"new_instance_type": "m5.large"})
    run_jobs()
    assert calls == [("stop_instances", "running"), ("modify_instance_attribute", "stopped"), ("start_instances", "stopped")]


def test_route53_records_follow_the_instance(api, aws, settings):
    r53 = boto3.client("route53")
    zone = r53.create_hosted_zone(Name=settings.BASE_DOMAIN, CallerReference="orchestrio-test")["HostedZone"]["Id"]
    settings.ROUTE53_HOSTED_ZONE_ID = zone

    def record():
        for rrset in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]:
            if rrset["Name"] == f"aws-dns.{settings.BASE_DOMAIN}." and rrset["Type"] == "A":
                return rrset["ResourceRecords"][0]["Value"]
        return None

    instance = _create(api, "aws-dns")
    assert record() == instance.ip_address
    assert api.get("instances/aws-dns").json()["access_url"] == instance_url(f"aws-dns.{settings.BASE_DOMAIN}")
    # An IP change (set it behind our back) is corrected on the next start.
    r53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {"Name": f"aws-dns.{settings.BASE_DOMAIN}.", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]}}]},
    )
    api.post("instances/aws-dns/restart")
    run_jobs()
    assert record() == instance.ip_address
    api.delete("instances/aws-dns")
    run_jobs()
    assert record() is None


def _stubbed(aws, service="ec2", region="us-east-1"):
    client = aws.provider.client(service, region)
    return Stubber(client)


@pytest.mark.parametrize(
    ("code", "error_code", "words"),
    [
        ("InsufficientInstanceCapacity", "provider_capacity", "no capacity for t3.small in us-east-1"),
        ("UnauthorizedOperation", "provider_auth", "IAM policy"),
        ("AuthFailure", "provider_auth", "refused"),
        ("VcpuLimitExceeded", "provider_quota", "quota"),
        ("InstanceLimitExceeded", "provider_quota", "quota"),
        ("InvalidAMIID.NotFound", "provider_invalid_request", "check the blueprint"),
        ("InvalidSubnetID.NotFound", "provider_invalid_request", "check the blueprint"),
        ("InternalError", "provider_error", "AWS failed"),
    ],
)
def test_typed_errors(api, aws, code, error_code, words):
    stubber = _stubbed(aws)
    stubber.add_response("describe_instances", {"Reservations": []})
    stubber.add_client_error("run_instances", service_error_code=code, service_message=f"simulated {code}")
    api.post("instances", {"instance_id": "aws-err", "blueprint_name": "OnAws", "region": "iad"})
    with stubber:
        run_jobs()
    op = Operation.objects.get()
    assert op.status == "failed" and op.error_code == error_code
    assert words in op.error_message and "Traceback" not in op.error_message
    body = api.get("instances/aws-err").json()
    assert body["state"] == "error" and body["error_message"] == op.error_message
    assert api.get("instances/aws-err/operations").json()["results"][0]["error_code"] == error_code


def test_missing_credentials_is_provider_auth(api, aws, monkeypatch):
    from botocore.exceptions import NoCredentialsError

    def no_credentials(*args, **kwargs):
        raise NoCredentialsError()

    api.post("instances", {"instance_id": "aws-nocred", "blueprint_name": "OnAws", "region": "iad"})
    monkeypatch.setattr(aws.provider.client("ec2", "us-east-1"), "describe_instances", no_credentials)
    run_jobs()
    op = Operation.objects.get()
    assert op.error_code == "provider_auth" and "no AWS credentials" in op.error_message


def test_throttling_is_retried_by_botocore_then_succeeds(aws, make_instance, answer_with):
    instance = make_instance(instance_id="aws-throttle", provider="aws", region_id="iad")
    pending = answer_with("DescribeInstances", *[error_answer("RequestLimitExceeded") for _ in range(3)])
    machine = aws.provider.describe(spec_for(instance))
    assert machine.state == MachineState.MISSING  # the fourth attempt reached AWS
    assert pending["DescribeInstances"] == [] and len(aws.retry_delays) == 3


def test_throttling_storm_becomes_a_typed_failure(aws, make_instance, settings, answer_with):
    settings.AWS_MAX_ATTEMPTS = 3
    instance = make_instance(instance_id="aws-storm", provider="aws", region_id="iad")
    pending = answer_with("DescribeInstances", *[error_answer("Throttling") for _ in range(4)])
    with pytest.raises(ProviderError) as raised:
        aws.provider.describe(spec_for(instance))
    assert raised.value.code == "provider_throttled" and raised.value.retryable
    assert len(pending["DescribeInstances"]) == 1  # three attempts in all, as configured


def test_a_5xx_answer_is_retried(aws, make_instance, answer_with):
    instance = make_instance(instance_id="aws-5xx", provider="aws", region_id="iad")
    answer_with("DescribeInstances", error_answer("Unavailable", status=503), error_answer("InternalError", status=500))
    assert aws.provider.describe(spec_for(instance)).state == MachineState.MISSING
    assert len(aws.retry_delays) == 2


def test_a_lost_answer_is_retried_then_a_typed_failure(aws, make_instance, settings, answer_with):
    """No answer from AWS (connection closed, timeouts) is retried like throttling: every call is
    idempotent. When it keeps happening, the failure is typed and retryable."""
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    settings.AWS_MAX_ATTEMPTS = 3
    instance = make_instance(instance_id="aws-lost", provider="aws", region_id="iad")
    answer_with("DescribeInstances", ConnectionClosedError(endpoint_url="https://ec2"), ReadTimeoutError(endpoint_url="https://ec2"))
    assert aws.provider.describe(spec_for(instance)).state == MachineState.MISSING
    assert len(aws.retry_delays) == 2

    answer_with("DescribeInstances", *[ConnectionClosedError(endpoint_url="https://ec2") for _ in range(3)])
    with pytest.raises(ProviderError) as raised:
        aws.provider.describe(spec_for(instance))
    assert raised.value.code == "provider_error" and raised.value.retryable and "AWS" in raised.value.message


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_clients_use_botocore_retry_mode_from_settings(aws, settings, mode):
    from instances.providers import get_provider, reset_providers

    settings.AWS_RETRY_MODE = mode
    settings.AWS_MAX_ATTEMPTS = 4
    reset_providers()
    retries = get_provider("aws").client("ec2", "us-east-1").meta.config.retries
    assert retries["mode"] == mode and retries["total_max_attempts"] == 4


def test_backoff_is_botocores_exponential_with_jitter(aws, make_instance, answer_with):
    instance = make_instance(instance_id="aws-jitter", provider="aws", region_id="iad")
    answer_with("DescribeInstances", *[error_answer("RequestLimitExceeded") for _ in range(5)])
    aws.provider.describe(spec_for(instance))
    # Full jitter below a ceiling that doubles from 1 s and stops at 20 s (botocore's standard mode).
    assert len(aws.retry_delays) == 5
    assert all(0 <= delay <= min(20, 2**attempt) for attempt, delay in enumerate(aws.retry_delays)), aws.retry_delays


def test_waiting_past_the_timeout_is_a_typed_timeout(aws, api, settings):
    instance = _create(api, "aws-slow")
    aws.ec2.stop_instances(InstanceIds=[instance.provider_instance_id])  # it will never run by itself
    settings.AWS_WAIT_TIMEOUT_SECONDS = 1  # one look
    with pytest.raises(ProviderError) as raised:
        aws.provider._wait(spec_for(instance), instance.provider_instance_id, "running", action="start the machine")
    assert raised.value.code == "timeout" and "still stopped after 1s" in raised.value.message


def test_a_machine_terminated_while_waiting_has_vanished(aws, api):
    instance = _create(api, "aws-gone")
    aws.ec2.terminate_instances(InstanceIds=[instance.provider_instance_id])
    with pytest.raises(ProviderError) as raised:
        aws.provider._wait(spec_for(instance), instance.provider_instance_id, "stopped", action="stop the machine")
    assert raised.value.code == "machine_vanished" and "terminated while waiting to stop the machine" in raised.value.message


def test_throttled_while_waiting_is_a_typed_failure(aws, api, settings, answer_with):
    instance = _create(api, "aws-wait-throttle")
    answer_with("DescribeInstances", *[error_answer("RequestLimitExceeded") for _ in range(settings.AWS_MAX_ATTEMPTS)])
    with pytest.raises(ProviderError) as raised:
        aws.provider._wait(spec_for(instance), instance.provider_instance_id, "running", action="start the machine")
    assert raised.value.code == "provider_throttled"


# --- the reconciler with AWS --------------------------------------------------------------------


def test_reconciler_finishes_a_lost_create_with_one_machine(api, aws):
    from datetime import timedelta

    from django.utils import timezone

    from instances import services

    class Killed(BaseException):
        pass

    api.post("instances", {"instance_id": "aws-lost", "blueprint_name": "OnAws", "region": "iad"})
    op = Operation.objects.get()
    import django_rq

    django_rq.get_queue("default").empty()
    real = services.instance_record_machine
    services.instance_record_machine = lambda **kw: (_ for _ in ()).throw(Killed())
    try:
        with pytest.raises(Killed):
            run_operation(op.pk)
    finally:
        services.instance_record_machine = real
    assert len(machines(aws.ec2, "pending", "running")) == 1
    from orchestrio.queue import LEASE_PREFIX
    from orchestrio.redis import get_redis

    get_redis().delete(LEASE_PREFIX + f"operation:{op.pk}")
    Operation.objects.filter(pk=op.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    assert call_job(reconcile)["requeued"] == 1
    run_jobs()
    instance = Instance.objects.get(instance_id="aws-lost")
    assert instance.state == "running"
    assert len(machines(aws.ec2, "pending", "running")) == 1
    assert instance.provider_instance_id == machines(aws.ec2)[0]["InstanceId"]


def test_reconciler_marks_a_vanished_machine(api, aws):
    instance = _create(api, "aws-gone")
    aws.ec2.terminate_instances(InstanceIds=[instance.provider_instance_id])
    summary = call_job(reconcile)
    assert summary["machines_lost"] == 1
    instance.refresh_from_db()
    assert instance.state == "error" and "vanished" in instance.error_message
    assert LogLine.objects.filter(instance=instance, stage="reconciler").exists()
    assert ActivityEvent.objects.filter(action="instance.machine_lost", actor_label="reconciler").exists()


def test_reconciler_marks_a_machine_stopped_behind_our_back(api, aws):
    instance = _create(api, "aws-stopped")
    aws.ec2.stop_instances(InstanceIds=[instance.provider_instance_id])
    assert call_job(reconcile)["machines_lost"] == 1
    instance.refresh_from_db()
    assert instance.state == "error" and "outside Orchestrio" in instance.error_message


def test_reconciler_fails_a_wedged_operation(api, aws):
    from datetime import timedelta

    from django.utils import timezone

    instance = _create(api, "aws-wedge")
    api.post("instances/aws-wedge/stop")
    Operation.objects.filter(kind="stop").update(created_at=timezone.now() - timedelta(minutes=10))
    Instance.objects.filter(pk=instance.pk).update(state_changed_at=timezone.now() - timedelta(minutes=10))
    assert call_job(reconcile)["wedged"] == 1
    assert Operation.objects.get(kind="stop").error_code == "timeout"


def test_reconciler_reports_and_optionally_terminates_orphans(aws, settings):
    aws.ec2.run_instances(
        ImageId=aws.image, MinCount=1, MaxCount=1, InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "orchestrio:instance_pk", "Value": "987654"}, {"Key": "orchestrio:instance_id", "Value": "ghost"},
            {"Key": "orchestrio:tenant_id", "Value": "nobody"},
        ]}],
    )  # fmt: skip
    settings.RECONCILER_TERMINATE_ORPHANS = False
    summary = call_job(reconcile)
    assert [(o["instance_id"], o["region"]) for o in summary["orphans"]] == [("ghost", "us-east-1")]
    assert len(machines(aws.ec2, "running")) == 1
    event = ActivityEvent.objects.get(action="reconciler.orphan")
    assert event.tenant_id is None and event.data["action"] == "reported"
    settings.RECONCILER_TERMINATE_ORPHANS = True
    assert call_job(reconcile)["orphans_terminated"] == 1
    assert machines(aws.ec2, "running") == []


def test_instance_api_never_shows_a_traceback(api, aws):
    stubber = _stubbed(aws)
    stubber.add_client_error("describe_instances", service_error_code="UnauthorizedOperation", service_message="You are not authorized")
    api.post("instances", {"instance_id": "aws-safe", "blueprint_name": "OnAws", "region": "iad"})
    with stubber:
        run_jobs()
    for path in ("instances/aws-safe", "instances/aws-safe/operations", "instances/aws-safe/logs", "instances/aws-safe/runtime"):
        text = api.get(path).content.decode()
        assert "Traceback" not in text and "botocore" not in text


def test_region_must_be_enabled(api, settings):
    settings.ENABLED_PROVIDERS = ["local"]
    assert_error(api.post("instances", {"instance_id": "aws-off", "blueprint_name": "OnAws", "region": "fra"}), 422, contains="not enabled")


def test_task_command_quotes_every_argument():
    import shlex

    from instances.providers.base import TaskRequest
    from instances.providers.aws import task_command

    line = task_command(TaskRequest(task_id="t1", script_path="/opt/x/run.sh", args={"name": "a; rm -rf /", "n": 3, "cmd": "$(id)`id`\nnext"}, timeout_seconds=60))
    parts = shlex.split(line.split("| ", 2)[2])
    assert parts == ["/opt/x/run.sh", "--name", "a; rm -rf /", "--n", "3", "--cmd", "$(id)`id`\nnext"]
