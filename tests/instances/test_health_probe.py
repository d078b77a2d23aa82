"""`instances.health` is the one health probe: the sweep, a probe now and the waits (readiness,
a deployment's health check) share its rule, and no other module asks a health path itself."""

from __future__ import annotations

import ast
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from instances import health

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def answering():
    """A health endpoint answering the given statuses in turn (then the last one forever)."""
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            code = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], statuses
    server.shutdown()


def test_the_three_ways_agree(answering, make_instance):
    port, statuses = answering
    instance = make_instance(instance_id="probe-1", state="running", ip_address="127.0.0.1", port=port)
    row = {"pk": instance.pk, "ip_address": "127.0.0.1", "port": port, "socket_path": "", "health_path": instance.blueprint.health_path, "health_status": "unknown", "health_failures": 0}
    for code, ok in ((204, True), (503, False)):
        statuses[:] = [code]
        once = health.probe(instance)
        swept = health.probe_many([dict(row)])[0]
        waited = health.probe_until(instance, deadline=time.monotonic() + 0.3, interval=0.05, timeout=1)
        assert (once.ok, swept["ok"], waited.ok) == (ok, ok, ok)
        assert once.detail == swept["detail"] == waited.detail == ("" if ok else "HTTP 503")


def test_probe_until_needs_the_successes_in_a_row(answering, make_instance):
    port, statuses = answering
    instance = make_instance(instance_id="probe-2", state="running", ip_address="127.0.0.1", port=port)
    statuses[:] = [200, 503, 200, 200, 200]
    assert health.probe_until(instance, deadline=time.monotonic() + 5, interval=0.01, timeout=1, successes=3).ok
    assert statuses == [200]  # it asked until three 2xx came in a row


def test_no_recorded_address_is_unhealthy_and_nothing_is_asked(make_instance):
    instance = make_instance(instance_id="probe-3", state="running", ip_address=None, port=None)
    assert health.probe(instance) == health.Probe(False, None, health.NO_ADDRESS)
    assert health.probe_until(instance, deadline=time.monotonic() + 1, interval=0.01, timeout=1).detail == health.NO_ADDRESS


def test_no_module_but_instances_health_asks_a_health_path():
    offenders = []
    for path in (p for app in sorted(ROOT.iterdir()) if app.is_dir() and not app.name.startswith(".") and app.name not in {"tests", "bench"} for p in app.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative == Path("instances/health.py") or "migrations" in relative.parts:
            continue
        for call in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)):
            asks = ast.unparse(call.func).endswith((".get", ".request", ".stream", "open_connection", "urlopen"))
            if asks and any("health_path" in ast.unparse(arg) for arg in [*call.args, *(k.value for k in call.keywords)]):
                offenders.append(f"{relative}:{call.lineno} {ast.unparse(call)[:80]}")
    assert offenders == []
