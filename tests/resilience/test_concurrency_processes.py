"""Concurrency across processes, deployed as the Procfile deploys: gunicorn with two worker
processes (8 threads each) and two rqworkers, on PostgreSQL and Redis. Row locks, not luck,
decide: exactly one of many conflicting requests wins, one task of many runs, a revoked token
fails on every request after the revoke commits, and rate limits are shared by all processes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.utils import timezone

from orchestrio.models import SubscriptionPlan
from instances.models import Operation
from orchestrio.models import ApiToken
from tasks.models import Task

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _burst_clients(client: httpx.Client, count: int) -> list[httpx.Client]:
    """Clients for a burst, each request on a connection of its own: gunicorn closes a kept-alive
    connection after 2 idle seconds, and on a busy machine (a parallel test run) a thread's next
    request could meet its connection closing ("Server disconnected without sending a response")."""
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    return [httpx.Client(base_url=str(client.base_url), headers=client.headers, timeout=60, limits=no_reuse) for _ in range(count)]


def _fire(requests: list, threads: int = 32) -> list[httpx.Response]:
    """Send every request as nearly at once as the threads allow: they start together."""
    import threading

    barrier = threading.Barrier(min(threads, len(requests)))
    started = threading.local()

    def send(job):
        client, method, path, body = job
        if not getattr(started, "yes", False):
            started.yes = True
            barrier.wait(timeout=30)
        return client.request(method, path, json=body)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(send, requests))


@pytest.fixture
def deployment(stack, client_for):
    s = stack().start(workers=2, gunicorn=True)
    client = client_for(s.base, "concurrent")
    assert client.post("instances", json={"instance_id": "race-01"}).status_code == 201
    s.wait_until(lambda: client.get("instances/race-01").json()["state"] == "running", what="the instance to run")
    return s, client


def _pause_workers(s) -> None:
    """The burst must meet the winner's operation unfinished (a local stop takes well under a
    second): workers are stopped for it and started again to finish the one accepted."""
    for worker in s.workers:
        worker.stop()


def _resume_workers(s) -> None:
    for worker in s.workers:
        worker.start()


def test_conflicting_lifecycle_requests_across_processes_one_wins(deployment):
    s, client = deployment
    _pause_workers(s)
    clients = _burst_clients(client, 32)
    kinds = ["stop", "restart", "suspend", "stop"]
    jobs = [(clients[n % 32], "POST", f"instances/race-01/{kinds[n % 4]}", None) for n in range(200)]
    responses = _fire(jobs)
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 1, sorted(set(codes))
    assert codes.count(409) == 199, [r.text for r in responses if r.status_code not in (202, 409)][:3]
    winner = next(r for r in responses if r.status_code == 202).json()
    loser = next(r for r in responses if r.status_code == 409).json()
    assert loser["operation"]["id"] == winner["operation"]["id"]
    _resume_workers(s)
    s.wait_until(lambda: client.get("instances/race-01").json()["state"] in ("stopped", "running", "suspended"), what="the winner to finish")
    assert Operation.objects.filter(instance__instance_id="race-01").count() == 2  # the create and the winner


def test_concurrent_task_dispatches_across_processes_one_runs(deployment):
    s, client = deployment
    _pause_workers(s)
    clients = _burst_clients(client, 32)
    body = {"operation_code": "echo", "script_path": "/opt/orchestrio/scripts/echo-args.sh", "script_args": {"n": 1}}
    responses = _fire([(clients[n % 32], "POST", "instances/race-01/tasks", body) for n in range(100)])
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 1 and codes.count(409) == 99, sorted(set(codes))
    (task,) = Task.objects.all()
    _resume_workers(s)
    s.wait_until(lambda: client.get(f"tasks/{task.task_id}").json()["status"] == "succeeded", what="the one task")


def test_a_token_revoked_under_load_fails_on_every_request_after_the_revoke(deployment):
    s, client = deployment
    token = ApiToken.objects.get(tenant_id="concurrent")
    # Twelve clients send hundreds of requests a second: more than the plan's per-minute ceiling,
    # whose 429s are not what this test is about (rate limits across processes are, below).
    SubscriptionPlan.objects.filter(pk=token.tenant.plan_id).update(api_requests_per_minute=None)  # unlimited
    results: list[tuple[float, float, int]] = []
    stop_at = time.monotonic() + 4

    def hammer():
        with httpx.Client(base_url=str(client.base_url), headers=client.headers, timeout=30) as c:
            while time.monotonic() < stop_at:
                sent = time.monotonic()
                status = c.get("instances/race-01").status_code
                results.append((sent, time.monotonic(), status))

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(hammer) for _ in range(12)]
        time.sleep(1.5)
        # A request answered while the UPDATE runs may see either side of the commit, and one answered
        # after the commit may still be recorded before this thread gets the GIL back to read the
        # clock: only requests answered before the revoke began must pass, and only those sent after
        # it returned must fail.
        revoking = time.monotonic()
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())  # autocommit: committed on return
        revoked = time.monotonic()
        for future in futures:
            future.result()

    before = [status for sent, done, status in results if done < revoking]
    after = [status for sent, done, status in results if sent > revoked]
    assert before and set(before) == {200}
    assert len(after) > 20 and set(after) == {401}, sorted(set(after))


def test_rate_limits_hold_across_processes(stack, client_for):
    s = stack(RATE_LIMIT_READ="40/h").start(workers=0, gunicorn=True)
    client = client_for(s.base, "limited")
    clients = _burst_clients(client, 16)
    responses = _fire([(clients[n % 16], "GET", "tenant", None) for n in range(100)], threads=16)
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 40 and codes.count(429) == 60, sorted(set(codes))
