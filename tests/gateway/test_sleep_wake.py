"""Scale to zero (docs/lifecycle.md, "Sleep and wake"): the idle sweep puts a local instance with
no traffic to sleep (a real process, SIGSTOPped), a request through the tunnel, the gateway or its
hostname wakes it and gets the instance's own answer, concurrent requests share one wake, a
person's suspend is not undone by traffic (409), a wake that takes too long answers 504, and
sleeping time is not instance-hours."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from gateway import traffic, wake
from instances.models import Instance, Operation, StateChange
from instances.providers.local import process_state
from orchestrio.models import ActivityEvent

from ..helpers import BackgroundWorker, assert_error, assert_validation_error, call_job, local_pid, run_jobs

pytestmark = pytest.mark.slow


def _json(response) -> dict:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return json.loads(body)


def call(path: str, *, token: str | None = None, method: str = "GET", **extra):
    meta = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    response = Client().generic(method, path, **meta, **extra)
    if response.streaming:
        response.content_bytes = b"".join(response.streaming_content)  # the proxy's slot is released at the stream's end
    return response


def body_of(response) -> dict:
    return json.loads(getattr(response, "content_bytes", None) or response.content)


def asleep(api, instance_id: str, *, timeout: int = 60) -> Instance:
    """Set a short idle timeout and run the idle sweep as if that long had passed (a fixed clock,
    no waiting), then the sleep it started."""
    assert api.patch(f"instances/{instance_id}", {"idle_timeout_seconds": timeout}).status_code == 200
    summary = call_job(wake.idle_sweep, now=timezone.now() + timedelta(seconds=timeout + 1))
    assert summary["slept"] == [instance_id], summary
    run_jobs()
    return Instance.objects.get(instance_id=instance_id, destroyed_at__isnull=True)


# --- sleep after idle --------------------------------------------------------------------------


def test_an_idle_instance_is_put_to_sleep_by_the_sweep_and_traffic_keeps_another_awake(api, live):
    live("sw-idle")
    live("sw-busy")
    for instance_id in ("sw-idle", "sw-busy"):
        assert api.patch(f"instances/{instance_id}", {"idle_timeout_seconds": 60}).json()["effective_idle_timeout_seconds"] == 60
    now = timezone.now()
    # Not idle long enough yet: both started running a moment ago.
    assert call_job(wake.idle_sweep, now=now + timedelta(seconds=30))["slept"] == []
    # sw-busy is called 50 s "later" (the traffic's time is what the proxy records): still within its timeout.
    busy = Instance.objects.get(instance_id="sw-busy")
    traffic.record(busy.pk, ms=1.0, at=(now + timedelta(seconds=50)).timestamp())
    assert call_job(wake.idle_sweep, now=now + timedelta(seconds=90))["slept"] == ["sw-idle"]

    idle = Instance.objects.get(instance_id="sw-idle")
    assert idle.state == "sleeping"
    operation = Operation.objects.get(instance=idle, kind="sleep")
    assert operation.reason == "idle" and operation.requested_by == "idle-sweep"
    run_jobs()
    idle.refresh_from_db()
    assert idle.state == "asleep"
    assert process_state(local_pid("sw-idle")) == "suspended"  # the real process is stopped (SIGSTOP)
    record = api.get("instances/sw-idle/operations").json()["results"][0]
    assert record["kind"] == "sleep" and record["reason"] == "idle" and record["status"] == "succeeded"
    assert ActivityEvent.objects.filter(action="instance.sleep", object_id="sw-idle", data__reason="idle").exists()
    assert Instance.objects.get(instance_id="sw-busy").state == "running"


@pytest.mark.django_db(transaction=True)
def test_a_request_in_progress_keeps_it_awake(api, make_instance):
    """The sweep never suspends an instance under a request it is still answering: a request is
    noted as traffic when it starts, not only when it ends."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            release.wait(10)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    an_hour_ago = timezone.now() - timedelta(hours=1)
    instance = make_instance(instance_id="sw-inflight", state="running", ip_address="127.0.0.1", port=server.server_address[1], idle_timeout_seconds=60)
    Instance.objects.filter(pk=instance.pk).update(state_changed_at=an_hour_ago)
    statuses = []

    def caller():
        try:
            statuses.append(call("/tunnel/sw-inflight/slow", token=api.token).status_code)
        finally:
            connection.close()

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not traffic.last_seen([instance.pk]) and time.monotonic() < deadline:
            time.sleep(0.02)
        # An hour without a finished request, but one in progress since just now: not idle.
        assert wake.idle_sweep(now=timezone.now() + timedelta(seconds=30))["slept"] == []
        assert Instance.objects.get(pk=instance.pk).state == "running"
    finally:
        release.set()
        thread.join(timeout=10)
        server.shutdown()
    assert statuses == [200]


