"""Benchmark: a function's cold start (from zero to its first answer) and its warm invocations.

    .venv/bin/python bench/function_cold_start.py                    # python3.11 and node20, 10 cold, 200 warm each
    .venv/bin/python bench/function_cold_start.py --cold 5 --warm 50 --runtime python3.11
    .venv/bin/python bench/function_cold_start.py --backend instance   # on a local function instance

Needs the sandbox (root, bubblewrap), as functions do. In a throwaway database and var/
(bench/_django.py), for each runtime: creates and deploys a function, then `--cold` times stops
its runtime (scale to zero, as the idle sweep does) and times the next `GET /fn/<slug>` through the
whole public path (Django's test client in this process: middleware, the function lookup, the
rate limit and metering, the shared start under start.lock, the sandbox's start and health check,
the invocation); then `--warm` invocations of the running runtime. Prints p50/p90/max of each and
the deploy's own start time. Bounded: fixed counts, every start within FUNCTIONS_START_TIMEOUT_SECONDS,
every runtime removed at the end.

`--backend instance` runs them on a function instance (FUNCTIONS_BACKEND=instance, a local one:
the agent sandboxed, the function host under it; docs/functions.md) — its creation and the deploy's
job run in this process — and a cold start there is the worst one: the version forgotten by the
host (as after its restart), so the invocation sends it again before starting it. Warm invocations
then pass the instance's agent and the host too.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402

HANDLERS = {
    "python3.11": "def handler(request):\n    return {'status': 200, 'body': 'ok'}\n",
    "node20": "export default async (request) => ({ status: 200, body: 'ok' });\n",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--runtime", action="append", choices=sorted(HANDLERS))
    parser.add_argument("--backend", choices=["sandbox", "instance"], default="sandbox")
    args = parser.parse_args()
    os.environ.setdefault("RATE_LIMIT_GATEWAY", "1000000/m")
    if args.backend == "instance":
        os.environ.update(FUNCTIONS_BACKEND="instance", FUNCTIONS_REGION="local", FUNCTIONS_HOST_IDLE_SECONDS="0")
    _django.setup()
    from django.test import Client

    from functions import backends, remote, runtime, services
    from functions.models import Function
    from instances.providers import sandbox
    from orchestrio.tenancy import Principal

    if not sandbox.support().enabled:
        raise SystemExit(f"functions need the sandbox: {sandbox.support().reason}")
    tenant, _ = _django.tenant_with_token(max_functions=None)
    principal = Principal(tenant=tenant, role="owner", user=tenant.memberships.get().user)
    client = Client()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}, sandbox {sandbox.support().mode}, backend {backends.backend_name()}")
    try:
        for name in args.runtime or [r for r in HANDLERS if r in runtime.available_runtimes()]:
            slug = "bench-" + name.replace(".", "")
            function, _ = services.function_create(principal=principal, slug=slug, runtime_name=name, code=HANDLERS[name])
            version = services.function_deploy(function=function, actor=principal.actor)
            if version.status == "building":  # on a function instance: its create and the deploy's job
                work_off_queue()
                version.refresh_from_db()
            if version.status != "built":
                raise SystemExit(f"{name}: the deploy failed: {version.error_message}")
            cold, warm = [], []
            for _ in range(args.cold):
                if args.backend == "instance":
                    host = remote._Host(remote.host_instance(tenant.pk))
                    host.call("DELETE", f"/functions/{function.pk}/versions/{version.number}", timeout=5)
                else:
                    runtime.stop(function.pk, version.number)
                started = time.perf_counter()
                response = client.get(f"/fn/{slug}")
                cold.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and response.content == b"ok", response.content
            for _ in range(args.warm):
                started = time.perf_counter()
                response = client.get(f"/fn/{slug}")
                warm.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            fresh = Function.objects.get(pk=function.pk)
            print(
                f"{name}: deploy start {version.start_ms} ms; cold start (n={len(cold)}) p50 {statistics.median(cold):.0f} ms, "
                f"p90 {percentile(cold, 0.9):.0f} ms, max {max(cold):.0f} ms; warm (n={len(warm)}) p50 {statistics.median(warm):.1f} ms, "
                f"p90 {percentile(warm, 0.9):.1f} ms; the function's own count {fresh.invocations} (flushed later)"
            )
    finally:
        for function in Function.objects.all():
            pk = function.pk
            function.delete()
            backends.get().remove(pk, tenant.pk)
        work_off_queue()  # a function instance's destroy


def work_off_queue() -> None:
    """Run the queued jobs here, as a worker would (the function instance's create, a deploy)."""
    import django_rq

    from orchestrio.worker import SimpleWorker

    queues = [django_rq.get_queue(name) for name in ("default",)]
    while any(q.count for q in queues):
        SimpleWorker(queues, connection=queues[0].connection).work(burst=True, logging_level="WARNING")


if __name__ == "__main__":
    main()
