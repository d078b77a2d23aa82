"""Functions on an EC2 function instance (FUNCTIONS_REGION on AWS: the instance backend), with moto
for EC2 and a real agent on loopback standing in for the machine's (moto runs none): the first
deploy launches the tenant's function instance from the "Function host" blueprint, the control
plane pushes the function host through the agent, and the version runs there — sandboxed by
bubblewrap as on a real machine, where the host runs as root. The function instance sleeps (an EC2
stop) and the next invocation wakes it."""

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

from instances.models import Blueprint, Instance
from instances.providers.aws import AwsProvider
from orchestrio import crypto

from ..helpers import BackgroundWorker, run_jobs
from ..instances.aws_fixtures import aws, machines  # noqa: F401 - fixtures
from .conftest import create

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws")]

AGENT = Path(__file__).resolve().parents[2] / "instances" / "agent.py"

# What a handler on the machine tries: the agent's state (the key's hash, from which the host's
# and the gateway's keys derive), the host's own files, and the agent's and the host's ports.
ATTACKER = """
import os, socket

def handler(request):
    probe, reached = request["query"], []
    for path in (probe["state"], probe["state"] + "/agent-key.sha256", probe["state"] + "/app/host.py"):
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                open(path, "rb").read(1)
            reached.append(path)
        except OSError:
            pass
    for host, port in ((probe["host"], int(probe["agent_port"])), ("127.0.0.1", int(probe["app_port"]))):
        try:
            socket.create_connection((host, port), timeout=1).close()
            reached.append(port)
        except OSError:
            pass
    return {"reached": reached, "uid": os.getuid()}
"""


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@pytest.fixture
def machine_agent(tmp_path, monkeypatch):
    """The function instance's machine, played by a real agent on 127.0.0.31 (as its user data
    starts it, with the instance's key hash); the provider reports the machine at its address."""
    where: dict = {}
    real_machine = AwsProvider._machine

    def located(raw, spec=None):
        machine = real_machine(raw, spec)
        if where:
            machine.ip_address, machine.port = where["host"], where["port"]
        return machine

    monkeypatch.setattr(AwsProvider, "_machine", staticmethod(located))
    procs = []

    class Machine:
        state = tmp_path / "state"

        def start(self, instance: Instance) -> dict:
            host, port, app_port = "127.0.0.31", _free_port("127.0.0.31"), _free_port("127.0.0.1")
            key_hash = hashlib.sha256(crypto.decrypt(instance.agent_key_encrypted).encode()).hexdigest()
            argv = [
                sys.executable, "-I", str(AGENT), "--state-dir", str(self.state), "--host", host, "--port", str(port),
                "--tenant-id", instance.tenant_id, "--instance-id", instance.instance_id, "--app-port", str(app_port),
            ]  # fmt: skip
            procs.append(subprocess.Popen(argv, env={"ORCHESTRIO_AGENT_KEY_SHA256": key_hash, "PATH": "/usr/bin:/bin"}, stderr=subprocess.DEVNULL))
            for _ in range(200):
                try:
                    httpx.get(f"http://{host}:{port}/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            where.update(host=host, port=port, app_port=app_port)
            return where

    yield Machine()
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


@pytest.fixture
def on_aws(settings, aws):
    settings.FUNCTIONS_REGION = "iad"  # FUNCTIONS_BACKEND auto: an AWS region → function instances
    settings.FUNCTIONS_HOST_IDLE_SECONDS = 0
    Blueprint.objects.filter(tenant=None, name="Function host").update(
        image_id=aws.image, subnet_ids=[aws.subnet], security_group_ids=[aws.group], iam_instance_profile="orchestrio-ssm"
    )


@pytest.mark.django_db(transaction=True)
def test_a_function_runs_on_an_ec2_function_instance_sandboxed_and_wakes_it(api, client, aws, on_aws, machine_agent, settings):
    function = create(api, "on-ec2", code=ATTACKER)
    response = api.post(f"functions/{function['function_id']}/deploy")
    assert response.status_code == 201 and response.json()["status"] == "building", response.content
    host = Instance.objects.get(managed_by="functions")
    assert host.provider == "aws" and host.region_id == "iad" and host.state == "pending"

    settings.INSTANCE_READY_CHECK = True  # the create waits for the machine's agent to answer
    where = machine_agent.start(host)
    run_jobs()  # the create (moto launches the machine), then the deploy job
    host.refresh_from_db()
    assert host.state == "running", host.error_message

    (raw,) = machines(aws.ec2, "running")
    assert raw["ImageId"] == aws.image
    script = gzip.decompress(base64.b64decode(aws.ec2.describe_instance_attribute(InstanceId=raw["InstanceId"], Attribute="userData")["UserData"]["Value"])).decode()
    assert "dnf install -y python3.11 nodejs20 bubblewrap" in script  # the blueprint's own: the runtimes and the sandbox
    assert "--app-port 18080" in script

    version = api.get(f"functions/{function['function_id']}/versions").json()["results"][0]
    assert version["status"] == "built", version
    probe = {"state": str(machine_agent.state), "host": where["host"], "agent_port": where["port"], "app_port": where["app_port"]}
    answer = client.get("/fn/on-ec2/probe", probe)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    # As root with bubblewrap (a real machine's case, and this test's): its own uid, no view of
    # the agent's files, no network to the agent or the host.
    assert body["reached"] == [] and body["uid"] != 0, body
    status = httpx.get(f"http://{where['host']}:{where['port']}/health", timeout=5).json()  # the host's, open
    assert status["isolation"] == "bwrap" and "python3.11" in status["runtimes"]

    # Asleep (an EC2 stop), then woken by the next invocation.
    assert api.post(f"instances/{host.instance_id}/sleep").status_code == 202
    run_jobs()
    assert Instance.objects.get(pk=host.pk).state == "asleep" and machines(aws.ec2, "stopped")
    with BackgroundWorker(interval=0.05):
        answer = client.get("/fn/on-ec2/again", probe)
    assert answer.status_code == 200, answer.content
    assert Instance.objects.get(pk=host.pk).state == "running" and machines(aws.ec2, "running")
    assert json.loads(api.get(f"functions/{function['function_id']}").content)["function_instance_id"] == host.instance_id
