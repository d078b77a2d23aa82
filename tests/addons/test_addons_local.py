"""Real add-ons on the local engine: a PostgreSQL cluster and a redis-server, created, used
with their URL, their credentials rotated (the old password refused), destroyed with their data.
One server per test, each test the whole lifecycle (a server starts in 1–3 s)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings

from addons import engines
from addons.models import AddOn
from orchestrio.models import ActivityEvent
from instances.models import LogLine

from ..helpers import run_jobs

pytestmark = pytest.mark.slow


class _Agent(BaseHTTPRequestHandler):
    """An instance agent that records the secrets it is given."""

    received: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/secrets":
            _Agent.received.append(body)
        data = json.dumps({"stored": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def agent():
    _Agent.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _lifecycle_start(api, engine):
    created = api.post("instances/web-01/addons", {"engine": engine})
    assert created.status_code == 201, created.content
    body = created.json()
    run_jobs()
    record = api.get(f"addons/{body['addon_id']}").json()
    assert record["status"] == "available", record
    directory = Path(settings.ADDONS_LOCAL_DIR) / body["addon_id"]
    return body["addon_id"], body["connection_url"], directory


def _rotate(api, addon_id):
    assert api.post(f"addons/{addon_id}/rotate-credentials").status_code == 202
    run_jobs()
    record = api.get(f"addons/{addon_id}").json()
    assert record["status"] == "available" and record["credentials_rotated_at"], record
    return api.post(f"addons/{addon_id}/reveal").json()["connection_url"]


def _destroy(api, addon_id, directory):
    assert api.delete(f"addons/{addon_id}?confirm={addon_id}").status_code == 202
    run_jobs()
    assert not directory.exists()
    assert api.get(f"addons/{addon_id}").status_code == 404
    assert AddOn.objects.get(addon_id=addon_id).status == "deleted"


def _nothing_secret_recorded(*passwords):
    logged = " ".join(LogLine.objects.values_list("message", flat=True)) + str(list(ActivityEvent.objects.values_list("data", flat=True)))
    for password in passwords:
        assert password not in logged


@pytest.mark.skipif(engines.postgres_bin() is None, reason="needs the host's PostgreSQL binaries (apt-get install postgresql)")
def test_postgres_addon_lifecycle(api, make_instance, agent):
    make_instance(instance_id="web-01", state="running", ip_address="127.0.0.1", port=agent.server_port)
    addon_id, url, directory = _lifecycle_start(api, "postgres")
    assert _Agent.received[-1] == {"DATABASE_URL": url}  # the instance's environment
    assert (directory / "data" / "PG_VERSION").exists()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('hello')")
        conn.commit()
        user, superuser = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert user == "app" and superuser is False  # a superuser could run programs on the host

    new_url = _rotate(api, addon_id)
    assert new_url != url and _Agent.received[-1] == {"DATABASE_URL": new_url}
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url).close()
    with psycopg.connect(new_url) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("hello",)]

    _nothing_secret_recorded(url.split(":")[2].split("@")[0], new_url.split(":")[2].split("@")[0])
    _destroy(api, addon_id, directory)
    assert _Agent.received[-1] == {}  # gone from the instance's environment too
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(new_url, connect_timeout=2).close()


@pytest.mark.skipif(engines.redis_server() is None, reason="needs redis-server (apt-get install redis-server)")
def test_redis_addon_lifecycle(api, running):
    addon_id, url, directory = _lifecycle_start(api, "redis")
    assert url.startswith("redis://:") and url.endswith("/0")
    client = redis.Redis.from_url(url)
    client.set("greeting", "hello")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=client.connection_pool.connection_kwargs["port"], password="wrong").ping()

    new_url = _rotate(api, addon_id)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url).ping()
    assert redis.Redis.from_url(new_url).get("greeting") == b"hello"
    # The rotated password survives a restart of the server (CONFIG REWRITE).
    addon = AddOn.objects.get(addon_id=addon_id)
    from addons.services import _target

    engines.stop(_target(addon))
    engines.ensure_running(_target(addon))
    assert redis.Redis.from_url(new_url).get("greeting") == b"hello"

    _destroy(api, addon_id, directory)
