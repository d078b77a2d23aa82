"""The client's retry policy where a live server cannot show it (a lost answer, a refused
connection), with httpx's MockTransport standing in for the network: which failures are
retried, and that a retried write keeps its Idempotency-Key."""

from __future__ import annotations

import httpx
import pytest

from orchestrio_client import Client, ServiceUnavailable, TransportError


def _client(responses, seen):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        outcome = responses.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    slept: list[float] = []
    return Client("http://orchestrio.test", "ork_live_x", transport=httpx.MockTransport(handler), sleep=slept.append), slept


def test_a_write_whose_answer_was_lost_is_not_sent_twice_unless_keyed():
    seen: list[httpx.Request] = []
    ork, _ = _client([httpx.ReadTimeout("lost")], seen)
    with pytest.raises(TransportError):
        ork.instances_stop_create("box")  # the server may have applied it: not repeated
    assert len(seen) == 1

    seen.clear()
    ork, _ = _client([httpx.ReadTimeout("lost"), httpx.Response(201, json={"instance_id": "box"})], seen)
    assert ork.instances_create(instance_id="box")["instance_id"] == "box"  # keyed: replayed safely
    assert len(seen) == 2 and seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"]


def test_unsent_requests_and_reads_are_retried():
    seen: list[httpx.Request] = []
    ork, slept = _client([httpx.ConnectError("refused"), httpx.Response(202, json={"state": "stopping"})], seen)
    assert ork.instances_stop_create("box")["state"] == "stopping"
    ork, slept = _client([httpx.ReadTimeout("slow"), httpx.Response(200, json={"tenant_id": "t"})], seen)
    assert ork.tenant_retrieve()["tenant_id"] == "t" and len(slept) == 1


def test_503_without_retry_after_backs_off_then_gives_up():
    seen: list[httpx.Request] = []
    ork, slept = _client([httpx.Response(503, json={"detail": "queue down"})] * 4, seen)
    with pytest.raises(ServiceUnavailable) as down:
        ork.instances_create(instance_id="box", idempotency_key="mine")
    assert down.value.detail == "queue down" and len(seen) == 4 and len(slept) == 3
    assert {r.headers["Idempotency-Key"] for r in seen} == {"mine"}
    assert all(0 < s <= 8 for s in slept)  # bounded backoff
