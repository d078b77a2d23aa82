"""App logs (issue 18, item 1): the instance's own stdout/stderr, kept by its agent in a bounded
ring buffer on disk, read and followed through `GET /api/v1/instances/{id}/app-logs`."""

from __future__ import annotations

import json
import os

import pytest

from instances.agent import AppLog, app_log_query
from instances.models import Instance
from orchestrio import longpoll
from orchestrio.tenancy import Principal

from .. import logscan
from ..helpers import assert_error, assert_validation_error, instance_http, run_jobs

# --- the agent's ring buffer -------------------------------------------------------------------


def test_lines_keep_their_stream_order_and_numbers_across_a_reopen(tmp_path):
    log = AppLog(str(tmp_path), max_bytes=64 * 1024)
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"oops\n")
    log.write("stdout", b"o\nthree")  # "three" waits for its newline
    assert [(e["seq"], e["stream"], e["line"]) for e in log.read()["lines"]] == [(1, "stdout", "one"), (2, "stderr", "oops"), (3, "stdout", "two")]
    log.flush("stdout")
    again = AppLog(str(tmp_path), max_bytes=64 * 1024)  # the agent restarted: numbering goes on
    again.write("stdout", b"four\n")
    body = again.read()
    assert [e["line"] for e in body["lines"]] == ["one", "oops", "two", "three", "four"] and body["last_seq"] == 5
    assert [e["line"] for e in again.read(stream="stderr")["lines"]] == ["oops"]
    assert [e["line"] for e in again.read(after=3)["lines"]] == ["three", "four"]
    assert [e["line"] for e in again.read(q="TW")["lines"]] == ["two"]
    tail = again.read(tail=2)
    assert [e["line"] for e in tail["lines"]] == ["three", "four"] and tail["truncated"] is True
    first_ts = body["lines"][0]["ts"]
    assert len(again.read(since=first_ts)["lines"]) == 5 and again.read(since="2999-01-01T00:00:00Z")["lines"] == []


def test_the_buffer_stays_within_its_size_and_drops_the_oldest(tmp_path):
    log = AppLog(str(tmp_path), max_bytes=16 * 1024)
    for n in range(2000):
        log.write("stdout", f"line {n:05d} {'x' * 60}\n".encode())
    size = sum(os.path.getsize(tmp_path / name) for name in ("app.log", "app.log.1"))
    assert size <= 16 * 1024 + 200
    lines = log.read(tail=1000)["lines"]
    assert lines[-1]["line"].startswith("line 01999") and lines[-1]["seq"] == 2000
    assert lines[0]["seq"] > 1000  # the oldest went first


def test_long_lines_are_cut_and_bytes_that_are_not_utf8_are_replaced(tmp_path):
    log = AppLog(str(tmp_path))
    log.write("stderr", b"\xff\xfebad\n" + b"y" * 20000 + b"\n")
    first, second = log.read()["lines"]
    assert first["line"] == "\ufffd\ufffdbad"
    assert second["line"].startswith("y" * 8192) and second["line"].endswith("[cut: 11808 more characters]")


def test_starts_and_the_last_exit_are_kept(tmp_path):
    log = AppLog(str(tmp_path))
    log.record_run(started=True)
    log.record_run(exit_code=3)
    log.record_run(started=True)
    runs = AppLog(str(tmp_path)).runs()
    assert runs["starts"] == 2 and runs["last_exit_code"] == 3 and runs["last_exit_at"]


@pytest.mark.parametrize("query", ["after=-1", "tail=x", "stream=both"])
def test_the_agent_checks_its_query(query):
    with pytest.raises(ValueError):
        app_log_query(query)


def test_the_log_scan_reads_instance_logs(tmp_path):
    AppLog(str(tmp_path / "state" / "app-logs")).write("stdout", b"leaked ork_live_" + b"A1b2C3d4E5" * 3 + b"zzQ9w8E7\n")
    assert logscan.leaks(logscan.instance_logs(tmp_path), set())


# --- through the API, with a real instance -----------------------------------------------------



