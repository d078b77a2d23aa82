"""The AWS provider: EC2 for machines, SSM for tasks, Route 53 for each instance's hostname.

Credentials, region endpoints and `AWS_ENDPOINT_URL` come from the standard boto3 chain. Every
machine is tagged `orchestrio:instance_id`, `orchestrio:tenant_id`, `orchestrio:instance_pk` and
`orchestrio:operation_id`. Launches are idempotent twice over: RunInstances carries a
`ClientToken` derived from the operation (AWS de-duplicates on it), and before launching we look
for a live machine already tagged with this instance (a retried job, or one re-run after its
worker died, finds the machine the first attempt launched).

Retries are botocore's own (its `standard` or `adaptive` retry mode, `AWS_RETRY_MODE`, with
`AWS_MAX_ATTEMPTS` attempts): throttling, 5xx answers and calls that got no answer are retried
with exponential backoff and jitter; every call we make is idempotent (RunInstances carries its
`ClientToken`), so a retry after a lost answer returns the first result. Waits for a machine's
state are boto3's EC2 waiters. What still fails becomes a typed `ProviderError` with a message a
user can act on.
"""

from __future__ import annotations

import ast
import base64
import gzip
import json
import logging
import math
import shlex
import threading
import time
from functools import lru_cache
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    WaiterError,
)
from django.conf import settings

from ..agent_client import key_sha256
from ..choices import ErrorCode
from .base import BatchLaunch, Machine, MachineSpec, MachineState, Provider, ProviderError, TaskRequest, TaskResult

logger = logging.getLogger(__name__)

AGENT_PATH = Path(__file__).resolve().parent.parent / "agent.py"
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "agent_scripts"
USER_DATA_LIMIT = 16 * 1024
# Where the program the agent supervises listens on the machine's loopback (the function host).
APP_PORT = 18080
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]

# Failures where no answer arrived (botocore retried them already).
NO_ANSWER = (ConnectionClosedError, EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)
THROTTLING = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException", "ThrottledException", "PriorRequestNotComplete"}
CAPACITY = {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity", "InsufficientAddressCapacity"}
AUTH = {
    "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied",
    "AccessDeniedException", "ExpiredToken", "ExpiredTokenException", "OptInRequired", "MissingAuthenticationToken",
    "UnrecognizedClientException",
}  # fmt: skip
QUOTA = {"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "ResourceLimitExceeded", "VolumeLimitExceeded", "AddressLimitExceeded"}
FLEET_CAPACITY = CAPACITY | {"UnfulfillableCapacity"}  # what a fleet reports per pool when it has none
# Spot Fleet's error events (their EventSubType) as the AWS error codes `translate` knows.
SPOT_FLEET_EVENTS = {
    "allLaunchSpecsTemporarilyBlacklisted": "InsufficientInstanceCapacity",
    "launchSpecTemporarilyBlacklisted": "InsufficientInstanceCapacity",
    "spotInstanceCountLimitExceeded": "MaxSpotInstanceCountExceeded",
    "iamFleetRoleInvalid": "UnauthorizedOperation",
    "spotFleetRequestConfigurationInvalid": "InvalidSpotFleetRequestConfig",
    "launchSpecUnusable": "InvalidParameterValue",
}
NOT_FOUND = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "InvalidInstanceId"}

# boto3's EC2 waiters, by the state they wait for; they poll every WAIT_DELAY_SECONDS.
WAITERS = {"running": "instance_running", "stopped": "instance_stopped", "terminated": "instance_terminated"}
WAIT_DELAY_SECONDS = 5
FLEET_POLL_SECONDS = 5  # how often a Spot Fleet request is looked at until it has its machine

EC2_STATES = {
    "pending": MachineState.PENDING,
    "running": MachineState.RUNNING,
    "stopping": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    "shutting-down": MachineState.TERMINATED,
    "terminated": MachineState.TERMINATED,
}
SSM_STATUSES = {
    "Pending": "queued",
    "Delayed": "queued",
    "InProgress": "running",
    "Cancelling": "running",
    "Success": "succeeded",
    "Failed": "failed",
    "TimedOut": "timed_out",
    "Cancelled": "cancelled",
    "Undeliverable": "failed",
    "Terminated": "failed",
}


def translate(error: Exception, *, action: str, spec: MachineSpec | None = None) -> ProviderError:
    """An AWS exception → a typed error with a message a user can act on (never a traceback)."""
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, NoCredentialsError):
        return ProviderError(ErrorCode.PROVIDER_AUTH, "no AWS credentials were found (the standard boto3 chain); see docs/aws.md")
    if isinstance(error, EndpointConnectionError):
        return ProviderError(ErrorCode.PROVIDER_ERROR, f"cannot reach the AWS endpoint to {action}; retry shortly", retryable=True)
    if isinstance(error, NO_ANSWER):
        return ProviderError(ErrorCode.PROVIDER_ERROR, f"no answer from AWS to {action} even after retries ({type(error).__name__}); retry shortly", retryable=True)
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", "")
        where = f" in {spec.region}" if spec is not None and spec.region else ""
        if code in THROTTLING:
            return ProviderError(ErrorCode.PROVIDER_THROTTLED, f"AWS throttled the request to {action} ({code}) even after retries; try again in a minute", retryable=True)
        if code in CAPACITY:
            size = f" for {spec.instance_type}" if spec is not None else ""
            return ProviderError(ErrorCode.PROVIDER_CAPACITY, f"AWS has no capacity{size}{where} right now ({code}); try another instance type or region, or retry later")
        if code in AUTH:
            return ProviderError(ErrorCode.PROVIDER_AUTH, f"AWS refused to {action} ({code}: {message}); check the control plane's IAM policy in docs/aws.md")
        if code in QUOTA:
            return ProviderError(ErrorCode.PROVIDER_QUOTA, f"the AWS account reached a quota{where} ({code}: {message}); request a higher limit or destroy unused instances")
        if code in NOT_FOUND:
            return ProviderError(ErrorCode.MACHINE_VANISHED, f"AWS has no such machine anymore ({code}); it was terminated outside Orchestrio")
        if code.startswith(("Invalid", "Missing", "Unsupported")) or code in ("NoSuchEntity", "IncorrectInstanceState", "IncorrectState"):
            return ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"AWS rejected the request to {action} ({code}: {message}); check the blueprint's settings")
        return ProviderError(ErrorCode.PROVIDER_ERROR, f"AWS failed to {action} ({code}: {message})", retryable=code.endswith("Unavailable") or code == "InternalError")
    if isinstance(error, BotoCoreError):
        return ProviderError(ErrorCode.PROVIDER_ERROR, f"the AWS client failed to {action}: {error}", retryable=True)
    return ProviderError(ErrorCode.PROVIDER_ERROR, f"unexpected failure to {action}: {type(error).__name__}")


