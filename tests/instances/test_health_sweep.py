"""The periodic health sweep: statuses, thresholds, log lines and audit events on change."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instances.jobs import health_sweep
from instances.models import Instance, LogLine
from orchestrio.models import ActivityEvent


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.status = 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sweep_marks_healthy_and_unhealthy(make_instance, health_server, settings):
    settings.HEALTH_FAILURE_THRESHOLD = 2
    good = make_instance(instance_id="good", ip_address="127.0.0.1", port=health_server.server_port, health_status="unknown")
    bad = make_instance(instance_id="bad", ip_address="127.0.0.1", port=_closed_port(), health_status="healthy")
    stopped = make_instance(instance_id="off", state="stopped", ip_address="127.0.0.1", port=_closed_port())

    summary = health_sweep()
    assert summary["instances"] == 2
    good.refresh_from_db(), bad.refresh_from_db(), stopped.refresh_from_db()
    assert good.health_status == "healthy" and good.last_health_check is not None
    assert bad.health_status == "healthy" and bad.health_failures == 1  # one failure is not enough
    assert stopped.last_health_check is None

    health_sweep()
    bad.refresh_from_db()
    assert bad.health_status == "unhealthy" and bad.health_failures == 2
    line = LogLine.objects.filter(instance=bad, stage="health").last()
    assert "healthy → unhealthy" in line.message and "connection failed" in line.message
    assert ActivityEvent.objects.filter(action="instance.health.unhealthy", object_id="bad").count() == 1
    assert ActivityEvent.objects.filter(action="instance.health.healthy", object_id="good").count() == 1

    # steady states write no more log lines or events
    health_sweep()
    assert ActivityEvent.objects.filter(action__startswith="instance.health").count() == 2


def test_http_errors_count_as_failures(make_instance, health_server, settings):
    settings.HEALTH_FAILURE_THRESHOLD = 1
    health_server.status = 503
    instance = make_instance(instance_id="five03", ip_address="127.0.0.1", port=health_server.server_port, health_status="healthy")
    health_sweep()
    instance.refresh_from_db()
    assert instance.health_status == "unhealthy"
    assert "HTTP 503" in LogLine.objects.filter(instance=instance).last().message
    health_server.status = 200
    health_sweep()
    instance.refresh_from_db()
    assert instance.health_status == "healthy" and instance.health_failures == 0


def test_sweep_uses_a_constant_number_of_queries_when_steady(make_instance, health_server, django_assert_max_num_queries):
    for i in range(20):
        make_instance(instance_id=f"steady-{i}", ip_address="127.0.0.1", port=health_server.server_port, health_status="healthy")
    with django_assert_max_num_queries(3):
        assert health_sweep()["instances"] == 20
    assert Instance.objects.filter(health_failures=0, last_health_check__isnull=False).count() == 20