def _tunnel(api, instance_id, path):
    from django.test import Client

    response = Client().get(f"/tunnel/{instance_id}/{path}", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 200
    b"".join(response.streaming_content)


def _events(chunks):
    """Parse server-sent events from an iterator of byte chunks, one event at a time."""
    for chunk in chunks:
        text = chunk.decode()
        if text.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
        yield fields.get("event"), json.loads(fields["data"]), fields.get("id")


@pytest.mark.slow
def test_an_instance_s_traffic_is_its_log_read_filtered_and_followed(api, other_api, live, settings, tenant, token):
    settings.APP_LOG_FOLLOW_POLL_SECONDS = 0.1
    live("logs-01")
    _tunnel(api, "logs-01", "hello/world")
    _tunnel(api, "logs-01", "second?x=1")
    body = api.get("instances/logs-01/app-logs").json()
    assert body["instance_id"] == "logs-01" and body["starts"] == 1 and body["restarts"] == 0 and body["last_exit_code"] is None
    lines = [entry["line"] for entry in body["lines"]]
    assert any("GET /hello/world" in line for line in lines) and any("GET /second?x=1" in line for line in lines)
    assert not any("/api/status" in line or "/health" in line for line in lines)  # the platform's calls are not the app's
    assert all(entry["stream"] == "stderr" and entry["ts"].endswith("Z") for entry in body["lines"])
    assert [e["line"] for e in api.get("instances/logs-01/app-logs", q="SECOND").json()["lines"]] == [lines[-1]]
    assert api.get("instances/logs-01/app-logs", stream="stdout").json()["lines"] == []
    assert api.get("instances/logs-01/app-logs", after=body["last_seq"]).json()["lines"] == []
    assert len(api.get("instances/logs-01/app-logs", tail=1).json()["lines"]) == 1
    assert_validation_error(api.get("instances/logs-01/app-logs", tail=0), ("query", "tail"))
    assert_validation_error(api.get("instances/logs-01/app-logs", stream="both"), ("query", "stream"))
    assert_validation_error(api.get("instances/logs-01/app-logs", since="yesterday"), ("query", "since"))
    assert other_api.get("instances/logs-01/app-logs").status_code == 404

    # Follow: what is there, then a line written after the stream began.
    response = api.get("instances/logs-01/app-logs", follow="true", timeout=5, after=body["last_seq"] - 1)
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = _events(iter(response.streaming_content))
    assert next(events)[:2] == ("status", {"starts": 1, "restarts": 0, "last_exit_code": None, "last_exit_at": None})
    kind, data, event_id = next(events)
    assert kind == "line" and "second" in data["line"] and event_id == str(data["seq"])
    _tunnel(api, "logs-01", "after-follow")
    kind, data, _ = next(events)
    assert kind == "line" and "GET /after-follow" in data["line"]
    # The client goes away: the stream's generator is closed (what a WSGI server does; not
    # response.close(), which outside the client's request would close the test database's
    # connection) and its long-poll slot is free again.
    assert longpoll._held_here == 1
    response._iterator.close()
    assert longpoll._held_here == 0
    # Follows count against the long-poll caps (docs/security.md).
    settings.LONG_POLL_MAX_PER_PRINCIPAL = 1
    with longpoll.long_poll_slot(Principal(tenant=tenant, role="owner", token=token), "wait"):
        assert_error(api.get("instances/logs-01/app-logs", follow="true", timeout=1), 429, contains="long polls")
    settings.LONG_POLL_MAX_PER_PRINCIPAL = 4

    # Reconnecting with Last-Event-ID resumes after it.
    resumed = api.get("instances/logs-01/app-logs", headers={"Last-Event-ID": str(data["seq"] - 1)}).json()
    assert [e["seq"] for e in resumed["lines"]] == [data["seq"]]

    api.post("instances/logs-01/stop")
    run_jobs()
    assert_error(api.get("instances/logs-01/app-logs"), 400, contains="running")
    api.post("instances/logs-01/start")
    run_jobs()
    again = api.get("instances/logs-01/app-logs").json()
    assert again["starts"] == 2 and again["restarts"] == 1  # kept on the instance across its restart
    assert any("after-follow" in e["line"] for e in again["lines"])


PROGRAM = r"""
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
print("program started", flush=True)
print("warming up", file=sys.stderr, flush=True)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/spam"):
            for n in range(3000):
                print(f"spam {n:05d} " + "z" * 80)
            sys.stdout.flush()
        elif self.path.startswith("/exit"):
            os._exit(3)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.mark.slow
@pytest.mark.sandbox
def test_a_program_s_stdout_and_stderr_bounded_with_its_exit(api, tenant, settings):
    settings.APP_LOG_MAX_BYTES = 32 * 1024
    created = api.post("blueprints", {"name": "talker", "command": ["python3", "-c", PROGRAM], "health_path": "/health"})
    assert created.status_code == 201, created.content
    api.post("instances", {"instance_id": "talker-1", "blueprint_name": "talker"})
    run_jobs()
    body = api.get("instances/talker-1/app-logs").json()
    # Two pipes: each stream keeps its order, not the order between them.
    assert {(e["stream"], e["line"]) for e in body["lines"][:2]} == {("stdout", "program started"), ("stderr", "warming up")}
    assert body["starts"] == 1
    with instance_http("talker-1", timeout=10) as client:
        assert client.get("/spam").status_code == 200
    spam = api.get("instances/talker-1/app-logs", tail=1000).json()
    assert spam["lines"][-1]["line"].startswith("spam 02999")
    assert len(spam["lines"]) < 400 and spam["lines"][0]["line"].startswith("spam")  # the oldest lines were dropped
    directory = os.path.join(Instance.objects.get(instance_id="talker-1").provider_data["dir"], "state", "app-logs")
    assert sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory) if name.startswith("app.log")) <= 32 * 1024 + 300
    api.delete("instances/talker-1")
    run_jobs()
