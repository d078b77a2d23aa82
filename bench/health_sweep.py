"""Benchmark: one health sweep over N running instances.

    .venv/bin/python bench/health_sweep.py --instances 1000
    .venv/bin/python bench/health_sweep.py --instances 10000

The health endpoints are served by one asyncio process on loopback (bench/health_server.py,
spread over --ports ports). Reports the first sweep (every instance changes unknown → healthy:
a log line and an audit event each) and the median of steady sweeps (nothing changes: bulk
updates), in seconds, and seconds per 10,000 instances. Bounded: it stops by itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--ports", type=int, default=50)
    parser.add_argument("--steady-runs", type=int, default=3)
    args = parser.parse_args()
    _django.setup()

    from django.conf import settings

    from orchestrio.models import SubscriptionPlan
    from instances.jobs import health_sweep
    from instances.models import Blueprint, Instance
    from orchestrio.crypto import encrypt
    from orchestrio.models import Tenant

    ready = tempfile.mktemp(prefix="health-ports-")
    server = subprocess.Popen([sys.executable, str(Path(__file__).parent / "health_server.py"), "--ports", str(args.ports), "--ready-file", ready])
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(ready) or not Path(ready).read_text().strip():
            if time.monotonic() > deadline:
                raise SystemExit("health server did not start")
            time.sleep(0.05)
        ports = [int(p) for p in Path(ready).read_text().split()]

        plan = SubscriptionPlan.objects.get(pk="team")
        tenant = Tenant.objects.create(id="bench", name="bench", plan=plan)
        blueprint = Blueprint.objects.get(name="OpenClaw", tenant=None)
        key = encrypt("oak_bench")
        Instance.objects.bulk_create(
            [
                Instance(
                    instance_id=f"bench-{i:06d}", tenant=tenant, blueprint=blueprint, plan_id="openclaw-basic", region_id="local",
                    provider="local", instance_type="t3.small", state="running", ip_address="127.0.0.1", port=ports[i % len(ports)],
                    agent_key_encrypted=key,
                )
                for i in range(args.instances)
            ],
            batch_size=1000,
        )  # fmt: skip

        started = time.perf_counter()
        first = health_sweep()
        first_seconds = time.perf_counter() - started
        steady = []
        for _ in range(args.steady_runs):
            started = time.perf_counter()
            summary = health_sweep()
            steady.append(time.perf_counter() - started)
        healthy = Instance.objects.filter(health_status="healthy").count()
        median = statistics.median(steady)
        db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(f"machine: {_django.machine()}; database: {db}; concurrency {settings.HEALTH_CHECK_CONCURRENCY}, timeout {settings.HEALTH_CHECK_TIMEOUT_SECONDS}s")
        print(f"instances: {args.instances} on {len(ports)} ports; healthy after sweeps: {healthy}")
        print(f"first sweep (all change unknown→healthy): {first_seconds:.2f} s  ({first_seconds / args.instances * 10000:.1f} s per 10,000); changed={first['changed']}")
        print(f"steady sweep median of {args.steady_runs}: {median:.2f} s  ({median / args.instances * 10000:.1f} s per 10,000); last={summary}")
        print(f"sweep period: {settings.HEALTH_CHECK_INTERVAL_SECONDS} s -> steady sweep uses {median / settings.HEALTH_CHECK_INTERVAL_SECONDS:.0%} of it")
    finally:
        server.terminate()
        server.wait()
        if os.path.exists(ready):
            os.unlink(ready)


if __name__ == "__main__":
    main()
