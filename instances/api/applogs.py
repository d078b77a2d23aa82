"""`GET /instances/{id}/app-logs`: the record, and its follow mode as server-sent events.

Following polls the instance's agent (once a second by default, `APP_LOG_FOLLOW_POLL_SECONDS`) for
lines after the last one sent, and writes each as an event:

    id: 42
    event: line
    data: {"seq": 42, "ts": "…", "stream": "stdout", "line": "…"}

An `event: status` (starts, restarts, last exit) comes first and again whenever the process has
started anew; a comment line every 15 s keeps idle connections open; the stream ends with
`event: end` after `timeout` seconds, or `event: error` when the instance can no longer be read
(stopped, unreachable). A client reconnects with `Last-Event-ID` and misses nothing still in the
ring buffer. The request holds a long-poll slot (the caps of docs/security.md) until it ends or
the client goes away."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from rest_framework import renderers

from orchestrio.errors import DomainError

from .. import services

# One event of the stream, for the schema (drf-spectacular; schemathesis checks the stream).
APP_LOG_EVENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["status", "line", "end", "error"]},
        "id": {"type": "string", "description": "A line's seq: send it back as Last-Event-ID to resume."},
        "data": {
            "type": "string",
            "description": "One JSON object: status {starts, restarts, last_exit_code, last_exit_at}; line {seq, ts, stream, line}; "
            "end {detail, last_seq}; error {detail}.",
        },
    },
}
KEEPALIVE_SECONDS = 15
RENEW_SECONDS = 5


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets `Accept: text/event-stream` through content negotiation: the stream itself is a
    StreamingHttpResponse, not rendered here; an error (rendered before any stream) is its JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode()


def app_logs_record(instance, body: dict) -> dict:
    starts = int(body.get("starts") or 0)
    return {
        "instance_id": instance.instance_id, "lines": body["lines"], "last_seq": int(body.get("last_seq") or 0),
        "truncated": bool(body.get("truncated")), "starts": starts, "restarts": max(starts - 1, 0),
        "last_exit_code": body.get("last_exit_code"), "last_exit_at": body.get("last_exit_at"),
    }  # fmt: skip


def _event(name: str, data, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _status(record: dict) -> dict:
    return {key: record[key] for key in ("starts", "restarts", "last_exit_code", "last_exit_at")}


def follow_app_logs(instance, record: dict, query: dict, *, timeout: int, renew: Callable[[], None], on_close: Callable[[], None]) -> Iterator[bytes]:
    """The events of a followed log: what `record` holds, then each new line until `timeout`."""
    try:
        yield _event("status", _status(record))
        after = record["last_seq"]
        for line in record["lines"]:
            yield _event("line", line, line["seq"])
        starts = record["starts"]
        deadline = time.monotonic() + timeout
        last_write = last_renew = time.monotonic()
        poll = settings.APP_LOG_FOLLOW_POLL_SECONDS
        while time.monotonic() < deadline:
            time.sleep(min(poll, max(deadline - time.monotonic(), 0)))
            now = time.monotonic()
            if now - last_renew >= RENEW_SECONDS:
                renew()
                last_renew = now
            try:
                body = services.instance_app_logs(instance=instance, **{**query, "after": after, "tail": 1000})
            except DomainError as exc:
                yield _event("error", {"detail": exc.detail})
                return
            fresh = app_logs_record(instance, body)
            if fresh["starts"] != starts:
                starts = fresh["starts"]
                yield _event("status", _status(fresh))
            for line in fresh["lines"]:
                yield _event("line", line, line["seq"])
                last_write = now
            after = max(after, fresh["last_seq"])
            if now - last_write >= KEEPALIVE_SECONDS:
                yield b": keepalive\n\n"
                last_write = now
        yield _event("end", {"detail": f"followed for {timeout}s; reconnect with Last-Event-ID to go on", "last_seq": after})
    finally:
        on_close()