@lru_cache(maxsize=1)
def agent_for_user_data() -> bytes:
    """The agent as user data carries it: the same code without its docstrings and comments
    (`ast.unparse`), so that it and the scripts fit EC2's 16 KiB with room for a blueprint's own
    user data."""
    tree = ast.parse(AGENT_PATH.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ("#!/usr/bin/env python3\n" + ast.unparse(tree) + "\n").encode()


def _heredoc(path: str, content: bytes, marker: str) -> str:
    """`content` written to `path` by a quoted here-document (no expansion inside)."""
    text = content.decode()
    if marker in text.splitlines():
        raise ValueError(f"{path} holds a line {marker!r}, the here-document's end")
    return f"cat > {path} <<'{marker}'\n{text.rstrip(chr(10))}\n{marker}"


def render_user_data(spec: MachineSpec) -> bytes:
    """A shell script that installs and starts the instance agent, then runs the blueprint's own;
    gzip-compressed as a whole, which cloud-init unpacks before running it ("Gzip compressed
    content", https://cloudinit.readthedocs.io/en/latest/explanation/format.html). The agent and the
    scripts travel as plain text inside: compressing the whole once packs them about a third tighter
    than base64 of each compressed part, the room a larger agent needs under EC2's 16 KiB."""
    files = [_heredoc("/opt/orchestrio/agent.py", agent_for_user_data(), "ORCHESTRIO_AGENT_EOF")]
    for script in sorted(SCRIPTS_DIR.glob("*.sh")):
        files.append(_heredoc(f"/opt/orchestrio/scripts/{script.name}", script.read_bytes(), "ORCHESTRIO_SCRIPT_EOF"))
    # A batch's machine knows only its tenant: its instance's id comes with its own key (the agent's
    # POST /agent-key), once the control plane has assigned it (docs/fleet.md).
    identity = ["--instance-id", spec.instance_id, "--instance-pk", str(spec.instance_pk)] if spec.instance_id else []
    args = " ".join(
        shlex.quote(part)
        for part in [
            "--host", "0.0.0.0", "--port", str(spec.agent_port), "--state-dir", "/var/lib/orchestrio/state",
            "--secrets-dir", "/run/orchestrio", "--root", "/", "--tenant-id", spec.tenant_id, *identity,
            "--app-log-bytes", str(settings.APP_LOG_MAX_BYTES), "--own-cgroup",  # systemd gives the agent's service a cgroup of its own
            "--app-port", str(APP_PORT if spec.agent_port != APP_PORT else APP_PORT + 1),  # a program PUT /app runs: on loopback, never the agent's port
        ]
    )  # fmt: skip
    config = shlex.quote(json.dumps(spec.config, sort_keys=True, separators=(",", ":")))
    script = f"""#!/bin/bash
# Orchestrio instance bootstrap: installs the instance agent ({spec.instance_id or "fleet request " + spec.fleet_request}).
set -euo pipefail
install -d -m 0755 /opt/orchestrio /opt/orchestrio/scripts /opt/openclaw/scripts
install -d -m 0700 /var/lib/orchestrio/state
{chr(10).join(files)}
chmod 0755 /opt/orchestrio/scripts/*.sh
printf '%s' {key_sha256(spec.agent_key)} > /var/lib/orchestrio/state/agent-key.sha256
[ -f /var/lib/orchestrio/state/config.json ] || printf '%s' {config} > /var/lib/orchestrio/state/config.json
cat > /etc/systemd/system/orchestrio-agent.service <<'UNIT'
[Unit]
Description=Orchestrio instance agent
After=network-online.target
[Service]
ExecStart=/usr/bin/python3 -I /opt/orchestrio/agent.py {args}
Restart=always
RestartSec=2
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now orchestrio-agent.service
"""
    if spec.user_data:
        script += "\n# --- the blueprint's user data ---\n" + spec.user_data.replace("#!/bin/bash", "", 1) + "\n"
    packed = gzip.compress(script.encode(), 9, mtime=0)
    if len(packed) > USER_DATA_LIMIT:
        raise ProviderError(
            ErrorCode.PROVIDER_INVALID_REQUEST,
            f"the user data is {len(packed)} bytes with the agent (gzip-compressed); EC2 allows {USER_DATA_LIMIT}: shorten the blueprint's user_data",
        )
    return packed


def task_comment(task: TaskRequest) -> str:
    return f"orchestrio task {task.task_id}"[:100]


def task_command(task: TaskRequest) -> str:
    """The one shell line SSM runs: args arrive as JSON on stdin and as quoted --key value pairs."""
    payload = base64.b64encode(json.dumps(task.args).encode()).decode()
    argv = [task.script_path]
    for key, value in task.args.items():
        argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))]
    return f"printf '%s' {shlex.quote(payload)} | base64 -d | " + " ".join(shlex.quote(part) for part in argv)


