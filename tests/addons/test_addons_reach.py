"""A sandboxed local instance reaches its own add-ons, and only its own (issue 19, reachability).

The instance has a network namespace of its own: the add-on's loopback port is not reachable from
it. Its add-ons' unix sockets are, through the directory bound into its sandbox at /run/addons;
the URL in its environment uses it. Each test runs the instance's own code (a task script that
reads DATABASE_URL / REDIS_URL from the agent's secrets and connects with it), never the
provider's internals.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from addons import engines
from addons.models import AddOn
from addons.services import _target

from ..helpers import local_instance, run_in_instance, run_jobs
from ..instances.conftest import live  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

# The instance's code: its URL from the agent's secrets, then a real client. PostgreSQL with the
# host's psql (libpq takes the URL as it is); Redis with redis-py's `unix://` form spoken by hand
# (the sandbox's python3 has only the standard library).
PSQL = """
URL=$(python3 -c 'import json, os; print(json.load(open(os.environ["ORCHESTRIO_SECRETS_FILE"]))["DATABASE_URL"])')
{psql} "$URL" -v ON_ERROR_STOP=1 -tA -c "{sql}"
"""
REDIS = r"""
cat > /tmp/redis_probe.py <<'EOF'
import json, os, socket, sys
from urllib.parse import urlsplit, unquote
url = urlsplit(json.load(open(os.environ["ORCHESTRIO_SECRETS_FILE"]))["REDIS_URL"])
assert url.scheme == "unix", url.scheme
def command(*parts):
    out = "*%d\r\n" % len(parts) + "".join("$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    conn.sendall(out.encode())
    return conn.recv(4096).decode()
conn = socket.socket(socket.AF_UNIX)
conn.settimeout(3)
conn.connect(url.path)
print(command("AUTH", unquote(url.password)).strip())
print(command(*sys.argv[1:]).strip())
EOF
python3 /tmp/redis_probe.py {args}
"""


def _create(api, instance_id: str, engine: str) -> AddOn:
    created = api.post(f"instances/{instance_id}/addons", {"engine": engine})
    assert created.status_code == 201, created.content
    run_jobs()
    addon = AddOn.objects.get(addon_id=created.json()["addon_id"])
    assert addon.status == "available", addon.error_message
    return addon


def _as_uid(uid: int, path: str) -> subprocess.CompletedProcess:
    """Connect to the unix socket at the host's `path` as `uid` (another tenant's instance, were it
    unsandboxed), outside any sandbox: the directory's permissions alone."""
    code = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])"
    return subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "/usr/bin/python3", "-c", code, path], capture_output=True, text=True, timeout=10)


@pytest.mark.skipif(engines.postgres_bin() is None, reason="needs the host's PostgreSQL binaries (apt-get install postgresql)")
def test_a_sandboxed_instance_connects_to_its_postgres_addon_and_another_tenant_cannot(api, other_api, live):
    live("web-01")
    addon = _create(api, "web-01", "postgres")
    psql = str(engines.postgres_bin() / "psql")
    wrote = run_in_instance(api, "web-01", PSQL.format(psql=psql, sql="CREATE TABLE t (v text); INSERT INTO t VALUES ('from the instance'); SELECT current_user"))
    assert wrote["status"] == "succeeded", (wrote["stdout"], wrote["stderr"])
    assert wrote["stdout"].strip().splitlines()[-1] == "app"
    # The URL it used is the socket's, not loopback TCP (which its network namespace lacks).
    url = run_in_instance(api, "web-01", """python3 -c 'import json, os; print(json.load(open(os.environ["ORCHESTRIO_SECRETS_FILE"]))["DATABASE_URL"])'""", name="url.sh")["stdout"].strip()
    assert url.startswith("postgres://app:") and f"@/app?host=/run/addons/{addon.addon_id}&port={addon.port}" in url
    tcp = run_in_instance(api, "web-01", f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {addon.port}), timeout=1)'", name="tcp.sh")
    assert tcp["status"] == "failed"  # what the plan replaces: loopback is the sandbox's own

    # Another tenant's sandboxed instance sees no /run/addons of the first one's.
    live_other = other_api.post("instances", {"instance_id": "intruder"})
    assert live_other.status_code == 201, live_other.content
    run_jobs()
    socket_path = f"/run/addons/{addon.addon_id}/.s.PGSQL.{addon.port}"
    probe = run_in_instance(other_api, "intruder", f"ls -A /run/addons; test -e {socket_path} && echo FOUND; echo done", name="intrude.sh")
    assert probe["status"] == "succeeded", probe["stderr"]
    assert probe["stdout"].strip() == "done"
    # …and the host's socket directory refuses any uid but the add-on's and its instance's.
    host_socket = str(_target(addon).socket_dir / f".s.PGSQL.{addon.port}")
    assert Path(host_socket).exists()
    refused = _as_uid(local_instance("intruder").provider_data["uid"], host_socket)
    assert refused.returncode != 0 and "PermissionError" in refused.stderr
    allowed = _as_uid(local_instance("web-01").provider_data["uid"], host_socket)
    assert allowed.returncode == 0, allowed.stderr

    # The row the instance wrote is in the add-on (the control plane reads it over TCP).
    import psycopg

    from addons.services import addon_connection_url

    with psycopg.connect(addon_connection_url(addon=addon)) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("from the instance",)]


