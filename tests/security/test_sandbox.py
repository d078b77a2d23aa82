"""Issue 14, finding 1: a tenant's code runs sandboxed and reaches neither the host, nor the control
plane, nor another tenant's instance.

Each test attacks as a tenant would: through a blueprint `command` (the tenant's own program) or a
task (a script run inside the instance), never by calling the provider's internals.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.db import connection

from instances.models import Blueprint, Instance
from instances.providers import sandbox

from ..helpers import assert_validation_error, local_instance, run_in_instance, run_jobs
from ..instances.conftest import live  # noqa: F401 - fixture

SECRET = "sk_live_tenant-b-secret-7f3a91"

# The attacker's program: tries everything it is given, writes what happened to $HOME/attack.json,
# then serves HTTP on $PORT like any product (so the instance comes up).
ATTACK = r"""
import json, os, signal, socket, sys, http.server
targets = json.loads(sys.argv[1])
results = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}

def attempt(name, fn):
    try:
        results[name] = {"ok": True, "value": repr(fn())[:300]}
    except Exception as exc:
        results[name] = {"ok": False, "error": type(exc).__name__}

for path in targets["read"]:
    attempt("read " + path, lambda p=path: open(p, "rb").read(200))
for path in targets["list"]:
    attempt("list " + path, lambda p=path: os.listdir(p))
for port in targets["ports"]:
    attempt("connect 127.0.0.1:%d" % port, lambda p=port: socket.create_connection(("127.0.0.1", p), timeout=1).close())
for path in targets["sockets"]:
    def connect_unix(p=path):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(1)
        s.connect(p)
        s.close()
    attempt("connect " + path, connect_unix)
for pid in targets["pids"]:
    attempt("kill %d" % pid, lambda p=pid: os.kill(p, signal.SIGKILL))
attempt("write /usr", lambda: open("/usr/pwned", "w").write("x"))
attempt("write /etc", lambda: open("/etc/pwned", "w").write("x"))
attempt("write /", lambda: open("/pwned", "w").write("x"))
attempt("setuid 0", lambda: os.setuid(0))
attempt("unshare a user namespace", lambda: os.unshare(os.CLONE_NEWUSER))
with open(os.path.join(os.environ["HOME"], "attack.json"), "w") as fh:
    json.dump(results, fh)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "8")
        self.end_headers()
        self.wfile.write(b"attacker")
    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _tree_pids(instance: Instance) -> list[int]:
    record = json.loads((Path(instance.provider_data["dir"]) / "process.json").read_text())
    root = psutil.Process(record["pid"])
    return [root.pid, *(child.pid for child in root.children(recursive=True))]


