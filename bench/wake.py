"""Benchmark: the cold start of a sleeping local instance — what the first request after an idle
sleep waits for (docs/lifecycle.md, "Sleep and wake").

    .venv/bin/python bench/wake.py                 # 10 rounds
    .venv/bin/python bench/wake.py --rounds 30

One real local instance (the bundled agent, in the sandbox when the host has one) and a worker
thread, as `make run` has them (the embedded queue, SQLite). Each round puts the instance to
sleep through the idle sweep (a fixed clock past its idle timeout: SIGSTOP of its processes),
then sends one request through the tunnel (`GET /tunnel/<id>/ping`, in-process WSGI, the Django
test client) and times it until the instance's answer: the wake operation accepted, a worker
picking it up, SIGCONT, the readiness probe of its health path, the request forwarded. Then a warm
request for comparison. Reports p50/p90/max of both, and the wake operation's share (created →
finished). Bounded: fixed rounds, each capped by INSTANCE_WAKE_WAIT_SECONDS (504 counts as a
failure), the instance destroyed and the worker stopped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402


def worker_thread(stop: threading.Event) -> threading.Thread:
    """A worker in a thread (the embedded queue lives in this process), plus the readiness sweep a
    wake may hand its health wait to."""

    def run() -> None:
        import django_rq
        from django.db import connection
        from rq.timeouts import TimerDeathPenalty

        from instances.jobs import readiness_sweep
        from orchestrio.worker import SimpleWorker

        class ThreadWorker(SimpleWorker):
            death_penalty_class = TimerDeathPenalty

            def _install_signal_handlers(self):
                pass

        try:
            while not stop.is_set():
                readiness_sweep()
                queue = django_rq.get_queue("default")
                if queue.count:
                    ThreadWorker([queue], connection=queue.connection).work(burst=True, logging_level="WARNING")
                stop.wait(0.01)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="bench-worker", daemon=True)
    thread.start()
    return thread


def wait_state(instance_id: str, state: str, timeout: float = 60) -> None:
    from instances.models import Instance

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Instance.objects.filter(instance_id=instance_id, destroyed_at__isnull=True, state=state).exists():
            return
        time.sleep(0.02)
    raise SystemExit(f"{instance_id} did not become {state} within {timeout}s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    _django.setup()

    from django.conf import settings
    from django.test import Client
    from django.utils import timezone

    from gateway.wake import idle_sweep
    from instances import services as instance_services
    from instances.choices import OperationKind
    from instances.models import Instance, Operation
    from instances.providers.sandbox import support
    from orchestrio.tenancy import Actor, Principal

    tenant, token = _django.tenant_with_token()
    owner = tenant.memberships.get().user
    principal = Principal(tenant=tenant, role="owner", user=owner)
    stop = threading.Event()
    worker = worker_thread(stop)
    instance_id = "bench-wake"
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    cold, warm, wake_ops, failures = [], [], [], 0
    try:
        instance_services.instance_create(principal=principal, instance_id=instance_id, region="local", idle_timeout_seconds=60)
        wait_state(instance_id, "running")
        for _ in range(args.rounds):
            slept = idle_sweep(now=timezone.now() + timedelta(seconds=61))["slept"]
            assert slept == [instance_id], slept
            wait_state(instance_id, "asleep")
            started = time.perf_counter()
            response = client.get(f"/tunnel/{instance_id}/ping")
            body = b"".join(response.streaming_content) if response.streaming else response.content
            elapsed = time.perf_counter() - started
            if response.status_code != 200 or b'"echo"' not in body:
                failures += 1
                print(f"round failed: {response.status_code} {body[:200]!r}")
                wait_state(instance_id, "running")
                continue
            cold.append(elapsed * 1000)
            op = Operation.objects.filter(instance__instance_id=instance_id, kind=OperationKind.WAKE).order_by("-id").first()
            wake_ops.append(((op.finished_at - op.created_at).total_seconds() * 1000, (op.started_at - op.created_at).total_seconds() * 1000))
            started = time.perf_counter()
            response = client.get(f"/tunnel/{instance_id}/ping")
            b"".join(response.streaming_content) if response.streaming else response.content
            warm.append((time.perf_counter() - started) * 1000)
    finally:
        instance = Instance.objects.filter(instance_id=instance_id, destroyed_at__isnull=True).first()
        if instance is not None:
            instance_services.operation_accept(instance=instance, kind=OperationKind.DESTROY, actor=Actor.system("bench"), force=True)
            deadline = time.monotonic() + 30
            while Instance.objects.filter(instance_id=instance_id, destroyed_at__isnull=True).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        stop.set()
        worker.join(timeout=30)

    print(f"machine: {_django.machine()}; sandbox: {support().mode if support().enabled else 'off'}; SQLite, embedded queue, worker thread")
    print(f"rounds: {args.rounds}, failed: {failures}, INSTANCE_WAKE_WAIT_SECONDS={settings.INSTANCE_WAKE_WAIT_SECONDS}")
    if cold:
        print(f"cold (asleep → the instance's answer) ms: p50 {statistics.median(cold):.1f}  p90 {pct(cold, 0.9):.1f}  max {max(cold):.1f}")
        total, queued = [t for t, _ in wake_ops], [q for _, q in wake_ops]
        print(f"  of which the wake operation (created → finished) ms: p50 {statistics.median(total):.1f}  max {max(total):.1f}; queued (created → started) p50 {statistics.median(queued):.1f}")
        print(f"warm (running) ms: p50 {statistics.median(warm):.1f}  p90 {pct(warm, 0.9):.1f}  max {max(warm):.1f}")


if __name__ == "__main__":
    main()
