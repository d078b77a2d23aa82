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


def test_a_sweep_of_many_changes_writes_them_in_batches(tenant, monkeypatch, settings, django_assert_max_num_queries, django_capture_on_commit_callbacks):
    """600 changes in two batches over two tenants: each changed instance gets one log line (next
    `seq`), one audit event and its alert (only the tenant with a webhook), an instance destroyed
    between probe and record is skipped, and the queries do not grow with the instances."""
    from django.utils import timezone

    from billing.models import AlertConfig, AlertDelivery
    from instances import jobs
    from instances.models import Blueprint

    from ..factories import TenantFactory

    settings.HEALTH_FAILURE_THRESHOLD = 2
    quiet = TenantFactory(id="quiet-corp")
    AlertConfig.objects.create(tenant=tenant, webhook_url="https://hooks.example.com/orchestrio", enabled=True)
    blueprint = Blueprint.objects.get(name="OpenClaw", tenant=None)
    start = {0: ("unhealthy", 3), 1: ("healthy", 1), 2: ("unknown", 0)}  # → healthy, unhealthy, healthy
    Instance.objects.bulk_create(
        [
            Instance(
                instance_id=f"many-{i:03d}", tenant=tenant if i % 2 == 0 else quiet, blueprint=blueprint, plan_id="openclaw-basic",
                region_id="local", provider="local", instance_type="t3.small", state="running", ip_address="127.0.0.1", port=9,
                health_status=start[i % 3][0], health_failures=start[i % 3][1], log_seq=7 if i == 4 else 0,
            )
            for i in range(600)
        ]
    )  # fmt: skip
    gone = "many-010"

    def probe_many(rows):
        Instance.objects.filter(instance_id=gone).update(state="destroyed", destroyed_at=timezone.now())
        return [
            {"pk": row["pk"], "ok": row["health_status"] != "healthy", "status": row["health_status"], "failures": row["health_failures"],
             "status_code": 503 if row["health_status"] == "healthy" else 200, "latency_ms": 1.0,
             "detail": "HTTP 503" if row["health_status"] == "healthy" else ""}
            for row in rows
        ]  # fmt: skip

    monkeypatch.setattr(jobs, "probe_many", probe_many)
    # the sweep's SELECT, then per batch of 500 a fixed set of statements (about 20 on SQLite,
    # whose 999-parameter cap splits each bulk statement in a few): not one per instance
    with django_capture_on_commit_callbacks() as callbacks, django_assert_max_num_queries(50):
        summary = health_sweep()
    assert summary["instances"] == 600 and summary["changed"] == 600

    instances = {i.instance_id: i for i in Instance.objects.all()}
    lines = {line.instance_id: line for line in LogLine.objects.filter(stage="health")}
    events = {e.object_id: e for e in ActivityEvent.objects.filter(action__startswith="instance.health.")}
    assert LogLine.objects.count() == len(lines) == len(events) == ActivityEvent.objects.count() == 599
    expected_alerts = {}
    for i in range(600):
        instance_id = f"many-{i:03d}"
        instance = instances[instance_id]
        if instance_id == gone:
            assert (instance.health_status, instance.health_failures, instance.last_health_check) == (*start[i % 3], None)
            assert instance.pk not in lines and instance_id not in events
            continue
        previous, failures = start[i % 3]
        status, failures = ("unhealthy", failures + 1) if previous == "healthy" else ("healthy", 0)
        detail = "HTTP 503" if status == "unhealthy" else ""
        assert (instance.health_status, instance.health_failures) == (status, failures)
        assert instance.last_health_check is not None and instance.log_seq == (8 if i == 4 else 1)
        line = lines[instance.pk]
        assert (line.seq, line.level) == (instance.log_seq, "warning" if status == "unhealthy" else "info")
        assert line.message == f"health {previous} → {status}" + (f": {detail}" if detail else "")
        event = events[instance_id]
        assert (event.action, event.actor_type, event.actor_label, event.tenant_id, event.object_type) == (
            f"instance.health.{status}", "system", "health-checker", instance.tenant_id, "instance"
        )
        assert event.data == {"previous": previous, "failures": failures, "detail": detail}
        if instance.tenant_id == tenant.pk and status == "unhealthy":
            expected_alerts[instance_id] = ("instance.health_down", {"instance_id": instance_id, "failures": failures, "detail": detail})
        elif instance.tenant_id == tenant.pk and previous == "unhealthy":
            expected_alerts[instance_id] = ("instance.health_up", {"instance_id": instance_id})
    deliveries = list(AlertDelivery.objects.all())
    assert {d.payload["data"]["instance_id"]: (d.event, d.payload["data"]) for d in deliveries} == expected_alerts
    assert len(deliveries) == len(expected_alerts) == 199  # 100 down, 100 up, less the destroyed one
    for delivery in deliveries:
        assert delivery.tenant_id == tenant.pk and delivery.url == "https://hooks.example.com/orchestrio" and delivery.status == "pending"
        assert delivery.payload["id"] == delivery.pk and delivery.payload["type"] == delivery.event and delivery.payload["tenant_id"] == tenant.pk
    assert len(callbacks) == len(deliveries)  # each delivery is enqueued once the batch commits
