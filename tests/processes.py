"""Real processes for tests: servers and workers started with `manage.py`, sharing the test
database and a real Redis (REDIS_URL's, or one started here when redis-server is installed)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.db import connection

from . import logscan

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The test database (not the configured one) as a URL for child processes."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = s["HOST"] or "127.0.0.1"
    port = s["PORT"] or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


@pytest.fixture(scope="session")
def real_redis_url():
    """A real Redis for multi-process tests: REDIS_URL's, else a private redis-server."""
    from django.conf import settings

    if settings.REDIS_URL:
        yield settings.REDIS_URL
        return
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("needs a Redis server (set REDIS_URL or install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="orchestrio-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def child_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "orchestrio.settings",
        "DEBUG": "1",
        "DATABASE_URL": database_url(),
        "ORCHESTRIO_VAR_DIR": os.environ["ORCHESTRIO_VAR_DIR"],
        "ENCRYPTION_KEYS": os.environ.get("ENCRYPTION_KEYS", ""),
        "LOG_LEVEL": "WARNING",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    if os.environ.get("LOCAL_SANDBOX_UID_BASE"):  # a pytest-xdist worker's own block (tests/settings.py)
        env["LOCAL_SANDBOX_UID_BASE"] = os.environ["LOCAL_SANDBOX_UID_BASE"]
    env.update(extra)
    return env


@contextmanager
def server_process(env: dict[str, str], *, worker: bool = False, scheduler: bool = False, threads: int | None = None):
    """`manage.py serve` in a child process; yields its base URL."""
    port = free_port()
    args = [sys.executable, "manage.py", "serve", "--port", str(port)]
    if threads is not None:
        args += ["--threads", str(threads)]
    if not worker:
        args.append("--no-worker")
    if not scheduler:
        args.append("--no-scheduler")
    log = tempfile.NamedTemporaryFile(prefix="orchestrio-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {Path(log.name).read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        logscan.child_logs.append((f"manage.py serve on {base}", Path(log.name).read_text(errors="replace")))
        os.unlink(log.name)


class RedisServer:
    """A private redis-server the test may stop and start again on the same port (data is lost,
    as in a real restart without persistence)."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            if os.environ.get("CI"):
                raise RuntimeError("redis-server is required in CI")
            pytest.skip("needs redis-server installed")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="orchestrio-redis-")
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        """SIGKILL: connections drop mid-command, nothing is saved."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


class ManagedProcess:
    """A `manage.py …` (or gunicorn) child in its own process group, logging to a file; restartable,
    as a supervisor (systemd, a container runtime) would restart it."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.args = args
        self.env = env
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"orchestrio-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._terminating = False

    def start(self) -> ManagedProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._terminating = False
        return self

    def terminate(self) -> None:
        """SIGTERM, without waiting (`stop` waits): several processes then shut down at once."""
        if self.alive() and not self._terminating:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._terminating = True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self) -> None:
        if not self.alive():
            self.restarts += 1
            self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                if not self._terminating:  # once: a second SIGTERM is an rqworker's cold shutdown
                    os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        else:
            try:  # its work horse may outlive a killed worker
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.stop()
        logscan.child_logs.append((f"{self.name} ({' '.join(self.args[1:4])})", self.log()))
        self.log_path.unlink(missing_ok=True)


def worker_process(env: dict[str, str]) -> ManagedProcess:
    """A worker exactly as the Procfile runs it."""
    return ManagedProcess([sys.executable, "manage.py", "rqworker", "default", "periodic", "--worker-class", "orchestrio.worker.SimpleWorker"], env, "worker")


def scheduler_process(env: dict[str, str]) -> ManagedProcess:
    return ManagedProcess([sys.executable, "manage.py", "scheduler"], env, "scheduler")


def gunicorn_process(env: dict[str, str], port: int, workers: int = 2) -> ManagedProcess:
    """The web tier as the Procfile runs it (gthread workers), on loopback."""
    args = [
        sys.executable, "-m", "gunicorn", "orchestrio.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--threads", "8", "--worker-class", "gthread", "--timeout", "60",
    ]  # fmt: skip
    return ManagedProcess(args, env, "gunicorn")


def wait_http(base: str, proc: ManagedProcess | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{base}/health", timeout=1)
            return
        except httpx.TransportError:
            if (proc is not None and not proc.alive()) or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.log()[-3000:] if proc else ''}") from None
            time.sleep(0.1)


class TcpProxy:
    """A loopback TCP proxy the test can cut: `cut()` resets every open connection and refuses new
    ones (the database "goes away" under a running server); `restore()` lets connections through."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import threading

        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self.lock:
                self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up = False
        with self.lock:
            connections, self.connections = self.connections, []
        for sock in connections:
            _reset(sock)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped network path looks to the peer."""
    import struct

    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
