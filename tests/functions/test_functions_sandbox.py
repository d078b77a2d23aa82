"""The sandbox holds for function code as for instance commands (tests/security/test_sandbox.py):
a tenant's handler runs as a uid of its own, sees none of the host's files, nor another tenant's
function, reaches nothing on the host's loopback and cannot signal another function's processes.
The attack is made as a tenant would: through the handler it deploys, never the runtime's internals."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from functions import runtime
from functions.models import Function

from .conftest import create, deploy

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db]

SECRET = "sk_live_tenant-a-function-secret-41c2"

ATTACK = r"""
import json, os, signal, socket
TARGETS = json.loads(%r)

def handler(request):
    results = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
    def attempt(name, fn):
        try:
            results[name] = {"ok": True, "value": repr(fn())[:300]}
        except Exception as exc:
            results[name] = {"ok": False, "error": type(exc).__name__}
    for path in TARGETS["read"]:
        attempt("read " + path, lambda p=path: open(p, "rb").read(200))
    for path in TARGETS["list"]:
        attempt("list " + path, lambda p=path: os.listdir(p))
    for port in TARGETS["ports"]:
        attempt("connect 127.0.0.1:%%d" %% port, lambda p=port: socket.create_connection(("127.0.0.1", p), timeout=1).close())
    for path in TARGETS["sockets"]:
        def connect_unix(p=path):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(1)
            s.connect(p)
            s.close()
        attempt("connect " + path, connect_unix)
    for pid in TARGETS["pids"]:
        attempt("kill %%d" %% pid, lambda p=pid: os.kill(p, signal.SIGKILL))
    attempt("write /code", lambda: open("/code/pwned", "w").write("x"))
    attempt("write /usr", lambda: open("/usr/pwned", "w").write("x"))
    attempt("write /", lambda: open("/pwned", "w").write("x"))
    attempt("setuid 0", lambda: os.setuid(0))
    attempt("unshare a user namespace", lambda: os.unshare(os.CLONE_NEWUSER))
    attempt("see the victim's env", lambda: [p for p in os.listdir("/proc") if p.isdigit() and "%s" in open("/proc/%%s/environ" %% p).read()])
    return results
"""


def test_a_handler_cannot_reach_another_tenants_function_nor_the_host(api, other_api):
    victim = create(api, slug="victim", code=f"SECRET = {SECRET!r}\ndef handler(request):\n    print(SECRET)\n    return 'ok'\n", env={"VICTIM_SECRET": SECRET})
    deploy(api, victim["function_id"])
    assert Client().get("/fn/victim").status_code == 200  # its logs now hold the secret too
    victim_pk = Function.objects.get(function_id=victim["function_id"]).pk
    victim_dir = runtime.function_dir(victim_pk)
    record = json.loads((runtime.version_dir(victim_pk, 1) / "process.json").read_text())
    victim_pids = [p.pid for p in [psutil.Process(record["pid"]), *psutil.Process(record["pid"]).children(recursive=True)]]

    service = socket.socket()
    service.bind(("127.0.0.1", 0))
    service.listen(1)
    database = connection.settings_dict["NAME"] if connection.vendor == "sqlite" else str(Path(settings.VAR_DIR) / "orchestrio.sqlite3")
    targets = {
        "read": [
            str(runtime.version_dir(victim_pk, 1) / "code" / "handler.py"),
            str(victim_dir / "output.log"),
            str(database),
            "/etc/shadow",
            "/root/.bashrc",
            str(Path(settings.BASE_DIR) / "orchestrio" / "settings.py"),
        ],
        "list": [str(settings.VAR_DIR), str(settings.FUNCTIONS_LOCAL_DIR), str(victim_dir), "/root"],
        "ports": [service.getsockname()[1]],
        "sockets": [str(runtime.version_dir(victim_pk, 1) / runtime.SOCKET_NAME)],
        "pids": victim_pids,
    }
    attacker = create(other_api, slug="attacker", code=ATTACK % (json.dumps(targets), SECRET))
    assert deploy(other_api, attacker["function_id"])["status"] == "built"
    response = Client().get("/fn/attacker")
    service.close()
    assert response.status_code == 200, response.content
    results = json.loads(response.content)

    attacker_pk = Function.objects.get(function_id=attacker["function_id"]).pk
    assert results["uid"] == settings.FUNCTIONS_LOCAL_UID_BASE + attacker_pk != 0
    assert results["uid"] != settings.FUNCTIONS_LOCAL_UID_BASE + victim_pk
    assert results["groups"] in ([], [results["gid"]])
    allowed = {"see the victim's env"}
    succeeded = {name: outcome for name, outcome in results.items() if isinstance(outcome, dict) and outcome["ok"] and name not in allowed}
    assert not succeeded, f"the attacker's handler reached: {succeeded}"
    assert results["see the victim's env"]["ok"] and results["see the victim's env"]["value"] == "[]", results["see the victim's env"]
    assert SECRET not in response.content.decode()
    # The victim is still up and serving.
    assert Client().get("/fn/victim").status_code == 200


NODE_ATTACK = r"""
import fs from "node:fs";
import net from "node:net";
const TARGETS = JSON.parse(%s);