def test_no_idle_timeout_never_sleeps_and_the_instance_overrides_its_blueprint(api, live):
    live("sw-never")
    far = timezone.now() + timedelta(days=60)
    assert call_job(wake.idle_sweep, now=far)["candidates"] == 0  # the built-in blueprint has none
    response = api.post("blueprints", {"name": "sleepy", "idle_timeout_seconds": 300})
    assert response.status_code == 201 and response.json()["idle_timeout_seconds"] == 300
    instance = Instance.objects.get(instance_id="sw-never")
    instance.blueprint = instance.blueprint.__class__.objects.get(name="sleepy")
    instance.save(update_fields=["blueprint"])
    assert api.get("instances/sw-never").json()["effective_idle_timeout_seconds"] == 300
    assert api.patch("instances/sw-never", {"idle_timeout_seconds": 0}).json()["effective_idle_timeout_seconds"] == 0
    assert call_job(wake.idle_sweep, now=far)["slept"] == []  # 0 on the instance: never, whatever the blueprint says
    record = api.patch("instances/sw-never", {"idle_timeout_seconds": None}).json()
    assert record["idle_timeout_seconds"] is None and record["effective_idle_timeout_seconds"] == 300
    assert call_job(wake.idle_sweep, now=far)["slept"] == ["sw-never"]
    run_jobs()


@pytest.mark.parametrize("value", [-1, 5, 59, 30 * 86400 + 1, "soon", 1.5, True])
def test_idle_timeout_validation(api, running, value):
    assert_validation_error(api.patch("instances/web-01", {"idle_timeout_seconds": value}), ("body", "idle_timeout_seconds"))
    assert_validation_error(api.post("blueprints", {"name": "bad-idle", "idle_timeout_seconds": value}), ("body", "idle_timeout_seconds"))
    assert_validation_error(api.post("instances", {"instance_id": "bad-idle", "idle_timeout_seconds": value}), ("body", "idle_timeout_seconds"))
    assert api.patch("instances/web-01", {"idle_timeout_seconds": 60}).status_code == 200
    assert ActivityEvent.objects.filter(action="instance.update", object_id="web-01", data={"idle_timeout_seconds": 60}).exists()


# --- sleep and wake by hand --------------------------------------------------------------------


def test_sleep_and_wake_routes(api, member_api, other_api, live):
    live("sw-hand")
    assert_error(other_api.post("instances/sw-hand/sleep"), 404)
    response = member_api.post("instances/sw-hand/sleep", headers={"Idempotency-Key": "nap-1"})
    assert response.status_code == 202 and response.json()["state"] == "sleeping"
    replay = member_api.post("instances/sw-hand/sleep", headers={"Idempotency-Key": "nap-1"})
    assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true"
    assert_error(api.post("instances/sw-hand/wake"), 409, contains="sleep operation is queued")
    run_jobs()
    assert api.get("instances/sw-hand").json()["state"] == "asleep"
    assert_error(api.post("instances/sw-hand/sleep"), 400, contains="cannot sleep")
    assert_error(api.post("instances/sw-hand/resume"), 400, contains="resume needs an instance that is suspended")
    assert_error(other_api.post("instances/sw-hand/wake"), 404)
    response = member_api.post("instances/sw-hand/wake")
    assert response.status_code == 202 and response.json()["state"] == "waking"
    run_jobs()
    assert api.get("instances/sw-hand").json()["state"] == "running"
    kinds = [(op["kind"], op["reason"], op["status"]) for op in api.get("instances/sw-hand/operations").json()["results"]]
    assert kinds[:2] == [("wake", None, "succeeded"), ("sleep", None, "succeeded")]
    assert ActivityEvent.objects.filter(action="instance.wake", object_id="sw-hand").exists()


# --- wake on request ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_request_wakes_it_and_gets_the_instances_answer(api, live):
    live("sw-wake")
    policy = api.post("instances/sw-wake/gateway-policies", {"slug": "hook", "provider": "anonymous"})
    assert policy.status_code == 201
    asleep(api, "sw-wake")
    with BackgroundWorker(interval=0.05):
        started = time.monotonic()
        response = call("/tunnel/sw-wake/hello?x=1", token=api.token)
        cold = time.monotonic() - started
        assert response.status_code == 200, response.content
        echo = body_of(response)
        assert echo["echo"] is True and echo["instance_id"] == "sw-wake" and echo["path"] == "/hello"
        assert process_state(local_pid("sw-wake")) == "running"
        wakes = Operation.objects.filter(instance__instance_id="sw-wake", kind="wake")
        assert [(op.reason, op.status, op.requested_by) for op in wakes] == [("request", "succeeded", "wake-on-request")]
        assert cold < 15

        # Asleep again: a gateway slug and the instance's own hostname wake it as well.
        asleep(api, "sw-wake")
        hook = call("/gateway/sw-wake/hook", method="POST")
        assert hook.status_code == 200 and body_of(hook)["webhook_slug"] == "hook"
        asleep(api, "sw-wake")
        own = call("/", token=api.token, HTTP_HOST="sw-wake.instances.localhost")
        assert own.status_code == 200 and body_of(own)["instance_id"] == "sw-wake"
    assert Operation.objects.filter(instance__instance_id="sw-wake", kind="wake", reason="request").count() == 3