class AwsProvider(Provider):
    name = "aws"

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    # --- plumbing --------------------------------------------------------------------------

    def client(self, service: str, region: str):
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                retries = {"mode": settings.AWS_RETRY_MODE, "total_max_attempts": settings.AWS_MAX_ATTEMPTS}
                config = Config(retries=retries, connect_timeout=10, read_timeout=60)
                self._clients[key] = boto3.session.Session().client(service, region_name=region or None, config=config)
            return self._clients[key]

    def call(self, service: str, region: str, method: str, *, action: str, spec: MachineSpec | None = None, **kwargs):
        """One AWS API call, retried by botocore (see the module's docstring); what still fails
        is raised as a typed ProviderError."""
        try:
            return getattr(self.client(service, region), method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action=action, spec=spec) from None

    def ec2(self, spec: MachineSpec, method: str, *, action: str, **kwargs):
        return self.call("ec2", spec.region, method, action=action, spec=spec, **kwargs)

    @staticmethod
    def _machine(raw: dict, spec: MachineSpec | None = None) -> Machine:
        tags = {tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])}
        ip = raw.get("PublicIpAddress") if settings.AWS_USE_PUBLIC_IP else raw.get("PrivateIpAddress")
        state = EC2_STATES.get(raw.get("State", {}).get("Name", ""), MachineState.MISSING)
        return Machine(
            provider_instance_id=raw["InstanceId"],
            state=state,
            ip_address=ip,
            port=spec.agent_port if spec is not None else None,
            instance_type=raw.get("InstanceType", ""),
            tags=tags,
            provider_data={"ec2_state": raw.get("State", {}).get("Name"), "availability_zone": raw.get("Placement", {}).get("AvailabilityZone")},
        )

    def _find(self, spec: MachineSpec) -> dict | None:
        """The instance's live machine: by id when known, else by its tag."""
        if spec.provider_instance_id.startswith("i-"):
            try:
                reservations = self.ec2(spec, "describe_instances", action="describe the machine", InstanceIds=[spec.provider_instance_id])["Reservations"]
            except ProviderError as exc:
                if exc.code != ErrorCode.MACHINE_VANISHED:
                    raise
                reservations = []
            for reservation in reservations:
                for raw in reservation["Instances"]:
                    return raw
        filters = [
            {"Name": "tag:orchestrio:instance_pk", "Values": [str(spec.instance_pk)]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
        reservations = self.ec2(spec, "describe_instances", action="look up the machine", Filters=filters)["Reservations"]
        found = [raw for reservation in reservations for raw in reservation["Instances"]]
        found.sort(key=lambda raw: raw.get("LaunchTime", ""))
        return found[0] if found else None

    def _wait(self, spec: MachineSpec, instance_id: str, wanted: str, *, action: str) -> dict:
        """Wait with boto3's EC2 waiter until the machine is `wanted` (running, stopped or
        terminated), for at most AWS_WAIT_TIMEOUT_SECONDS; returns the machine as described then."""
        waiter = self.client("ec2", spec.region).get_waiter(WAITERS[wanted])
        config = {"Delay": WAIT_DELAY_SECONDS, "MaxAttempts": max(1, math.ceil(settings.AWS_WAIT_TIMEOUT_SECONDS / WAIT_DELAY_SECONDS))}
        try:
            waiter.wait(InstanceIds=[instance_id], WaiterConfig=config)
        except WaiterError as exc:
            raise self._wait_failed(exc, spec, instance_id, wanted, action=action) from None
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, action=action, spec=spec) from None
        if wanted == "terminated":
            return {"InstanceId": instance_id, "State": {"Name": "terminated"}}
        # The waiter does not hand back its last answer: one more look for the machine's details.
        reservations = self.ec2(spec, "describe_instances", action=action, InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]

    @staticmethod
    def _wait_failed(exc: WaiterError, spec: MachineSpec, instance_id: str, wanted: str, *, action: str) -> ProviderError:
        last = exc.last_response or {}
        if "Error" in last:  # AWS refused to describe it (after botocore's retries)
            return translate(ClientError(last, "DescribeInstances"), action=action, spec=spec)
        try:
            state = last["Reservations"][0]["Instances"][0]["State"]["Name"]
        except (KeyError, IndexError, TypeError):
            state = "unknown"
        if str(exc.kwargs.get("reason", "")).startswith("Max attempts exceeded"):
            return ProviderError(ErrorCode.TIMEOUT, f"the machine {instance_id} was still {state} after {settings.AWS_WAIT_TIMEOUT_SECONDS}s waiting to {action}")
        if state in ("terminated", "shutting-down"):
            return ProviderError(ErrorCode.MACHINE_VANISHED, f"the machine {instance_id} was terminated while waiting to {action}")
        # Another hand changed it meanwhile (stopped while we waited for it to run, …).
        return ProviderError(ErrorCode.PROVIDER_ERROR, f"the machine {instance_id} became {state} while waiting to {action}; retry", retryable=True)

    def _running(self, spec: MachineSpec, raw: dict, *, action: str) -> Machine:
        raw = self._wait(spec, raw["InstanceId"], "running", action=action)
        machine = self._machine(raw, spec)
        if machine.ip_address:
            self._dns_upsert(spec, machine.ip_address)
        return machine

    # --- Route 53 --------------------------------------------------------------------------

    def _record_name(self, spec: MachineSpec) -> str:
        return f"{spec.instance_id}.{settings.BASE_DOMAIN}."

    def _dns_upsert(self, spec: MachineSpec, ip: str) -> None:
        zone = settings.ROUTE53_HOSTED_ZONE_ID
        if not zone:
            return
        change = {"Action": "UPSERT", "ResourceRecordSet": {"Name": self._record_name(spec), "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": ip}]}}
        self.call("route53", "", "change_resource_record_sets", action="update the instance's DNS record", HostedZoneId=zone, ChangeBatch={"Comment": f"orchestrio {spec.instance_id}", "Changes": [change]})

    def _dns_delete(self, spec: MachineSpec) -> None:
        zone = settings.ROUTE53_HOSTED_ZONE_ID
        if not zone:
            return
        name = self._record_name(spec)
        records = self.call("route53", "", "list_resource_record_sets", action="read the instance's DNS record", HostedZoneId=zone, StartRecordName=name, StartRecordType="A", MaxItems="1")
        for record in records.get("ResourceRecordSets", []):
            if record["Name"] == name and record["Type"] == "A":
                self.call("route53", "", "change_resource_record_sets", action="delete the instance's DNS record", HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]})

    # --- lifecycle -------------------------------------------------------------------------

    def create(self, spec: MachineSpec) -> Machine:
        existing = self._find(spec)
        if existing is not None and existing["State"]["Name"] not in ("shutting-down", "terminated"):
            logger.info("instance %s already has machine %s: not launching another", spec.instance_id, existing["InstanceId"])
            if spec.provider_data.get("fleet_request"):
                self._tag_batch_machine(spec, existing)
            if existing["State"]["Name"] in ("stopped", "stopping"):
                return self.start(spec)
            return self._running(spec, existing, action="finish launching")
        if not spec.image_id:
            raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, "the blueprint has no image_id (an AMI id or resolve:ssm:…); AWS instances need one")
        if spec.provider_api in ("EC2Fleet", "SpotFleet"):
            return self._create_with_fleet(spec)
        tag_list = self._tag_list(spec)
        params = {
            "ImageId": spec.image_id,
            "InstanceType": spec.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            # A retried RunInstances with the same token returns the first launch instead of a second.
            "ClientToken": self._client_token(spec),
            "UserData": render_user_data(spec),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list}, {"ResourceType": "volume", "Tags": tag_list}],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        }
        if spec.subnet_ids:
            params["SubnetId"] = spec.subnet_ids[0]
        if spec.security_group_ids:
            params["SecurityGroupIds"] = list(spec.security_group_ids)
        if spec.key_name:
            params["KeyName"] = spec.key_name
        if spec.iam_instance_profile:
            params["IamInstanceProfile"] = {"Name": spec.iam_instance_profile}
        if spec.hibernation:
            params["HibernationOptions"] = {"Configured": True}
        launched = self.ec2(spec, "run_instances", action="launch the machine", **params)["Instances"][0]
        machine = self._running(spec, launched, action="launch the machine")
        machine.provider_data["hibernation_configured"] = spec.hibernation
        return machine

    @staticmethod
    def _tag_list(spec: MachineSpec) -> list[dict]:
        tags = {**spec.tags, **spec.tag_set, "orchestrio:operation_id": str(spec.operation_id or ""), "Name": spec.instance_id}
        return [{"Key": key, "Value": str(value)} for key, value in tags.items()]

    @staticmethod
    def _client_token(spec: MachineSpec) -> str:
        return f"orchestrio-{spec.instance_pk}-{spec.operation_id}"[:64]

    # --- EC2 Fleet and Spot Fleet ----------------------------------------------------------

    def _create_with_fleet(self, spec: MachineSpec) -> Machine:
        """Launch the instance's one machine with CreateFleet (type `instant`) or RequestSpotFleet
        (type `request`, one-time), from a launch template made for this launch: the same user
        data, tags, IMDSv2 and network settings as RunInstances, one override per machine type
        (and subnet) with its weight, and a target capacity of 1 split on-demand/spot. The
        template is deleted once the fleet has answered; a Spot Fleet request is cancelled once
        its machine runs (keeping the machine), so no fleet outlives the launch."""
        hibernation = spec.hibernation and spec.on_demand_percentage == 100  # on-demand machines only
        template = self._launch_template(spec, hibernation=hibernation)
        try:
            if spec.provider_api == "EC2Fleet":
                instance_id, facts = self._launch_ec2_fleet(spec, template)
            else:
                instance_id, facts = self._launch_spot_fleet(spec, template)
        finally:
            self._delete_launch_template(spec, template)
        machine = self._running(spec, {"InstanceId": instance_id}, action="launch the machine")
        machine.provider_data.update(facts, hibernation_configured=hibernation)
        return machine

    def _launch_template(self, spec: MachineSpec, *, hibernation: bool, name: str = "", tag_list: list[dict] | None = None) -> str:
        name = name or self._client_token(spec)
        tag_list = tag_list if tag_list is not None else self._tag_list(spec)
        data = {
            "ImageId": spec.image_id,
            "UserData": base64.b64encode(render_user_data(spec)).decode(),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list}, {"ResourceType": "volume", "Tags": tag_list}],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        }
        if spec.security_group_ids:
            data["SecurityGroupIds"] = list(spec.security_group_ids)
        if spec.key_name:
            data["KeyName"] = spec.key_name
        if spec.iam_instance_profile:
            data["IamInstanceProfile"] = {"Name": spec.iam_instance_profile}
        if hibernation:
            data["HibernationOptions"] = {"Configured": True}
        try:
            self.client("ec2", spec.region).create_launch_template(LaunchTemplateName=name, ClientToken=name, LaunchTemplateData=data)
        except ClientError as exc:
            # A retried launch whose first attempt made the template (and died before deleting it).
            if exc.response.get("Error", {}).get("Code") != "InvalidLaunchTemplateName.AlreadyExistsException":
                raise translate(exc, action="create the launch template", spec=spec) from None
        except BotoCoreError as exc:
            raise translate(exc, action="create the launch template", spec=spec) from None
        return name

    def _delete_launch_template(self, spec: MachineSpec, name: str) -> None:
        try:
            self.ec2(spec, "delete_launch_template", action="delete the launch template", LaunchTemplateName=name)
        except ProviderError as exc:  # a leftover template costs nothing; the launch stands
            logger.warning("could not delete launch template %s for %s: %s", name, spec.instance_id, exc.message)

    @staticmethod
    def _machine_types(spec: MachineSpec) -> list[tuple[str, int]]:
        return list(spec.machine_types) or [(spec.instance_type, 1)]

    def _overrides(self, spec: MachineSpec) -> list[dict]:
        """One override per machine type and subnet (every subnet: the fleet may use any zone)."""
        subnets = list(spec.subnet_ids) or [None]
        overrides = []
        for instance_type, weight in self._machine_types(spec):
            for subnet in subnets:
                override = {"InstanceType": instance_type, "WeightedCapacity": float(weight)}
                if subnet:
                    override["SubnetId"] = subnet
                overrides.append(override)
        return overrides

    @staticmethod
    def _split(spec: MachineSpec, capacity: int = 1) -> tuple[int, int]:
        """(on-demand, spot) of a capacity: on-demand rounded up, so 1–100 % on one machine is on-demand."""
        on_demand = math.ceil(capacity * spec.on_demand_percentage / 100)
        return on_demand, capacity - on_demand

    def _no_capacity(self, spec: MachineSpec, api: str, errors: list[dict]) -> ProviderError:
        """No machine from a fleet, as a typed error: `provider_capacity` naming the types, the
        region and AWS's errors (the first of each code) when they are about capacity or say
        nothing; else the first other error, typed like any AWS error."""
        found = [(e.get("ErrorCode") or e.get("Code") or "", e.get("ErrorMessage") or e.get("Message") or "") for e in errors]
        other = [(code, message) for code, message in found if code and code not in FLEET_CAPACITY]
        if other:
            code, message = other[0]
            return translate(ClientError({"Error": {"Code": code, "Message": message}}, api), action=f"launch the machine with {api}", spec=spec)
        details = list(dict.fromkeys(f"{code}: {message}" if message else code for code, message in found if code or message))
        because = f" ({'; '.join(details)})" if details else ""
        types = ", ".join(name for name, _ in self._machine_types(spec))
        where = f" in {spec.region}" if spec.region else ""
        advice = "add machine types or subnets" + (", raise on_demand_percentage" if spec.on_demand_percentage < 100 else "") + ", or retry later"
        return ProviderError(ErrorCode.PROVIDER_CAPACITY, f"{api} launched no machine: AWS has no capacity for {types}{where} right now{because}; {advice}")

    def _launch_ec2_fleet(self, spec: MachineSpec, template: str) -> tuple[str, dict]:
        on_demand, spot = self._split(spec)
        strategy = spec.allocation_strategy or "price-capacity-optimized"
        answer = self.ec2(
            spec, "create_fleet", action="launch the machine with EC2 Fleet",
            Type="instant",
            ClientToken=self._client_token(spec),
            LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {"LaunchTemplateName": template, "Version": "$Latest"}, "Overrides": self._overrides(spec)}],
            TargetCapacitySpecification={
                "TotalTargetCapacity": 1, "OnDemandTargetCapacity": on_demand, "SpotTargetCapacity": spot,
                "DefaultTargetCapacityType": "on-demand" if on_demand else "spot",
            },
            SpotOptions={"AllocationStrategy": strategy},
            OnDemandOptions={"AllocationStrategy": "lowest-price"},
            TagSpecifications=[{"ResourceType": "fleet", "Tags": self._tag_list(spec)}],
        )  # fmt: skip
        launched = [(instance_id, group) for group in answer.get("Instances", []) for instance_id in group.get("InstanceIds", [])]
        if not launched:
            raise self._no_capacity(spec, "EC2 Fleet", answer.get("Errors", []))
        (instance_id, group), extra = launched[0], [i for i, _ in launched[1:]]
        if extra:  # one unit of capacity is one machine with whole weights; never keep more
            self.ec2(spec, "terminate_instances", action="terminate extra fleet machines", InstanceIds=extra)
        facts = {"provider_api": "EC2Fleet", "fleet_id": answer.get("FleetId", ""), "lifecycle": group.get("Lifecycle", "on-demand")}
        return instance_id, facts

    # --- a fleet batch: one fleet call for a request's machines ------------------------------

    @staticmethod
    def _batch_token(spec: MachineSpec) -> str:
        return f"orchestrio-{spec.fleet_request}"[:64]

    @staticmethod
    def _batch_tag_list(spec: MachineSpec) -> list[dict]:
        """A batch's machines carry no instance yet: the tenant and the request (what the IAM
        policy's batch statements key on), until each is tagged with its instance."""
        tags = {**spec.tags, "orchestrio:tenant_id": spec.tenant_id, "orchestrio:fleet_request": spec.fleet_request, "Name": spec.fleet_request}
        return [{"Key": key, "Value": str(value)} for key, value in tags.items()]

    def _batch_machines(self, spec: MachineSpec) -> list[dict]:
        filters = [
            {"Name": "tag:orchestrio:fleet_request", "Values": [spec.fleet_request]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        reservations = self.ec2(spec, "describe_instances", action="look up the batch's machines", Filters=filters)["Reservations"]
        return [raw for reservation in reservations for raw in reservation["Instances"]]

    def launch_batch(self, spec: MachineSpec, *, count: int) -> BatchLaunch:
        """`count` machines in one CreateFleet (type instant) or RequestSpotFleet call, from one
        launch template whose user data carries only the batch's bootstrap identity (the tenant,
        the request, the hash of a key the batch's machines share). The call's ClientToken is the
        request's, and a live machine already tagged with the request means an earlier attempt
        launched: those are returned and nothing is launched again."""
        if not spec.image_id:
            raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, "the blueprint has no image_id (an AMI id or resolve:ssm:…); AWS instances need one")
        hibernation = spec.hibernation and spec.on_demand_percentage == 100  # on-demand machines only
        found = self._batch_machines(spec)
        if found and spec.provider_api == "EC2Fleet":
            logger.info("fleet request %s already has %d machines: not launching again", spec.fleet_request, len(found))
            facts = {"provider_api": "EC2Fleet", "hibernation_configured": hibernation}
            machines = [self._batch_machine(raw, {**facts, "lifecycle": raw.get("InstanceLifecycle", "on-demand")}) for raw in found]
            lost = [] if len(found) >= count else [f"an earlier attempt's fleet launched {len(found)} of {count} machines (its answer was lost)"]
            return BatchLaunch(machines=machines, errors=lost)
        template = self._launch_template(spec, hibernation=hibernation, name=self._batch_token(spec), tag_list=self._batch_tag_list(spec))
        try:
            if spec.provider_api == "EC2Fleet":
                launch = self._batch_ec2_fleet(spec, template, count)
            else:
                launch = self._batch_spot_fleet(spec, template, count)
        finally:
            self._delete_launch_template(spec, template)
        for machine in launch.machines:
            machine.provider_data["hibernation_configured"] = hibernation
        return launch

    def _batch_machine(self, raw: dict, facts: dict) -> Machine:
        return Machine(provider_instance_id=raw["InstanceId"], state=MachineState.PENDING, instance_type=raw.get("InstanceType", ""), provider_data=facts)

    def _batch_ec2_fleet(self, spec: MachineSpec, template: str, count: int) -> BatchLaunch:
        """CreateFleet for `count` units. An instance is one machine: when the weights let AWS fill
        the units with fewer machines (and AWS reports no error), the missing ones are asked for
        again, each call with a ClientToken of its own (the request's, then `-<machines so far>`),
        until there are `count` or AWS has no more."""
        machines: list[Machine] = []
        fleet_id, errors = "", []
        while len(machines) < count:
            token = self._batch_token(spec) if not machines else f"{self._batch_token(spec)[:54]}-{len(machines)}"
            try:
                answer = self._create_batch_fleet(spec, template, count - len(machines), token)
            except ProviderError as exc:
                if not machines:
                    raise
                errors = [exc.message]  # what the first call launched is the batch's all the same
                break
            fleet_id = fleet_id or answer.get("FleetId", "")
            got = [
                self._batch_machine({"InstanceId": instance_id, "InstanceType": group.get("InstanceType", "")},
                                    {"provider_api": "EC2Fleet", "fleet_id": answer.get("FleetId", ""), "lifecycle": group.get("Lifecycle", "on-demand")})
                for group in answer.get("Instances", []) for instance_id in group.get("InstanceIds", [])
            ]  # fmt: skip
            if not machines and not got:  # nothing at all: typed like a single launch's (capacity, or a bad subnet…)
                raise self._no_capacity(spec, "EC2 Fleet", answer.get("Errors", []))
            machines += got
            if len(machines) < count and (answer.get("Errors") or not got):
                errors = self._batch_reasons(spec, "EC2 Fleet", answer.get("Errors", []), len(machines), count)
                break
        return BatchLaunch(machines=machines, errors=errors, fleet_id=fleet_id)

    def _create_batch_fleet(self, spec: MachineSpec, template: str, capacity: int, token: str) -> dict:
        on_demand, spot = self._split(spec, capacity)
        return self.ec2(
            spec, "create_fleet", action="launch the batch with EC2 Fleet",
            Type="instant",
            ClientToken=token,
            LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {"LaunchTemplateName": template, "Version": "$Latest"}, "Overrides": self._overrides(spec)}],
            TargetCapacitySpecification={
                "TotalTargetCapacity": capacity, "OnDemandTargetCapacity": on_demand, "SpotTargetCapacity": spot,
                "DefaultTargetCapacityType": "on-demand" if on_demand else "spot",
            },
            SpotOptions={"AllocationStrategy": spec.allocation_strategy or "price-capacity-optimized"},
            OnDemandOptions={"AllocationStrategy": "lowest-price"},
            TagSpecifications=[{"ResourceType": "fleet", "Tags": self._batch_tag_list(spec)}],
        )  # fmt: skip

    def _batch_reasons(self, spec: MachineSpec, api: str, errors: list[dict], launched: int, count: int) -> list[str]:
        """Why a batch got fewer machines than it asked for: AWS's own errors (the first of each),
        or, with none, what the weights did (a type of weight w fills w units of capacity)."""
        found = [(e.get("ErrorCode") or e.get("Code") or "", e.get("ErrorMessage") or e.get("Message") or "") for e in errors]
        reasons = list(dict.fromkeys(f"{code}: {message}" if message else code for code, message in found if code or message))
        if not reasons and any(weight > 1 for _, weight in self._machine_types(spec)) and api.startswith("Spot Fleet"):
            reasons = [f"AWS filled the {count} units of capacity with {launched} machines (a type of weight w counts w units); an instance is one machine"]
        return reasons or [f"{api} launched {launched} of {count} machines without saying why"]

    def _find_spot_fleet(self, spec: MachineSpec) -> str:
        """The batch's Spot Fleet request if an earlier attempt made it (by its ClientToken)."""
        token, next_token = self._batch_token(spec), None
        while True:
            kwargs = {"NextToken": next_token} if next_token else {}
            page = self.ec2(spec, "describe_spot_fleet_requests", action="look up the batch's Spot Fleet request", **kwargs)
            for config in page.get("SpotFleetRequestConfigs", []):
                if config.get("SpotFleetRequestConfig", {}).get("ClientToken") == token:
                    return config["SpotFleetRequestId"]
            next_token = page.get("NextToken")
            if not next_token:
                return ""

    def _batch_spot_fleet(self, spec: MachineSpec, template: str, count: int) -> BatchLaunch:
        request_id = self._find_spot_fleet(spec)
        if not request_id:
            on_demand, _ = self._split(spec, count)
            request_id = self.ec2(
                spec, "request_spot_fleet", action="launch the batch with Spot Fleet",
                SpotFleetRequestConfig={
                    "IamFleetRole": self._spot_fleet_role(spec),
                    "AllocationStrategy": spec.allocation_strategy or "priceCapacityOptimized",
                    "OnDemandAllocationStrategy": "lowestPrice",
                    "TargetCapacity": count,
                    "OnDemandTargetCapacity": on_demand,
                    "Type": "request",
                    "ClientToken": self._batch_token(spec),
                    "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": {"LaunchTemplateName": template, "Version": "$Latest"}, "Overrides": self._overrides(spec)}],
                    "TagSpecifications": [{"ResourceType": "spot-fleet-request", "Tags": self._batch_tag_list(spec)}],
                },
            )["SpotFleetRequestId"]  # fmt: skip
        try:
            return self._follow_batch_spot_fleet(spec, request_id, count)
        except ProviderError:
            # AWS stopped answering about it: cancel the request and whatever it launched, so no
            # machine is left that the batch does not know of.
            self._cancel_spot_fleet(spec, request_id, terminate=True)
            raise

    def _follow_batch_spot_fleet(self, spec: MachineSpec, request_id: str, count: int) -> BatchLaunch:
        deadline = time.monotonic() + settings.AWS_FLEET_WAIT_SECONDS
        errors: list[str] = []
        history: list[dict] = []
        while True:
            active = self.ec2(spec, "describe_spot_fleet_instances", action="follow the Spot Fleet request", SpotFleetRequestId=request_id).get("ActiveInstances", [])
            if len(active) >= count:
                break
            configs = self.ec2(spec, "describe_spot_fleet_requests", action="follow the Spot Fleet request", SpotFleetRequestIds=[request_id]).get("SpotFleetRequestConfigs", [])
            config = configs[0] if configs else {}
            state, activity = config.get("SpotFleetRequestState", "gone"), config.get("ActivityStatus", "")
            target = config.get("SpotFleetRequestConfig", {}).get("TargetCapacity", count)
            if active and config.get("SpotFleetRequestConfig", {}).get("FulfilledCapacity", 0) >= target:
                errors = self._batch_reasons(spec, f"Spot Fleet request {request_id}", [], len(active), count)
                break  # the weights filled the capacity with fewer machines
            if state in ("cancelled", "cancelled_terminating", "cancelled_running", "failed", "gone") or activity == "error" or time.monotonic() >= deadline:
                history = self._spot_fleet_errors(spec, request_id)
                if history or time.monotonic() < deadline:
                    errors = self._batch_reasons(spec, f"Spot Fleet request {request_id}", history, len(active), count)
                else:
                    errors = [f"the Spot Fleet request {request_id} had {len(active)} of {count} machines after {settings.AWS_FLEET_WAIT_SECONDS}s (state {state}, activity {activity or 'none'})"]
                break
            time.sleep(FLEET_POLL_SECONDS)
        # What it launched is the batch's now; the one-time request must not outlive the launch.
        # Looked at once more after the cancel: a machine launched meanwhile is the batch's too.
        self._cancel_spot_fleet(spec, request_id, terminate=False)
        active = self.ec2(spec, "describe_spot_fleet_instances", action="follow the Spot Fleet request", SpotFleetRequestId=request_id).get("ActiveInstances", [])
        if not active:
            if history:
                raise self._no_capacity(spec, f"Spot Fleet request {request_id}", history)
            raise ProviderError(ErrorCode.PROVIDER_CAPACITY, f"{'; '.join(errors)}; add machine types or subnets, raise on_demand_percentage, or retry later")
        machines = [
            self._batch_machine(item, {"provider_api": "SpotFleet", "spot_fleet_request_id": request_id, "lifecycle": "spot" if item.get("SpotInstanceRequestId") else "on-demand"})
            for item in active
        ]
        return BatchLaunch(machines=machines, errors=[] if len(machines) >= count else errors, fleet_id=request_id)

    def _tag_batch_machine(self, spec: MachineSpec, raw: dict) -> None:
        """A batch's machine becomes its instance's: CreateTags with the instance's tags on the
        machine and its volumes (the IAM policy allows it on machines tagged with a request only).
        Idempotent: a re-run finds the tags there and sends nothing."""
        tags = {tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])}
        wanted = self._tag_list(spec)
        if all(tags.get(tag["Key"]) == tag["Value"] for tag in wanted):
            return
        volumes = [m["Ebs"]["VolumeId"] for m in raw.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("VolumeId")]
        self.ec2(spec, "create_tags", action="tag the machine with its instance", Resources=[raw["InstanceId"], *volumes], Tags=wanted)
        raw["Tags"] = [{"Key": k, "Value": v} for k, v in {**tags, **{t["Key"]: t["Value"] for t in wanted}}.items()]

    def unclaimed_batch_machines(self, region: str, fleet_request: str) -> list[str]:
        """The live machines a batch launched that no instance claimed (not tagged with one)."""
        filters = [
            {"Name": "tag:orchestrio:fleet_request", "Values": [fleet_request]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        reservations = self.call("ec2", region, "describe_instances", action="look up the batch's machines", Filters=filters)["Reservations"]
        return [
            raw["InstanceId"] for reservation in reservations for raw in reservation["Instances"]
            if not any(tag["Key"] == "orchestrio:instance_pk" for tag in raw.get("Tags", []))
        ]  # fmt: skip

    def terminate_machines(self, region: str, machine_ids: list[str]) -> None:
        if machine_ids:
            self.call("ec2", region, "terminate_instances", action="terminate the batch's extra machines", InstanceIds=list(machine_ids))

    def _spot_fleet_role(self, spec: MachineSpec) -> str:
        role = settings.AWS_SPOT_FLEET_ROLE
        if role.startswith("arn:"):
            return role
        account = self.call("sts", spec.region, "get_caller_identity", action="find the AWS account for the Spot Fleet role", spec=spec)["Account"]
        return f"arn:aws:iam::{account}:role/{role}"

    def _launch_spot_fleet(self, spec: MachineSpec, template: str) -> tuple[str, dict]:
        on_demand, _ = self._split(spec)
        strategy = spec.allocation_strategy or "priceCapacityOptimized"
        answer = self.ec2(
            spec, "request_spot_fleet", action="launch the machine with Spot Fleet",
            SpotFleetRequestConfig={
                "IamFleetRole": self._spot_fleet_role(spec),
                "AllocationStrategy": strategy,
                "OnDemandAllocationStrategy": "lowestPrice",
                "TargetCapacity": 1,
                "OnDemandTargetCapacity": on_demand,
                "Type": "request",
                "ClientToken": self._client_token(spec),
                "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": {"LaunchTemplateName": template, "Version": "$Latest"}, "Overrides": self._overrides(spec)}],
                "TagSpecifications": [{"ResourceType": "spot-fleet-request", "Tags": self._tag_list(spec)}],
            },
        )  # fmt: skip
        request_id = answer["SpotFleetRequestId"]
        try:
            instance_id, lifecycle = self._await_spot_fleet(spec, request_id)
        except ProviderError:
            # Nothing came (or AWS refused): cancel the request and whatever it may still launch.
            self._cancel_spot_fleet(spec, request_id, terminate=True)
            raise
        # The machine is ours now; the one-time request must not stay around (or replace it).
        self._cancel_spot_fleet(spec, request_id, terminate=False)
        return instance_id, {"provider_api": "SpotFleet", "spot_fleet_request_id": request_id, "lifecycle": lifecycle}

    def _await_spot_fleet(self, spec: MachineSpec, request_id: str) -> tuple[str, str]:
        """Poll the request until it has a machine, for at most AWS_FLEET_WAIT_SECONDS; a request
        AWS gave up on (cancelled, failed, or an error in its history) fails at once."""
        deadline = time.monotonic() + settings.AWS_FLEET_WAIT_SECONDS
        while True:
            active = self.ec2(spec, "describe_spot_fleet_instances", action="follow the Spot Fleet request", SpotFleetRequestId=request_id).get("ActiveInstances", [])
            if active:
                lifecycle = "spot" if active[0].get("SpotInstanceRequestId") else "on-demand"
                return active[0]["InstanceId"], lifecycle
            configs = self.ec2(spec, "describe_spot_fleet_requests", action="follow the Spot Fleet request", SpotFleetRequestIds=[request_id]).get("SpotFleetRequestConfigs", [])
            state = configs[0].get("SpotFleetRequestState", "") if configs else "gone"
            activity = configs[0].get("ActivityStatus", "") if configs else ""
            if state in ("cancelled", "cancelled_terminating", "cancelled_running", "failed", "gone") or activity == "error" or time.monotonic() >= deadline:
                errors = self._spot_fleet_errors(spec, request_id)
                if not errors and time.monotonic() >= deadline:
                    raise ProviderError(
                        ErrorCode.PROVIDER_CAPACITY,
                        f"the Spot Fleet request {request_id} got no machine within {settings.AWS_FLEET_WAIT_SECONDS}s (state {state}, activity {activity or 'none'}); "
                        "add machine types or subnets, raise on_demand_percentage, or retry later",
                    )
                raise self._no_capacity(spec, f"Spot Fleet request {request_id}", errors)
            time.sleep(FLEET_POLL_SECONDS)

    def _spot_fleet_errors(self, spec: MachineSpec, request_id: str) -> list[dict]:
        """The request's error events, as {ErrorCode, ErrorMessage} (its history says which)."""
        try:
            history = self.ec2(
                spec, "describe_spot_fleet_request_history", action="read the Spot Fleet request's history",
                SpotFleetRequestId=request_id, StartTime="1970-01-01T00:00:00Z", EventType="error",
            )  # fmt: skip
        except ProviderError:
            return []
        errors = []
        for record in history.get("HistoryRecords", []):
            description = record.get("EventInformation", {}).get("EventDescription", "")
            subtype = record.get("EventInformation", {}).get("EventSubType", "")
            code = next((c for c in CAPACITY if c in description), "") or SPOT_FLEET_EVENTS.get(subtype, subtype)
            errors.append({"ErrorCode": code, "ErrorMessage": description})
        return errors

    def _cancel_spot_fleet(self, spec: MachineSpec, request_id: str, *, terminate: bool) -> None:
        try:
            self.ec2(spec, "cancel_spot_fleet_requests", action="cancel the Spot Fleet request", SpotFleetRequestIds=[request_id], TerminateInstances=terminate)
        except ProviderError as exc:
            logger.warning("could not cancel Spot Fleet request %s for %s: %s", request_id, spec.instance_id, exc.message)

    def _require(self, spec: MachineSpec, *, action: str) -> dict:
        raw = self._find(spec)
        if raw is None or raw["State"]["Name"] in ("shutting-down", "terminated"):
            raise ProviderError(ErrorCode.MACHINE_VANISHED, f"cannot {action}: AWS has no live machine for {spec.instance_id} anymore")
        return raw

    def start(self, spec: MachineSpec) -> Machine:
        raw = self._require(spec, action="start")
        if raw["State"]["Name"] == "stopping":
            raw = self._wait(spec, raw["InstanceId"], "stopped", action="start (waiting for the stop to finish)")
        if raw["State"]["Name"] != "running":
            self.ec2(spec, "start_instances", action="start the machine", InstanceIds=[raw["InstanceId"]])
        return self._running(spec, raw, action="start the machine")

    def _stop(self, spec: MachineSpec, *, hibernate: bool, action: str) -> Machine:
        raw = self._require(spec, action=action)
        if raw["State"]["Name"] in ("pending", "running"):
            kwargs = {"Hibernate": True} if hibernate else {}
            self.ec2(spec, "stop_instances", action=action, InstanceIds=[raw["InstanceId"]], **kwargs)
        raw = self._wait(spec, raw["InstanceId"], "stopped", action=action)
        return self._machine(raw, spec)

    def stop(self, spec: MachineSpec) -> Machine:
        return self._stop(spec, hibernate=False, action="stop the machine")

    def suspend(self, spec: MachineSpec) -> Machine:
        hibernate = spec.hibernation and spec.provider_data.get("hibernation_configured", False)
        try:
            machine = self._stop(spec, hibernate=hibernate, action="hibernate the machine" if hibernate else "stop the machine")
        except ProviderError as exc:
            if not hibernate or exc.code != ErrorCode.PROVIDER_INVALID_REQUEST:
                raise
            logger.info("hibernation refused for %s (%s); stopping instead", spec.instance_id, exc.message)
            hibernate = False
            machine = self._stop(spec, hibernate=False, action="stop the machine")
        machine.provider_data["hibernated"] = hibernate
        return machine

    def resume(self, spec: MachineSpec) -> Machine:
        return self.start(spec)

    def resize(self, spec: MachineSpec, *, instance_type: str, restart: bool) -> Machine:
        raw = self._require(spec, action="resize")
        if raw["State"]["Name"] != "stopped":
            # EC2 changes the type of a stopped instance only.
            machine = self._stop(spec, hibernate=False, action="stop the machine to resize it")
            raw = {"InstanceId": machine.provider_instance_id}
        self.ec2(spec, "modify_instance_attribute", action=f"resize the machine to {instance_type}", InstanceId=raw["InstanceId"], InstanceType={"Value": instance_type})
        if restart:
            self.ec2(spec, "start_instances", action="start the resized machine", InstanceIds=[raw["InstanceId"]])
            return self._running(spec, raw, action="start the resized machine")
        raw = self._wait(spec, raw["InstanceId"], "stopped", action="resize the machine")
        return self._machine(raw, spec)

    def destroy(self, spec: MachineSpec) -> None:
        raw = self._find(spec)
        if raw is not None and raw["State"]["Name"] != "terminated":
            self.ec2(spec, "terminate_instances", action="terminate the machine", InstanceIds=[raw["InstanceId"]])
            self._wait(spec, raw["InstanceId"], "terminated", action="terminate the machine")
        self._dns_delete(spec)

    def describe(self, spec: MachineSpec) -> Machine:
        raw = self._find(spec)
        if raw is None:
            return Machine(provider_instance_id=spec.provider_instance_id, state=MachineState.MISSING)
        return self._machine(raw, spec)

    def list_machines(self, region: str) -> list[Machine]:
        filters = [{"Name": "tag-key", "Values": ["orchestrio:instance_pk"]}, {"Name": "instance-state-name", "Values": LIVE_STATES}]
        machines, token = [], None
        while True:
            kwargs = {"Filters": filters, "MaxResults": 500}
            if token:
                kwargs["NextToken"] = token
            page = self.call("ec2", region, "describe_instances", action=f"list machines in {region}", **kwargs)
            machines += [self._machine(raw) for reservation in page["Reservations"] for raw in reservation["Instances"]]
            token = page.get("NextToken")
            if not token:
                return machines

    def destroy_orphan(self, machine: Machine, region: str) -> None:
        self.call("ec2", region, "terminate_instances", action="terminate an orphan machine", InstanceIds=[machine.provider_instance_id])

    # --- tasks (SSM Run Command) -----------------------------------------------------------

    def _ssm_target(self, spec: MachineSpec) -> str:
        raw = self._require(spec, action="run a task")
        if raw["State"]["Name"] != "running":
            raise ProviderError(ErrorCode.MACHINE_VANISHED, f"the machine is {raw['State']['Name']}, not running")
        return raw["InstanceId"]

    def run_task(self, spec: MachineSpec, task: TaskRequest) -> str:
        instance_id = self._ssm_target(spec)
        response = self.call(
            "ssm", spec.region, "send_command", action="send the task", spec=spec,
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Comment=task_comment(task),
            Parameters={"commands": [task_command(task)], "executionTimeout": [str(task.timeout_seconds)]},
            TimeoutSeconds=max(30, min(task.timeout_seconds, 2592000)),
        )  # fmt: skip
        return response["Command"]["CommandId"]

    def find_task(self, spec: MachineSpec, task: TaskRequest) -> str | None:
        instance_id = self._ssm_target(spec)
        comment = task_comment(task)
        token = None
        while True:
            kwargs = {"InstanceId": instance_id, "MaxResults": 50}
            if token:
                kwargs["NextToken"] = token
            page = self.call("ssm", spec.region, "list_commands", action="look up the task", spec=spec, **kwargs)
            for command in page.get("Commands", []):
                if command.get("Comment") == comment:
                    return command["CommandId"]
            token = page.get("NextToken")
            if not token:
                return None

    def task_status(self, spec: MachineSpec, task: TaskRequest, command_id: str) -> TaskResult:
        instance_id = spec.provider_instance_id or self._ssm_target(spec)
        try:
            result = self.call("ssm", spec.region, "get_command_invocation", action="read the task's status", spec=spec, CommandId=command_id, InstanceId=instance_id)
        except ProviderError as exc:
            if "InvocationDoesNotExist" in exc.message:
                return TaskResult(status="queued", command_id=command_id)
            raise
        status = SSM_STATUSES.get(result.get("Status", ""), "running")
        code = result.get("ResponseCode")
        return TaskResult(
            status=status,
            command_id=command_id,
            exit_code=code if code is not None and code >= 0 and status not in ("queued", "running") else None,
            stdout=result.get("StandardOutputContent", ""),
            stderr=result.get("StandardErrorContent", ""),
        )

    def cancel_task(self, spec: MachineSpec, task: TaskRequest, command_id: str) -> None:
        self.call("ssm", spec.region, "cancel_command", action="cancel the task", spec=spec, CommandId=command_id)