function attempt(results, name, fn) {
  try { results[name] = { ok: true, value: String(fn()).slice(0, 300) }; }
  catch (err) { results[name] = { ok: false, error: err.code || err.name }; }
}
function connect(options) {
  return new Promise((resolve) => {
    const socket = net.connect(options);
    const done = (outcome) => { socket.destroy(); resolve(outcome); };
    socket.setTimeout(1000, () => done({ ok: false, error: "timeout" }));
    socket.on("connect", () => done({ ok: true, value: "connected" }));
    socket.on("error", (err) => done({ ok: false, error: err.code }));
  });
}

export default async () => {
  const results = { uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() };
  for (const path of TARGETS.read) attempt(results, "read " + path, () => fs.readFileSync(path));
  for (const path of TARGETS.list) attempt(results, "list " + path, () => fs.readdirSync(path));
  for (const port of TARGETS.ports) results["connect 127.0.0.1:" + port] = await connect({ host: "127.0.0.1", port });
  for (const path of TARGETS.sockets) results["connect " + path] = await connect({ path });
  for (const pid of TARGETS.pids) attempt(results, "kill " + pid, () => process.kill(pid, "SIGKILL"));
  attempt(results, "write /code", () => fs.writeFileSync("/code/pwned", "x"));
  attempt(results, "write /", () => fs.writeFileSync("/pwned", "x"));
  return results;
};
"""


def test_a_node_handler_is_held_by_the_same_sandbox(api, other_api):
    if "node20" not in runtime.available_runtimes():
        pytest.skip("node 20 is not installed here (apt-get install nodejs): the Node runtime cannot be tested")
    victim = create(api, slug="victim", code=f"SECRET = {SECRET!r}\ndef handler(request):\n    return 'ok'\n")
    deploy(api, victim["function_id"])
    victim_pk = Function.objects.get(function_id=victim["function_id"]).pk
    record = json.loads((runtime.version_dir(victim_pk, 1) / "process.json").read_text())
    service = socket.socket()
    service.bind(("127.0.0.1", 0))
    service.listen(1)
    targets = {
        "read": [str(runtime.version_dir(victim_pk, 1) / "code" / "handler.py"), str(runtime.function_dir(victim_pk) / "output.log"), "/etc/shadow"],
        "list": [str(settings.VAR_DIR), str(settings.FUNCTIONS_LOCAL_DIR), "/root"],
        "ports": [service.getsockname()[1]],
        "sockets": [str(runtime.version_dir(victim_pk, 1) / runtime.SOCKET_NAME)],
        "pids": [record["pid"]],
    }
    attacker = create(other_api, slug="node-attacker", runtime="node20", code=NODE_ATTACK % json.dumps(json.dumps(targets)))
    assert deploy(other_api, attacker["function_id"])["status"] == "built"
    response = Client().get("/fn/node-attacker")
    service.close()
    assert response.status_code == 200, response.content
    results = json.loads(response.content)
    attacker_pk = Function.objects.get(function_id=attacker["function_id"]).pk
    assert results["uid"] == settings.FUNCTIONS_LOCAL_UID_BASE + attacker_pk
    succeeded = {name: outcome for name, outcome in results.items() if isinstance(outcome, dict) and outcome["ok"]}
    assert not succeeded, f"the attacker's handler reached: {succeeded}"
    assert Client().get("/fn/victim").status_code == 200