@pytest.mark.django_db(transaction=True)
def test_unauthenticated_requests_do_not_wake_it(api, live):
    live("sw-auth")
    asleep(api, "sw-auth")
    assert call("/tunnel/sw-auth/").status_code == 401
    assert call("/tunnel/sw-auth/", token="ork_live_" + "x" * 38).status_code == 401
    assert not Operation.objects.filter(instance__instance_id="sw-auth", kind="wake").exists()
    assert Instance.objects.get(instance_id="sw-auth").state == "asleep"


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_share_one_wake(api, live, settings):
    live("sw-many")
    asleep(api, "sw-many")
    settings.LONG_POLL_MAX_PER_PRINCIPAL = 8  # all six held at once by one token
    results: list[tuple[int, dict]] = []

    def caller():
        try:
            response = call(f"/tunnel/sw-many/n{threading.get_ident()}", token=api.token)
            results.append((response.status_code, body_of(response)))
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    # Every caller is held (no worker yet): the first accepted the wake, the others found it.
    deadline = time.monotonic() + 10
    while not Operation.objects.filter(instance__instance_id="sw-many", kind="wake").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert results == []
    assert Instance.objects.get(instance_id="sw-many").state == "waking"
    with BackgroundWorker(interval=0.05):
        for thread in threads:
            thread.join(timeout=20)
    assert sorted(status for status, _ in results) == [200] * 6, results
    assert all(body["instance_id"] == "sw-many" for _, body in results)
    assert Operation.objects.filter(instance__instance_id="sw-many", kind="wake").count() == 1


def test_the_wake_timeout_answers_504_and_the_wake_goes_on(api, make_instance, settings):
    """No worker runs the wake here: the request gives up after INSTANCE_WAKE_WAIT_SECONDS."""
    make_instance(instance_id="sw-slow", state="asleep")
    settings.INSTANCE_WAKE_WAIT_SECONDS = 1
    started = time.monotonic()
    response = call("/tunnel/sw-slow/", token=api.token)
    body = assert_error(response, 504, contains="was not ready within 1s")
    assert "retry shortly" in body["detail"]
    assert 0.9 < time.monotonic() - started < 5
    operation = Operation.objects.get(instance__instance_id="sw-slow")
    assert (operation.kind, operation.reason, operation.status) == ("wake", "request", "queued")
    assert Instance.objects.get(instance_id="sw-slow").state == "waking"
    # A second request joins that wake (and times out too): still one wake.
    assert call("/tunnel/sw-slow/", token=api.token).status_code == 504
    assert Operation.objects.filter(instance__instance_id="sw-slow").count() == 1


def test_a_wait_for_a_wake_takes_a_long_lived_slot(api, make_instance, settings):
    from orchestrio import longpoll

    make_instance(instance_id="sw-capped", state="waking")
    settings.INSTANCE_WAKE_WAIT_SECONDS = 1
    longpoll.set_server_threads(settings.LONG_POLL_RESERVED_THREADS)  # no thread to spare for a held request
    try:
        body = assert_error(call("/tunnel/sw-capped/", token=api.token), 429, contains="long polls and streams")
        assert body["detail"]
    finally:
        longpoll.set_server_threads(None)


@pytest.mark.parametrize("state", ["suspended", "suspending"])
def test_a_person_suspended_instance_is_not_woken_by_traffic(api, make_instance, state):
    make_instance(instance_id="sw-held", state=state)
    body = assert_error(call("/tunnel/sw-held/", token=api.token), 409, contains="suspended by a person")
    assert "resume it" in body["detail"]
    assert not Operation.objects.filter(instance__instance_id="sw-held").exists()
    assert Instance.objects.get(instance_id="sw-held").state == state


def test_suspending_an_asleep_instance_stops_traffic_from_waking_it(api, live):
    live("sw-held2")
    asleep(api, "sw-held2")
    assert api.post("instances/sw-held2/suspend").status_code == 202
    run_jobs()
    assert api.get("instances/sw-held2").json()["state"] == "suspended"
    assert_error(call("/tunnel/sw-held2/", token=api.token), 409, contains="suspended by a person")