def _secret_service():
    """A TCP service on the host's loopback, as PostgreSQL, Redis or the admin would be."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    return listener


@pytest.mark.slow
@pytest.mark.sandbox
def test_an_instance_reaches_neither_another_tenant_nor_the_control_plane_nor_the_host(api, other_api):
    # Tenant B: a deployment whose instance holds a secret.
    created = other_api.post("deployments", {"name": "victim", "secrets": {"API_KEY": SECRET}})
    assert created.status_code == 201, created.content
    run_jobs()
    assert other_api.get(f"deployments/{created.json()['id']}").json()["status"] == "active"
    victim = local_instance(created.json()["instance_id"])
    victim_dir = Path(victim.provider_data["dir"])
    victim_pids = _tree_pids(victim)

    service = _secret_service()
    ports = [service.getsockname()[1]]
    for port in (5432, 6379):  # PostgreSQL and Redis, when this host runs them (CI does)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            ports.append(port)
        except OSError:
            pass
    database = connection.settings_dict["NAME"] if connection.vendor == "sqlite" else str(Path(settings.VAR_DIR) / "orchestrio.sqlite3")
    targets = {
        "read": [
            str(victim_dir / "state" / "config.json"), str(victim_dir / "state" / "agent-key.sha256"),
            str(victim_dir / "console.log"), f"/proc/{victim_pids[-1]}/environ",
            *(f"/proc/{pid}/root/run/orchestrio/secrets.json" for pid in victim_pids),
            database, "/etc/shadow", "/etc/hostname", str(Path(settings.BASE_DIR) / "orchestrio" / "settings.py"),
        ],
        "list": [str(settings.VAR_DIR), str(settings.LOCAL_PROVIDER_DIR), str(victim_dir), "/root"],
        "ports": ports,
        "sockets": [str(victim_dir / "agent.sock"), "/var/run/postgresql/.s.PGSQL.5432"],
        "pids": victim_pids,
    }  # fmt: skip

    # Tenant A, the attacker: its own blueprint's command runs the attack.
    blueprint = api.post("blueprints", {"name": "attacker", "command": ["python3", "-c", ATTACK, json.dumps(targets)]})
    assert blueprint.status_code == 201, blueprint.content
    assert api.post("instances", {"instance_id": "attacker-1", "blueprint_name": "attacker"}).status_code == 201
    run_jobs()
    assert api.get("instances/attacker-1").json()["state"] == "running", api.get("instances/attacker-1/logs").json()
    attacker = local_instance("attacker-1")
    results = json.loads((Path(attacker.provider_data["dir"]) / "home" / "attack.json").read_text())
    service.close()

    succeeded = {name: result for name, result in results.items() if isinstance(result, dict) and result["ok"]}
    assert succeeded == {}, f"the attacker got through: {succeeded}"
    assert SECRET not in json.dumps(results)
    # Its own user: not root, not the control plane's, not the victim's.
    own_uid = sandbox.uid_for(attacker.pk)
    assert results["uid"] == results["gid"] == own_uid and results["groups"] in ([], [own_uid])
    assert own_uid not in (0, os.getuid(), sandbox.uid_for(victim.pk))
    assert all(proc.uids().real == own_uid for proc in psutil.Process(_tree_pids(attacker)[0]).children(recursive=True)
               if proc.name() != "bwrap")  # fmt: skip
    # The victim's processes all survived the kill attempts, and it still serves.
    assert all(psutil.pid_exists(pid) for pid in victim_pids)
    assert other_api.get(f"instances/{victim.instance_id}/health").json()["healthy"] is True
    # The attacker's own program is reachable the normal way, through the gateway.
    tunnel = api.client.get("/tunnel/attacker-1/", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert tunnel.status_code == 200 and b"".join(tunnel.streaming_content) == b"attacker"


@pytest.mark.slow
@pytest.mark.sandbox
def test_secrets_are_never_written_to_disk(other_api):
    created = other_api.post("deployments", {"name": "keeper", "secrets": {"API_KEY": SECRET}})
    assert created.status_code == 201, created.content
    run_jobs()
    instance_id = created.json()["instance_id"]
    expected = hashlib.sha256(json.dumps({"API_KEY": SECRET}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def held() -> str:  # the instance has it, in memory (a digest, so no task output carries it)
        return run_in_instance(other_api, instance_id, 'sha256sum "$ORCHESTRIO_SECRETS_FILE"')["stdout"].split()[0]

    assert held() == expected
    # …and a restart loses nothing: the control plane pushes it again.
    other_api.post(f"instances/{instance_id}/restart")
    run_jobs()
    assert held() == expected
    # Every file on disk, the database included, searched by another process: opening and closing
    # the database file here would drop this process's SQLite locks on it (POSIX locks are per
    # process), and a server process could then delete the WAL index under our connections.
    found = subprocess.run(["grep", "-rlaF", "--", SECRET, str(settings.VAR_DIR)], capture_output=True, text=True)
    assert found.returncode == 1 and found.stdout == "", f"the secret is on disk in {found.stdout}"


@pytest.mark.slow
@pytest.mark.sandbox
def test_the_control_plane_never_follows_an_instances_symlinks(api, live, tmp_path):
    """An instance owns its directories and may fill them with symlinks to anything on the host:
    restarting, reconfiguring and destroying it must never write, chmod or delete through them."""
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    os.chmod(tmp_path, 0o755)
    live("linker")
    # Paths as the instance sees them; on the host they are its state/, home/ and root/opt/ dirs.
    names = ("/var/lib/orchestrio/config.json", "/var/lib/orchestrio/agent-key.sha256", "/home/instance/.profile",
             "/opt/orchestrio/scripts/echo-args.sh", "/opt/orchestrio/hooks/reload")  # fmt: skip
    planted = run_in_instance(api, "linker", "".join(f'rm -rf "{name}" && ln -s {victim} "{name}"\n' for name in names))
    assert planted["status"] == "succeeded", (planted["stdout"], planted["stderr"], planted["error_message"])
    directory = Path(local_instance("linker").provider_data["dir"])
    assert os.readlink(directory / "state" / "config.json") == str(victim)
    api.post("instances/linker/restart")
    run_jobs()
    assert api.patch("instances/linker/config?apply=true", {"model": "fast"}).status_code == 200
    api.post("instances/linker/stop")
    run_jobs()
    api.delete("instances/linker")
    run_jobs()
    assert victim.read_text() == "untouched" and oct(victim.stat().st_mode & 0o777) == "0o644"


def test_without_the_sandbox_tenant_commands_are_refused(api, tenant, monkeypatch):
    monkeypatch.setattr(sandbox, "support", lambda: sandbox.Support(False, "off", "bubblewrap is not installed"))
    response = api.post("blueprints", {"name": "mine", "command": ["python3", "-m", "http.server"]})
    [error] = assert_validation_error(response, ("body", "command"))
    assert "sandbox is off" in error["msg"] and "bubblewrap is not installed" in error["msg"]
    checked = api.post("blueprints/validate", {"name": "mine", "command": ["python3"]}).json()
    assert checked["valid"] is False and any(e["loc"] == ["body", "command"] for e in checked["errors"])
    # One made before the sandbox went away cannot start an instance either.
    Blueprint.objects.create(tenant=tenant, name="legacy", command=["python3", "-m", "http.server"])
    assert_validation_error(api.post("instances", {"instance_id": "legacy-1", "blueprint_name": "legacy"}), ("body", "blueprint_name"))
    assert api.patch("blueprints/legacy", {"command": ["sh"]}).status_code == 422
    assert api.patch("blueprints/legacy", {"command": []}).status_code == 200  # removing it is fine


@pytest.mark.slow
def test_without_the_sandbox_the_bundled_agent_still_runs_unprivileged(api, live, monkeypatch):
    monkeypatch.setattr(sandbox, "support", lambda: sandbox.Support(False, "off", "bubblewrap is not installed"))
    assert api.post("blueprints", {"name": "free"}).status_code == 201  # no task_roots: the agent alone confines scripts
    live("plain-1", blueprint_name="free")
    instance = local_instance("plain-1")
    assert instance.provider_data["sandbox"] == "off"
    uids = {proc.uids().real for proc in [psutil.Process(_tree_pids(instance)[0])]}
    expected = sandbox.uid_for(instance.pk) if os.geteuid() == 0 else os.getuid()
    assert uids == {expected}
    # Its scripts are confined to its own directory.
    response = api.post("instances/plain-1/tasks", {"operation_code": "x", "script_path": "/usr/bin/id"})
    assert response.status_code == 202, response.content
    run_jobs()
    task = api.get(f"tasks/{response.json()['task_id']}").json()
    # /usr/bin/id is looked up in the instance's own filesystem, never the host's.
    assert task["status"] == "failed" and f"cannot execute {instance.provider_data['dir']}/root/usr/bin/id" in task["stderr"]
