"""Processes for benchmarks: a free port, a private redis-server, the web server started the way
production (gunicorn, Procfile) or `make run` (waitress, `manage.py serve`) starts it, and
percentiles. Everything binds to 127.0.0.1 and is stopped by `stop_all`."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

# Servers run as in production (DEBUG off: no query log, no debug pages) but on plain HTTP on
# loopback. Applied to os.environ before `_django.setup()` so that the benchmark process (which
# writes the rows and encrypts agent keys) and its servers agree.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ENCRYPTION_KEYS": "YmVuY2gtb25seS1mZXJuZXQta2V5LTAxMjM0NTY3ODk=",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "PUBLIC_URL": "http://127.0.0.1",
    "SECURE_SSL_REDIRECT": "0",
    "LOG_LEVEL": "WARNING",
}


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # runs the benchmark's `finally`: its processes are stopped


signal.signal(signal.SIGTERM, _exit_on_sigterm)


def production_env() -> None:
    os.environ.update(PRODUCTION_ENV)
    static_root = tempfile.mkdtemp(prefix="orchestrio-bench-static-")  # an (empty) collectstatic target
    atexit.register(shutil.rmtree, static_root, ignore_errors=True)
    os.environ["STATIC_ROOT"] = static_root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def wait_up(base: str, proc: subprocess.Popen, path: str = "/health", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[:4]} exited at start")
        try:
            httpx.get(base + path, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{base} did not start")


def start_redis(processes: list) -> str:
    """A private redis-server (no persistence) on a free port; returns its URL."""
    binary = shutil.which("redis-server")
    if not binary:
        raise SystemExit("needs redis-server on PATH")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="orchestrio-bench-redis-")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    processes.append(proc)
    atexit.register(stop_all, [proc])  # also when the benchmark fails before its own cleanup
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def start_web(kind: str, env: dict, processes: list, *, workers: int = 2, threads: int = 8, ready_path: str = "/health") -> str:
    """gunicorn as in the Procfile (gthread; `workers` processes), or waitress through
    `manage.py serve` without its in-process worker and scheduler. Returns the base URL."""
    port = free_port()
    if kind == "gunicorn":
        command = [
            sys.executable, "-m", "gunicorn", "orchestrio.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--threads", str(threads), "--worker-class", "gthread", "--log-level", "warning",
        ]  # fmt: skip
    else:
        command = [sys.executable, "manage.py", "serve", "--port", str(port), "--threads", str(threads), "--no-worker", "--no-scheduler"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    processes.append(proc)
    base = f"http://127.0.0.1:{port}"
    wait_up(base, proc, ready_path)
    return base


def stop_all(processes: list) -> None:
    for proc in processes:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in processes:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _client(targets: list[tuple[str, dict]], rounds: int, block: int, start, out) -> None:
    """One keep-alive connection, `rounds` rounds of sequential GETs: `block` to each target (URL
    on the same server, headers) in turn; each target's latencies (ms) go to `out`."""
    import http.client
    from urllib.parse import urlsplit

    first = urlsplit(targets[0][0])
    paths = [(urlsplit(url), headers) for url, headers in targets]
    paths = [(parts.path + (f"?{parts.query}" if parts.query else ""), headers) for parts, headers in paths]
    conn = http.client.HTTPConnection(first.hostname, first.port, timeout=30)
    start.wait()
    latencies: list[list[float]] = [[] for _ in targets]
    for _ in range(rounds):
        for i, (path, headers) in enumerate(paths):
            for _ in range(block):
                t = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                latencies[i].append((time.perf_counter() - t) * 1000)
                if response.status != 200:
                    raise SystemExit(f"GET {path}: {response.status}")
    conn.close()
    out.put(latencies)


def load_blocks(targets: list[tuple[str, dict]], *, requests: int, block: int = 100, warmup: int = 50) -> list[list[float]]:
    """`requests` sequential GETs to each target over one keep-alive connection, in blocks of
    `block` taken in turn (A×100, B×100, A×100, B×100, …): each target's latencies in ms. Within
    a block a target runs hot, as it would alone; across blocks, whatever else the machine does
    slows every target alike, so their ratio holds better than from runs one after another."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    start.set()
    latencies: list[list[float]] = []
    for rounds, size in ((1, warmup), (max(1, requests // block), min(block, requests))):
        if size:
            out = ctx.Queue()
            proc = ctx.Process(target=_client, args=(targets, rounds, size, start, out))
            proc.start()
            latencies = out.get(timeout=600)
            proc.join(timeout=10)
            if proc.exitcode != 0:
                raise SystemExit(f"a load client failed (exit {proc.exitcode})")
    return latencies


def load(url: str, headers: dict, *, requests: int, connections: int = 1, warmup: int = 50) -> tuple[list[float], float]:
    """`requests` GETs over `connections` keep-alive connections (one client process each, so
    the client is not limited by one GIL): every latency in ms, and requests per second."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    if warmup:
        load(url, headers, requests=warmup, connections=1, warmup=0)
    start, out = ctx.Event(), ctx.Queue()
    share = [requests // connections + (1 if i < requests % connections else 0) for i in range(connections)]
    clients = [ctx.Process(target=_client, args=([(url, headers)], 1, n, start, out)) for n in share]
    for proc in clients:
        proc.start()
    time.sleep(0.2)
    started = time.perf_counter()
    start.set()
    latencies: list[float] = []
    for _ in clients:
        latencies += out.get(timeout=300)[0]
    elapsed = time.perf_counter() - started
    for proc in clients:
        proc.join(timeout=10)
        if proc.exitcode != 0:
            raise SystemExit(f"a load client failed (exit {proc.exitcode})")
    return latencies, len(latencies) / elapsed