def test_supports_tenant_wide_suspend_takes_asleep_instances_too(tenant, make_instance):
    """Support suspending a tenant (abuse, an unpaid bill) must not leave instances that the next
    request would wake."""
    from instances.services import tenant_instances_suspend
    from orchestrio.tenancy import Actor

    make_instance(instance_id="sw-t-asleep", state="asleep")
    make_instance(instance_id="sw-t-run", state="running")
    result = tenant_instances_suspend(tenant=tenant, actor=Actor.system("support"))
    assert sorted(result["suspended"]) == ["sw-t-asleep", "sw-t-run"]
    assert Instance.objects.get(instance_id="sw-t-asleep").state == "suspending"


def test_other_tenants_token_cannot_wake_it(api, other_api, make_instance):
    make_instance(instance_id="sw-private", state="asleep")
    assert call("/tunnel/sw-private/", token=other_api.token).status_code == 404
    assert not Operation.objects.filter(instance__instance_id="sw-private").exists()


# --- metering ----------------------------------------------------------------------------------


def test_instance_hours_exclude_sleep(api, make_instance):
    """Running from 0 to 1 h and from 6 h to 8 h, asleep in between: 3 h and 2 minutes — the
    running hours (less the minute of waking), plus the minutes of sleeping, waking and stopping,
    while the machine is still there — and none of the 5 h asleep."""
    from billing.selectors import instance_hours

    instance = make_instance(instance_id="sw-meter", state="running")
    StateChange.objects.filter(instance=instance).delete()
    t0 = datetime(2026, 3, 2, 0, 0, tzinfo=dt_timezone.utc)
    minute = timedelta(minutes=1)
    timeline = [
        (t0, "", "running"),
        (t0 + timedelta(hours=1), "running", "sleeping"),
        (t0 + timedelta(hours=1) + minute, "sleeping", "asleep"),
        (t0 + timedelta(hours=6), "asleep", "waking"),
        (t0 + timedelta(hours=6) + minute, "waking", "running"),
        (t0 + timedelta(hours=8), "running", "stopping"),
        (t0 + timedelta(hours=8) + minute, "stopping", "stopped"),
    ]
    for when, before, after in timeline:
        StateChange.objects.create(instance=instance, tenant_id=instance.tenant_id, from_state=before, to_state=after, created_at=when)
    hours = instance_hours(filters={"instance": instance}, start=t0, end=t0 + timedelta(days=1))
    assert hours == round((3 * 3600 + 2 * 60) / 3600, 3)


# --- the console -------------------------------------------------------------------------------


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def test_console_shows_asleep_apart_from_suspended_and_sets_the_idle_timeout(console, make_instance):
    make_instance(instance_id="sw-c-asleep", state="asleep")
    make_instance(instance_id="sw-c-held", state="suspended")
    page = console.get("/instances/sw-c-asleep").content.decode()
    assert "the next request through the gateway, the tunnel or its hostname wakes it" in page
    assert 'data-show-in="asleep">Wake</button>' in page and 'data-show-in="running" disabled>Sleep</button>' in page
    held = console.get("/instances/sw-c-held").content.decode()
    assert "suspended by a person: traffic does not wake it" in held
    assert 'data-show-in="asleep" disabled>Wake</button>' in held  # not offered for a person's suspend

    response = console.post("/instances/sw-c-asleep/idle-timeout", {"idle_timeout_seconds": "600"}, follow=True)
    assert b"sleeps after 600 s without traffic" in response.content
    assert Instance.objects.get(instance_id="sw-c-asleep").idle_timeout_seconds == 600
    response = console.post("/instances/sw-c-asleep/idle-timeout", {"idle_timeout_seconds": "5"}, follow=True)
    assert b"from 60 to" in response.content
    assert Instance.objects.get(instance_id="sw-c-asleep").idle_timeout_seconds == 600
    console.post("/instances/sw-c-asleep/idle-timeout", {"idle_timeout_seconds": ""})
    assert Instance.objects.get(instance_id="sw-c-asleep").idle_timeout_seconds is None  # the blueprint's again

    console.post("/instances/sw-c-asleep/wake")
    operation = Operation.objects.get(instance__instance_id="sw-c-asleep")
    assert operation.kind == "wake" and operation.reason == ""
    Operation.objects.filter(pk=operation.pk).update(status="succeeded")
    Operation.objects.create(instance=operation.instance, tenant_id=operation.tenant_id, kind="sleep", reason="idle", status="succeeded", requested_by="idle-sweep", requested_by_type="system")
    assert "sleep <small class=\"muted\">(no traffic for the idle timeout)</small>" in console.get("/instances/sw-c-asleep").content.decode()
    created = console.post("/instances/new", {"instance_id": "sw-c-new", "blueprint_name": "OpenClaw", "plan_id": "openclaw-basic", "region": "local", "idle_timeout_seconds": "120"})
    assert created.status_code == 302 and Instance.objects.get(instance_id="sw-c-new").idle_timeout_seconds == 120
