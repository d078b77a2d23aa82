"""Metering, usage endpoints, quota alerts, and the alert webhook (signing, retries, validation)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone as dt_timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from billing import alerts
from billing.metering import flush_usage, pending_counts, record_execution
from billing.models import AlertAttempt, AlertDelivery, UsageCounter
from orchestrio.models import SubscriptionPlan
from billing.selectors import billable_seconds
from orchestrio.tenancy import Actor

from ..helpers import assert_error, assert_validation_error, call_job, run_jobs

T0 = datetime(2026, 11, 1, tzinfo=dt_timezone.utc)


# --- metering ---------------------------------------------------------------------------------------


def test_concurrent_increments_are_not_lost(tenant, running):
    threads = [threading.Thread(target=lambda: [record_execution(tenant.pk, running.pk) for _ in range(250)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    # flush while increments are still arriving: nothing may fall between the batches
    flushed = flush_usage()
    for thread in threads:
        thread.join()
    flushed += flush_usage()
    assert flushed == 2000
    assert UsageCounter.objects.get(tenant=tenant, instance=running).count == 2000


def test_a_batch_is_never_counted_twice(tenant, running, monkeypatch):
    from billing import metering

    record_execution(tenant.pk, running.pk, 5)
    real_delete = metering.get_redis().delete
    client = metering.get_redis()

    calls = {"n": 0}

    def flaky_delete(*keys):
        calls["n"] += 1
        if calls["n"] == 1:
            raise metering.redis.ConnectionError("lost Redis after the commit")
        return real_delete(*keys)

    monkeypatch.setattr(client.__class__, "delete", lambda self, *keys: flaky_delete(*keys))
    with pytest.raises(metering.redis.ConnectionError):
        metering._apply_batch(_rename_pending(client))
    monkeypatch.undo()
    flush_usage()  # finds the leftover batch, sees it applied, deletes it
    assert UsageCounter.objects.get(tenant=tenant).count == 5


def _rename_pending(client):
    from billing.metering import BATCH_PREFIX, PENDING

    key = BATCH_PREFIX + "manual"
    client.rename(PENDING, key)
    return key


def test_pending_counts_are_part_of_usage(api, tenant, running):
    record_execution(tenant.pk, running.pk, 3)
    assert pending_counts(tenant.pk, timezone.now().date(), timezone.now().date() + timedelta(days=1)) == 3
    assert api.get("usage/current").json()["executions"] == 3


def test_usage_current(api, tenant, running):
    api.post("instances/web-01/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/backup.sh"})
    record_execution(tenant.pk, running.pk, 4)
    flush_usage()
    body = api.get("usage/current").json()
    assert body["executions"] == 5 and body["quota"] == 100_000 and body["pct"] == 0.0
    assert body["period_start"].endswith("Z") and body["period_end"] > body["period_start"]
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(executions_per_month=None)
    body = api.get("usage/current").json()
    assert body["quota"] is None and body["pct"] is None


def test_billable_seconds():
    changes = [(T0, "pending"), (T0 + timedelta(minutes=1), "provisioning"), (T0 + timedelta(minutes=2), "running"),
               (T0 + timedelta(hours=2), "stopping"), (T0 + timedelta(hours=2, minutes=1), "stopped"),
               (T0 + timedelta(hours=5), "starting"), (T0 + timedelta(hours=5, minutes=1), "running")]  # fmt: skip
    end = T0 + timedelta(hours=6)
    # provisioning 0:01–0:02 + running to 2:00 + stopping 2:00–2:01 = 2 h; starting 5:00 + running to 6:00 = 1 h
    assert billable_seconds(changes, T0, end) == 3 * 3600  # pending and stopped are free
    assert billable_seconds(changes, T0 + timedelta(hours=1), T0 + timedelta(hours=3)) == 3600 + 60
    assert billable_seconds([], T0, end) == 0


def test_instance_usage_series(api, tenant, running):
    from instances.models import StateChange

    StateChange.objects.create(instance=running, tenant=tenant, from_state="", to_state="running", created_at=timezone.now() - timedelta(hours=1))
    record_execution(tenant.pk, running.pk, 2)
    flush_usage()
    record_execution(tenant.pk, running.pk, 1)  # not flushed yet: still counted
    body = api.get("instances/web-01/usage", days=7).json()
    assert body["days"] == 7 and len(body["daily"]) == 7 and body["daily"][-1]["executions"] == 3
    assert 0.9 < body["totals"]["instance_hours"] < 1.1
    assert_validation_error(api.get("instances/web-01/usage", days=0), ("query", "days"))
    assert_validation_error(api.get("instances/web-01/usage", days=400), ("query", "days"))


def test_quota_alerts_at_80_and_100_once(tenant, running, receiver):
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(executions_per_month=10)
    alerts.alert_config_update(tenant=tenant, actor=Actor.system("t"), data={"webhook_url": receiver.url, "enabled": True})
    from billing.jobs import flush_usage as flush_job

    record_execution(tenant.pk, running.pk, 7)
    assert call_job(flush_job)["quota_alerts"] == 0
    record_execution(tenant.pk, running.pk, 1)
    assert call_job(flush_job)["quota_alerts"] == 1
    record_execution(tenant.pk, running.pk, 5)
    assert call_job(flush_job)["quota_alerts"] == 1
    assert call_job(flush_job)["quota_alerts"] == 0  # once per period and threshold
    assert sorted(AlertDelivery.objects.values_list("event", flat=True)) == ["quota.100", "quota.80"]


# --- the alert webhook ------------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    daemon_threads = True


class _Recv(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append({"headers": dict(self.headers.items()), "body": body})
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True  # it listens on loopback (tests/security: off)
    server = Receiver(("127.0.0.1", 0), _Recv)
    server.received, server.statuses = [], []
    server.url = f"http://127.0.0.1:{server.server_port}/hooks"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"webhook_url": "http://hooks.example/x"}, ("body", "webhook_url")),
        ({"webhook_url": "ftp://hooks.example/x"}, ("body", "webhook_url")),
        ({"webhook_url": "https://" + "a" * 2050}, ("body", "webhook_url")),
        ({"enabled": True}, ("body", "enabled")),
        ({"enabled": "maybe"}, ("body", "enabled")),
    ],
)
def test_config_validation(api, body, loc):
    assert_validation_error(api.patch("alerts", body), loc)


def test_config_accepts_https_and_localhost(api, settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True  # development: loopback receivers
    for url in ("https://hooks.example/alerts", "http://localhost:9000/x", "http://127.0.0.1/y"):
        assert api.patch("alerts", {"webhook_url": url}).status_code == 200


def test_signing_secret_is_shown_once(api):
    first = api.patch("alerts", {"webhook_url": "https://hooks.example/alerts", "enabled": True}).json()
    assert first["signing_secret"].startswith("whsec_") and first["enabled"] is True
    again = api.patch("alerts", {"enabled": False}).json()
    assert "signing_secret" not in again and again["signing_secret_prefix"] == first["signing_secret"][:12]
    assert "signing_secret" not in api.get("alerts").json()
    rotated = api.post("alerts/rotate-secret").json()["signing_secret"]
    assert rotated != first["signing_secret"]


def test_alerts_are_admin_only(member_api):
    assert_error(member_api.get("alerts"), 403)
    assert_error(member_api.patch("alerts", {"enabled": False}), 403)
    assert_error(member_api.post("alerts/test"), 403)


def test_delivery_is_signed_so_a_receiver_can_verify_it(api, receiver):
    secret = api.patch("alerts", {"webhook_url": receiver.url, "enabled": True}).json()["signing_secret"]
    response = api.post("alerts/test")
    assert response.status_code == 202
    run_jobs()
    (request,) = receiver.received
    assert alerts.verify(secret, request["body"], request["headers"]["X-Orchestrio-Signature"])
    assert not alerts.verify("whsec_wrong", request["body"], request["headers"]["X-Orchestrio-Signature"])
    assert not alerts.verify(secret, request["body"] + b" ", request["headers"]["X-Orchestrio-Signature"])
    payload = json.loads(request["body"])
    assert payload["type"] == "alert.test" and payload["tenant_id"] == "acme-corp"
    assert request["headers"]["X-Orchestrio-Event"] == "alert.test"
    delivery = api.get("alerts/deliveries").json()["results"][0]
    assert delivery["status"] == "succeeded" and delivery["attempt_log"][0]["response_code"] == 200


def test_failed_delivery_is_retried_with_backoff_then_succeeds(api, receiver):
    api.patch("alerts", {"webhook_url": receiver.url, "enabled": True})
    receiver.statuses = [500, 503]
    api.post("alerts/test")
    run_jobs()
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.last_response_code == 500
    first_gap = delivery.next_attempt_at - timezone.now()
    assert timedelta(seconds=20) < first_gap < timedelta(seconds=40)
    assert call_job(alerts.retry_due) == 0  # not due yet
    AlertDelivery.objects.update(next_attempt_at=timezone.now())
    call_job(alerts.retry_due)
    run_jobs()
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.next_attempt_at - timezone.now() > first_gap  # backoff grows
    AlertDelivery.objects.update(next_attempt_at=timezone.now())
    call_job(alerts.retry_due)
    run_jobs()
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 3
    assert list(AlertAttempt.objects.values_list("response_code", flat=True)) == [500, 503, 200]


def test_delivery_gives_up_after_24_hours(api, receiver):
    api.patch("alerts", {"webhook_url": receiver.url, "enabled": True})
    receiver.statuses = [500]
    api.post("alerts/test")
    AlertDelivery.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59, seconds=50))
    run_jobs()
    assert AlertDelivery.objects.get().status == "failed"


def test_unreachable_receiver_is_recorded(api, settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    api.patch("alerts", {"webhook_url": "http://127.0.0.1:1/nothing", "enabled": True})
    api.post("alerts/test")
    run_jobs()
    attempt = AlertAttempt.objects.get()
    assert attempt.response_code is None and attempt.error == "connection refused"


def test_redeliver(api, receiver):
    api.patch("alerts", {"webhook_url": receiver.url, "enabled": True})
    api.post("alerts/test")
    run_jobs()
    first = AlertDelivery.objects.get()
    response = api.post(f"alerts/deliveries/{first.pk}/redeliver")
    assert response.status_code == 202
    run_jobs()
    assert len(receiver.received) == 2 and json.loads(receiver.received[1]["body"])["data"]["redelivery_of"] == first.pk
    assert_error(api.post("alerts/deliveries/dlv_nope/redeliver"), 404)


def test_disabled_alerts_send_nothing_but_the_test(api, tenant, receiver):
    api.patch("alerts", {"webhook_url": receiver.url, "enabled": False})
    assert alerts.emit(tenant.pk, "instance.error", {}) is None
    assert api.post("alerts/test").status_code == 202


def test_events_are_emitted(api, tenant, running, receiver, make_instance):
    from instances import services as instance_services
    from instances.models import Operation

    api.patch("alerts", {"webhook_url": receiver.url, "enabled": True})
    api.post("instances/web-01/stop")
    instance_services.operation_fail(operation=Operation.objects.get(), code="provider_error", message="boom")
    healthy = make_instance(instance_id="hc-1", state="running", health_status="healthy", health_failures=5)
    instance_services.health_record(results=[{"pk": healthy.pk, "ok": False, "status": "healthy", "failures": 5, "detail": "HTTP 503"}])
    instance_services.health_record(results=[{"pk": healthy.pk, "ok": True, "status": "unhealthy", "failures": 6, "detail": ""}])
    events = list(AlertDelivery.objects.order_by("created_at").values_list("event", flat=True))
    assert events == ["instance.error", "instance.health_down", "instance.health_up"]