@pytest.mark.skipif(engines.redis_server() is None, reason="needs redis-server (apt-get install redis-server)")
def test_a_sandboxed_instance_connects_to_its_redis_addon(api, live):
    live("web-01")
    addon = _create(api, "web-01", "redis")
    done = run_in_instance(api, "web-01", REDIS.format(args="SET greeting hello"))
    assert done["status"] == "succeeded", (done["stdout"], done["stderr"])
    assert done["stdout"].split() == ["+OK", "+OK"]
    import redis

    from addons.services import addon_connection_url, instance_connection_url

    assert redis.Redis.from_url(addon_connection_url(addon=addon)).get("greeting") == b"hello"
    # redis-py takes the instance's form of the URL as it is.
    url = instance_connection_url(addon=addon, instance=local_instance("web-01"))
    assert url.startswith("unix://:") and url.endswith(f"/run/addons/{addon.addon_id}/redis.sock?db=0")
    assert redis.connection.parse_url(url)["path"] == f"/run/addons/{addon.addon_id}/redis.sock"
    assert os.stat(_target(addon).socket_dir).st_gid == local_instance("web-01").provider_data["uid"]


@pytest.mark.skipif(engines.redis_server() is None, reason="needs redis-server (apt-get install redis-server)")
def test_a_new_deployment_revision_keeps_the_addon_url_in_the_instance(api):
    """The agent keeps one set of secrets: a revision's push carries the add-ons' part too."""
    created = api.post("deployments", {"name": "shop", "secrets": {"API_KEY": "first"}})
    assert created.status_code == 201, created.content
    run_jobs()
    deployment = api.get(f"deployments/{created.json()['id']}").json()
    assert deployment["status"] == "active", deployment
    instance_id = created.json()["instance_id"]
    addon = _create(api, instance_id, "redis")
    read = """python3 -c 'import json, os; s = json.load(open(os.environ["ORCHESTRIO_SECRETS_FILE"])); print(s.get("API_KEY"), s.get("REDIS_URL", "")[:8])'"""
    assert run_in_instance(api, instance_id, read, name="env.sh")["stdout"].split() == ["first", "unix://:"]

    patched = api.patch(f"deployments/{created.json()['id']}", {"secrets": {"API_KEY": "second"}})
    assert patched.status_code in (200, 202), patched.content
    run_jobs()
    assert api.get(f"deployments/{created.json()['id']}").json()["revision"] == 2
    assert run_in_instance(api, instance_id, read, name="env2.sh")["stdout"].split() == ["second", "unix://:"]
    # …and the instance still connects with it.
    done = run_in_instance(api, instance_id, REDIS.format(args="PING"), name="ping.sh")
    assert done["stdout"].split() == ["+OK", "+PONG"], (done["stdout"], done["stderr"])
    assert AddOn.objects.get(pk=addon.pk).status == "available"
