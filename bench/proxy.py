"""Benchmark: the tunnel proxy's overhead and its memory while streaming large bodies.

    .venv/bin/python bench/proxy.py                      # waitress (manage.py serve), 2,000 requests, 100 MB
    .venv/bin/python bench/proxy.py --server gunicorn    # gunicorn (gthread) in front, with a private redis-server
    .venv/bin/python bench/proxy.py --requests 500 --megabytes 20

Starts a real server and a real local instance (the agent) on loopback, with DEBUG off as in
production (waitress: the embedded queue of `make run`; gunicorn: the Procfile's web process with
a private redis-server for the rate-limit and usage counters), then:
1. overhead: sequential GETs of a 1 KiB body, directly from the agent and through
   `/tunnel/{instance}/…` (token auth, policy lookup, rate limit, metering, proxy), each over
   one keep-alive connection: p50/p99 latency, the added p50, and the throughput ratio;
2. streaming: a 100 MB upload and a 100 MB download through the tunnel, checking length and
   SHA-256, while sampling the server process's resident memory (VmRSS) every 10 ms: the peak
   growth over the idle baseline.
Bounded: fixed counts, timeouts on every call, all processes stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402
import _serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its descendants (gunicorn's master and workers)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue  # a worker that exited between the two looks
    return total // 1024


class Sampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss_kib(self.pid))
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def timed_gets(client: httpx.Client, url: str, headers: dict, n: int) -> tuple[list[float], float]:
    for _ in range(50):  # warm up connections and caches
        client.get(url, headers=headers)
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        response = client.get(url, headers=headers)
        latencies.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200 and len(response.content) == 1024, response.status_code
    return latencies, n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=["waitress", "gunicorn"], default="waitress")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("RATE_LIMIT_GATEWAY", "1000000/m")
    os.environ.setdefault("RATE_LIMIT_WRITE", "1000/m")
    os.environ.setdefault("RATE_LIMIT_READ", "1000000/m")
    _serve.production_env()
    processes: list = []
    if args.server == "gunicorn":
        os.environ["REDIS_URL"] = _serve.start_redis(processes)
    _django.setup()

    from django.conf import settings

    from instances.agent_client import gateway_key
    from instances.models import Instance
    from orchestrio.crypto import decrypt

    tenant, token = _django.tenant_with_token(api_requests_per_minute=None)
    auth = {"Authorization": f"Bearer {token}"}

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "orchestrio.settings"}
    serve_port = _serve.free_port()
    serve = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(serve_port)], cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    processes.append(serve)
    try:
        serve_base = f"http://127.0.0.1:{serve_port}"
        _serve.wait_up(serve_base, serve)
        created = httpx.post(f"{serve_base}/api/v1/instances", headers=auth, json={"instance_id": "bench-proxy"}, timeout=30)
        assert created.status_code == 201, created.text
        ready = httpx.get(f"{serve_base}/api/v1/instances/bench-proxy/wait?state=running&timeout=60", headers=auth, timeout=70)
        instance = Instance.objects.get(instance_id="bench-proxy")
        assert ready.status_code == 200, (ready.text, instance.error_message, [line.message for line in instance.log_lines.order_by("seq")])
        direct_headers = {"X-Orchestrio-Gateway-Key": gateway_key(decrypt(instance.agent_key_encrypted))}

        if args.server == "gunicorn":
            base = _serve.start_web("gunicorn", env, processes)
            server = processes[-1]
        else:
            server, base = serve, serve_base

        # Directly: at the instance's endpoint, a Unix socket in the sandbox, else a loopback port.
        if instance.socket_path:
            direct_client, direct_url = httpx.Client(timeout=30, transport=httpx.HTTPTransport(uds=instance.socket_path)), "http://instance"
        else:
            direct_client, direct_url = httpx.Client(timeout=30), f"http://127.0.0.1:{instance.port}"
        with direct_client as client:
            direct, direct_rps = timed_gets(client, f"{direct_url}/_orchestrio/blob?bytes=1024", direct_headers, args.requests)
        with httpx.Client(timeout=30) as client:
            tunnel, tunnel_rps = timed_gets(client, f"{base}/tunnel/bench-proxy/_orchestrio/blob?bytes=1024", auth, args.requests)

        size = args.megabytes * 1024 * 1024
        block = bytes(range(256)) * 256  # 64 KiB

        def upload():
            remaining = size
            while remaining:
                piece = block[: min(len(block), remaining)]
                remaining -= len(piece)
                yield piece

        expected = hashlib.sha256()
        for piece in upload():
            expected.update(piece)
        time.sleep(0.5)
        baseline = tree_rss_kib(server.pid)
        with Sampler(server.pid) as up_sampler:
            started = time.perf_counter()
            response = httpx.put(f"{base}/tunnel/bench-proxy/upload", headers={**auth, "Content-Length": str(size)}, content=upload(), timeout=300)
            up_seconds = time.perf_counter() - started
        echo = response.json()
        assert echo["body_length"] == size and echo["body_sha256"] == expected.hexdigest(), echo
        time.sleep(0.5)
        baseline_down = tree_rss_kib(server.pid)
        with Sampler(server.pid) as down_sampler:
            started = time.perf_counter()
            received, digest = 0, hashlib.sha256()
            with httpx.stream("GET", f"{base}/tunnel/bench-proxy/_orchestrio/blob?bytes={size}", headers=auth, timeout=300) as stream:
                for chunk in stream.iter_raw(65536):
                    received += len(chunk)
                    digest.update(chunk)
            down_seconds = time.perf_counter() - started
        assert received == size

        print(f"machine: {_django.machine()}; server: {args.server}; database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
        print(f"overhead, {args.requests} sequential GETs of 1 KiB over one keep-alive connection:")
        print(f"  direct to the agent: p50 {statistics.median(direct):.2f} ms, p99 {_serve.percentile(direct, 99):.2f} ms, {direct_rps:.0f} req/s")
        print(f"  through /tunnel:     p50 {statistics.median(tunnel):.2f} ms, p99 {_serve.percentile(tunnel, 99):.2f} ms, {tunnel_rps:.0f} req/s")
        print(f"  added p50: {statistics.median(tunnel) - statistics.median(direct):.2f} ms; throughput ratio {tunnel_rps / direct_rps:.2f}")
        print(f"streaming {args.megabytes} MB through /tunnel (server RSS sampled every 10 ms):")
        print(f"  upload:   {up_seconds:.1f} s ({args.megabytes / up_seconds:.0f} MB/s), RSS {baseline / 1024:.0f} MB idle, peak growth {(up_sampler.peak - baseline) / 1024:.1f} MB, sha256 matches")
        print(f"  download: {down_seconds:.1f} s ({args.megabytes / down_seconds:.0f} MB/s), peak growth {(down_sampler.peak - baseline_down) / 1024:.1f} MB, sha256 matches")
    finally:
        _serve.stop_all(processes)
        from instances.providers.local import LocalProvider

        provider = LocalProvider(settings.LOCAL_PROVIDER_DIR)
        for machine in provider.list_machines(""):
            provider.destroy_orphan(machine, "")


if __name__ == "__main__":
    main()
