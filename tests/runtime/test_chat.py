"""Chat through the instance's agent runtime (issue 21, item 1): the reply, the conversation kept
on the instance, token counts, streaming, the bounds, and how the instance's failures map."""

from __future__ import annotations

import json
import os

import pytest

from runtime.api.views import InstanceRuntimeViewSet

from ..factories import InstanceFactory
from ..helpers import assert_error, assert_validation_error, local_instance, run_jobs


def tokens(text: str) -> int:
    return -(-len(text) // 4)  # docs/agent.md: one per 4 characters, rounded up


def sse(response) -> list[tuple[str, dict]]:
    events = []
    for block in b"".join(response.streaming_content).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event"), json.loads(fields["data"])))
    return events


@pytest.mark.slow
def test_chat_end_to_end_with_a_real_instance(api, other_api, live, settings):
    live("chat-01")
    first = api.post("instances/chat-01/chat", {"message": "Hello there", "user": "alice"})
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["skill"] == "greeting" and "chat-01" in body["reply"] and body["model"] == "default"
    assert body["tokens_in"] == tokens("Hello there") == 3 and body["tokens_out"] == tokens(body["reply"])
    cid = body["conversation_id"]

    again = api.post("instances/chat-01/chat", {"message": "what is this?", "conversation_id": cid}).json()
    assert again["skill"] == "echo" and again["reply"] == "You said: what is this?" and again["conversation_id"] == cid

    # Streamed: `delta` pieces that make the reply, then `done` with the exchange.
    streamed = api.post("instances/chat-01/chat", {"message": "help", "conversation_id": cid}, headers={"Accept": "text/event-stream"})
    assert streamed.status_code == 200 and streamed["Content-Type"] == "text/event-stream" and streamed["Cache-Control"] == "no-store"
    assert streamed["Content-Security-Policy"] == "sandbox" and streamed["X-Content-Type-Options"] == "nosniff"
    events = sse(streamed)
    assert [name for name, _ in events[:-1]] == ["delta"] * (len(events) - 1) and events[-1][0] == "done"
    done = events[-1][1]
    assert "".join(data["text"] for _, data in events[:-1]) == done["reply"] and done["skill"] == "help"

    # Recorded on the instance (its agent's state dir), not in the control plane's database.
    state = os.path.join(local_instance("chat-01").provider_data["dir"], "state", "conversations")
    saved = json.loads(open(os.path.join(state, f"{cid}.json")).read())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"] * 3
    assert saved["messages"][0]["content"] == "Hello there" and saved["messages"][0]["tokens"] == 3
    assert saved["messages"][0]["user"] and "alice" not in json.dumps(saved)  # the end user's id is hashed

    assert other_api.post("instances/chat-01/chat", {"message": "hi"}).status_code == 404


@pytest.mark.slow
def test_a_retried_chat_with_its_idempotency_key_is_replayed_not_sent_again(api, live):
    live("chat-idem")
    key = {"Idempotency-Key": "chat-retry-1"}
    first = api.post("instances/chat-idem/chat", {"message": "Hello"}, headers=key)
    assert first.status_code == 200, first.content
    again = api.post("instances/chat-idem/chat", {"message": "Hello"}, headers=key)
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert_error(api.post("instances/chat-idem/chat", {"message": "Other"}, headers=key), 409)
    cid = first.json()["conversation_id"]
    state = os.path.join(local_instance("chat-idem").provider_data["dir"], "state", "conversations")
    assert len(json.loads(open(os.path.join(state, f"{cid}.json")).read())["messages"]) == 2  # sent once
    # An event stream cannot be replayed: its key is released, and a retry is a new exchange.
    stream = {"Idempotency-Key": "chat-stream-1", "Accept": "text/event-stream"}
    assert sse(api.post("instances/chat-idem/chat", {"message": "help"}, headers=stream))[-1][0] == "done"
    retried = api.post("instances/chat-idem/chat", {"message": "help"}, headers=stream)
    assert "Idempotent-Replayed" not in retried and sse(retried)[-1][0] == "done"


@pytest.mark.slow
def test_the_message_bounds_and_unicode(api, live):
    live("chat-02")
    assert_validation_error(api.post("instances/chat-02/chat", {"message": ""}), ("body", "message"))
    assert api.post("instances/chat-02/chat", {"message": "x"}).status_code == 200
    at_limit = api.post("instances/chat-02/chat", {"message": "é" * 8000})
    assert at_limit.status_code == 200 and at_limit.json()["tokens_in"] == 2000
    assert_validation_error(api.post("instances/chat-02/chat", {"message": "x" * 8001}), ("body", "message"))
    assert_error(api.post("instances/chat-02/chat", raw='{"message": "\\ud800"}'), 422)  # a lone surrogate
    assert_validation_error(api.post("instances/chat-02/chat", {"message": 5}), ("body", "message"))
    assert_validation_error(api.post("instances/chat-02/chat", {"message": "hi", "conversation_id": "../etc"}), ("body", "conversation_id"))


@pytest.mark.slow
def test_a_stopped_instance_is_400(api, live):
    live("chat-03")
    api.post("instances/chat-03/stop")
    run_jobs()
    assert_error(api.post("instances/chat-03/chat", {"message": "hi"}), 400, contains="running")
    assert_error(api.post("instances/chat-03/chat", {"message": "hi"}, headers={"Accept": "text/event-stream"}), 400, contains="running")


def test_instance_failures_map_as_the_gateway_maps_them(api, tenant, broken_agent, settings):
    InstanceFactory(tenant=tenant, instance_id="crashy", state="running", ip_address="127.0.0.1", port=broken_agent())
    assert_error(api.post("instances/crashy/chat", {"message": "hi"}), 502, contains="did not answer")
    assert_error(api.post("instances/crashy/chat", {"message": "hi"}, headers={"Accept": "text/event-stream"}), 502)
    settings.CHAT_TIMEOUT_SECONDS = 0.5
    InstanceFactory(tenant=tenant, instance_id="sleepy", state="running", ip_address="127.0.0.1", port=broken_agent(slow=True))
    assert_error(api.post("instances/sleepy/chat", {"message": "hi"}), 504, contains="in time")
    InstanceFactory(tenant=tenant, instance_id="gone", state="running", ip_address="127.0.0.1", port=1)  # nothing listens
    assert_error(api.post("instances/gone/chat", {"message": "hi"}), 502)


def test_members_chat_and_scoped_tokens_reach_only_their_instance(member_api, api, tenant):
    assert InstanceRuntimeViewSet.capabilities["chat"] == "operate"
    InstanceFactory(tenant=tenant, instance_id="idle-1", state="stopped")
    assert_error(member_api.post("instances/idle-1/chat", {"message": "hi"}), 400)  # past the role check


def test_chats_count_against_the_long_poll_caps(api, tenant, token, broken_agent, settings):
    from orchestrio import longpoll
    from orchestrio.tenancy import Principal

    InstanceFactory(tenant=tenant, instance_id="capped", state="running", ip_address="127.0.0.1", port=broken_agent())
    settings.LONG_POLL_MAX_PER_PRINCIPAL = 1
    with longpoll.long_poll_slot(Principal(tenant=tenant, role="owner", token=token), "wait"):
        for headers in ({}, {"Accept": "text/event-stream"}):
            refused = api.post("instances/capped/chat", {"message": "hi"}, headers=headers)
            assert_error(refused, 429, contains="long polls")
            assert refused["Retry-After"]
    assert longpoll._held_here == 0  # a refused or failed chat gives its slot back
    assert_error(api.post("instances/capped/chat", {"message": "hi"}), 502)
    assert longpoll._held_here == 0


def test_odd_answers_from_the_instance_are_502_not_500(api, tenant):
    """The agent runs on the tenant's machine: whatever it answers is input, checked."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = iter([
        {"reply": "hi"},  # a chat without its counts
        {"count": 1, "results": [{"id": "c", "messages": "many", "preview": ""}]},
        {"id": "c", "messages": [{"role": "system", "content": "x", "at": "t", "tokens": 1}]},
        {"results": [{"id": "c", "messages": 2, "preview": "hi"}]},  # no count: the results' length
    ])

    class Odd(BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = json.dumps(next(answers)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        InstanceFactory(tenant=tenant, instance_id="odd-1", state="running", ip_address="127.0.0.1", port=server.server_port)
        api.patch("instances/odd-1/consent", {"debug_access": True})
        assert_error(api.post("instances/odd-1/chat", {"message": "hi"}), 502, contains="unexpected shape")
        assert_error(api.get("instances/odd-1/conversations"), 502, contains="unexpected shape")
        assert_error(api.get("instances/odd-1/conversations/c"), 502, contains="unexpected shape")
        assert api.get("instances/odd-1/conversations").json()["count"] == 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("raw, last", [
    (b'event: delta\ndata: {"text": "he"}\n\nevent: script\ndata: {"x": 1}\n\n', "other than its events"),
    (b'event: delta\ndata: {"text": "he"}\n\n', "ended before"),
    (b'<html><script>alert(1)</script>\n\n', "ended before"),
])
def test_a_stream_is_checked_event_by_event(api, tenant, raw, last):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Streamer(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Streamer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        InstanceFactory(tenant=tenant, instance_id="streamy", state="running", ip_address="127.0.0.1", port=server.server_port)
        events = sse(api.post("instances/streamy/chat", {"message": "hi"}, headers={"Accept": "text/event-stream"}))
        assert events[-1][0] == "error" and last in events[-1][1]["detail"]
        assert all(name in ("delta", "error") for name, _ in events) and b"script" not in json.dumps(events).encode()
    finally:
        server.shutdown()
        server.server_close()


def test_a_long_chat_renews_its_slot(api, tenant, broken_agent, settings, monkeypatch):
    from orchestrio import longpoll
    from runtime.api import views

    renewed = []
    monkeypatch.setattr(views, "RENEW_SECONDS", 0.05)
    monkeypatch.setattr(longpoll.Slot, "renew", lambda self: renewed.append(1))
    InstanceFactory(tenant=tenant, instance_id="slow-1", state="running", ip_address="127.0.0.1", port=broken_agent(slow=True))
    settings.CHAT_TIMEOUT_SECONDS = 1
    assert_error(api.post("instances/slow-1/chat", {"message": "hi"}), 504)
    assert len(renewed) >= 5 and longpoll._held_here == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_chat_wakes_an_asleep_instance_and_counts_as_traffic(api, live):
    from datetime import timedelta

    from django.utils import timezone

    from gateway import traffic, wake
    from instances.models import Instance, Operation

    from ..helpers import BackgroundWorker, call_job

    live("chat-nap")
    assert api.patch("instances/chat-nap", {"idle_timeout_seconds": 60}).status_code == 200
    assert call_job(wake.idle_sweep, now=timezone.now() + timedelta(seconds=61))["slept"] == ["chat-nap"]
    run_jobs()
    assert Instance.objects.get(instance_id="chat-nap").state == "asleep"
    with BackgroundWorker(interval=0.05):
        reply = api.post("instances/chat-nap/chat", {"message": "hello"})
    assert reply.status_code == 200, reply.content
    assert "chat-nap" in reply.json()["reply"]
    assert list(Operation.objects.filter(instance__instance_id="chat-nap", kind="wake").values_list("reason", "status")) == [("request", "succeeded")]
    pk = Instance.objects.get(instance_id="chat-nap").pk
    assert (timezone.now() - traffic.last_seen([pk])[pk]).total_seconds() < 30  # the idle sweep counts the chat
