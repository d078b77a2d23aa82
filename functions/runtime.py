"""Function runtimes on this host: one sandboxed process per running function version.

Each function has a directory `<FUNCTIONS_LOCAL_DIR>/<function pk>/` that belongs to the control
plane (root, mode 0711: others may pass through it, never list it):

    output.log          the runtimes' stdout and stderr, and the control plane's own lines
                        ("[orchestrio] …"): the function's logs, kept to FUNCTIONS_LOG_MAX_BYTES
    start.lock          held while a runtime starts: concurrent cold invocations share one start
    inflight.lock       held shared by every invocation, exclusively by the idle sweep's stop
    last-invoked        its mtime is the last invocation (no database write per invocation)
    v<N>/code/          version N's handler (read-only inside the sandbox at /code)
    v<N>/runner.*       the runtime's own code (read-only at /orchestrio)
    v<N>/runtime.sock   the listening socket the control plane binds and hands to the sandbox
    v<N>/process.json   the process we started (pid and start time: found again after a restart)

The runtime runs exactly as an instance's command does (instances/providers/sandbox.py): as a uid
of its own (FUNCTIONS_LOCAL_UID_BASE + the function's pk), in its own user, pid, ipc, uts and
network namespaces, seeing only the system's read-only directories, its code and a private /tmp.
Without the sandbox functions are refused (as tenant commands are): `available()` says why.
The control plane never opens a path the sandbox can write: the code is written before the
process starts, into a directory the function's uid cannot write.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import httpcore
import psutil
from django.conf import settings
from django.utils import timezone

from gateway.proxy import pool
from instances.providers import sandbox
from instances.providers.local import live_process, process_record, sandbox_init
from orchestrio.errors import UpstreamError, UpstreamTimeout

from .choices import HANDLER_FILE, Runtime

logger = logging.getLogger(__name__)

RUNNERS = Path(__file__).resolve().parent / "runners"
SOCKET_NAME = "runtime.sock"
# Every file a runtime writes (its output above all) is at most this big: a handler that prints
# without end is stopped by the kernel (RLIMIT_FSIZE) long before the disk fills; the log itself
# is trimmed to FUNCTIONS_LOG_MAX_BYTES well before that.
FILE_SIZE_LIMIT = 64 << 20
LOG_LINE = "[orchestrio] "


class StartFailed(Exception):
    """The runtime exited, or did not answer its health check in time; `output` is what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class Target:
    """What a runtime needs to run: one version of one function."""

    function_pk: int
    slug: str
    number: int
    runtime: str
    code: str | None = None  # None: read it from the version's directory (it was prepared)
    env: dict | None = None
    # For a start on demand: returns (code, env) from the database, called only when the runtime
    # must be started (an invocation of a running function reads neither).
    loader: Callable[[], tuple[str, dict]] | None = None


def _base() -> Path:
    return Path(settings.FUNCTIONS_LOCAL_DIR)


def function_dir(function_pk: int) -> Path:
    return _base() / str(int(function_pk))


def version_dir(function_pk: int, number: int) -> Path:
    return function_dir(function_pk) / f"v{int(number)}"


def log_path(function_pk: int) -> Path:
    return function_dir(function_pk) / "output.log"


def uid_for(function_pk: int) -> int:
    return settings.FUNCTIONS_LOCAL_UID_BASE + int(function_pk)


# --- what this host offers ---------------------------------------------------------------------


def _version_of(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.SubprocessError):
        return ""
    return (result.stdout or result.stderr).decode("utf-8", "replace").strip()


@lru_cache(maxsize=1)
def available_runtimes() -> tuple[str, ...]:
    """The runtimes this host has, decided once per process: the system's python3 when it is 3.11
    (the sandbox runs /usr/bin's), node when it is 20."""
    found = []
    if _version_of([sandbox.interpreter()[0], "--version"]).startswith("Python 3.11"):
        found.append(Runtime.PYTHON311.value)
    node = shutil.which("node", path="/usr/local/bin:/usr/bin:/bin")
    if node and _version_of([node, "--version"]).startswith("v20."):
        found.append(Runtime.NODE20.value)
    return tuple(found)


def unavailable_reason() -> str | None:
    """Why functions cannot run here (None: they can)."""
    status = sandbox.support()
    if not status.enabled:
        return f"functions run only in the local sandbox, which is off on this installation ({status.reason})"
    return None


# --- files -------------------------------------------------------------------------------------


def _dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


def prepare(target: Target) -> Path:
    """Write the version's code and runner (once: a version never changes)."""
    base = function_dir(target.function_pk)
    _dir(_base(), 0o711)
    _dir(base, 0o711)
    directory = version_dir(target.function_pk, target.number)
    code_dir = directory / "code"
    handler = code_dir / HANDLER_FILE[target.runtime]
    if handler.exists():
        return directory  # a version never changes: its code was written once
    if target.code is None:
        raise StartFailed(f"version {target.number}'s code is not on this host")
    _dir(directory, 0o711)
    _dir(code_dir, 0o755)
    tmp = handler.with_suffix(".tmp")
    tmp.write_text(target.code)
    os.chmod(tmp, 0o644)
    tmp.replace(handler)
    runner = "python_runner.py" if target.runtime == Runtime.PYTHON311 else "node_runner.mjs"
    shutil.copyfile(RUNNERS / runner, directory / runner)
    os.chmod(directory / runner, 0o644)
    for name in ("last-invoked",):
        (base / name).touch(exist_ok=True)
    return directory


def touch(function_pk: int) -> None:
    """Mark an invocation (the idle sweep reads the mtime)."""
    try:
        os.utime(function_dir(function_pk) / "last-invoked")
    except FileNotFoundError:
        pass


def idle_seconds(function_pk: int) -> float | None:
    try:
        return time.time() - (function_dir(function_pk) / "last-invoked").stat().st_mtime
    except FileNotFoundError:
        return None


def log(function_pk: int, message: str) -> None:
    """One control-plane line in the function's logs."""
    path = log_path(function_pk)
    if not path.parent.exists():
        return
    line = f"{timezone.now():%Y-%m-%dT%H:%M:%SZ} {LOG_LINE}{message}\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
    os.chmod(path, 0o600)


def trim_log(function_pk: int) -> None:
    """Keep the logs to FUNCTIONS_LOG_MAX_BYTES: past that, only the newest half is kept. In
    place (the runtimes append to it with O_APPEND and go on at its new end)."""
    path = log_path(function_pk)
    limit = settings.FUNCTIONS_LOG_MAX_BYTES
    try:
        if path.stat().st_size <= limit:
            return
        with open(path, "r+b") as handle:
            handle.seek(-(limit // 2), os.SEEK_END)
            tail = handle.read()
            newline = tail.find(b"\n")
            tail = tail[newline + 1 :] if newline >= 0 else tail
            handle.seek(0)
            handle.truncate()
            handle.write(tail)
    except (FileNotFoundError, OSError):
        return


def read_log(function_pk: int, *, tail: int) -> list[str]:
    trim_log(function_pk)
    try:
        with open(log_path(function_pk), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - settings.FUNCTIONS_LOG_MAX_BYTES))
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-tail:]


# --- processes ---------------------------------------------------------------------------------


def _root(directory: Path) -> psutil.Process | None:
    record = process_record(directory)
    return live_process(record.get("pid"), record.get("start_time")) or live_process(record.get("init_pid"), record.get("init_start"))


def is_running(function_pk: int, number: int) -> bool:
    directory = version_dir(function_pk, number)
    return _root(directory) is not None and (directory / SOCKET_NAME).exists()


def running_versions(function_pk: int) -> list[int]:
    base = function_dir(function_pk)
    if not base.exists():
        return []
    numbers = []
    for child in base.glob("v*"):
        if child.name[1:].isdigit() and _root(child) is not None:
            numbers.append(int(child.name[1:]))
    return sorted(numbers)


def _kill(directory: Path) -> None:
    root = _root(directory)
    if root is not None:
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for proc in processes:
            try:
                proc.send_signal(signal.SIGKILL)
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        psutil.wait_procs(processes, timeout=5)
    (directory / SOCKET_NAME).unlink(missing_ok=True)
    (directory / "process.json").unlink(missing_ok=True)


def stop(function_pk: int, number: int, *, reason: str = "") -> bool:
    """Stop version `number`'s runtime; True when one was running."""
    directory = version_dir(function_pk, number)
    was = _root(directory) is not None
    _kill(directory)
    if was:
        log(function_pk, f"version {number} stopped{': ' + reason if reason else ''}")
    return was


def remove(function_pk: int) -> None:
    """Stop every runtime of the function and delete its directory (its code and logs)."""
    base = function_dir(function_pk)
    if not base.exists():
        return
    for child in base.glob("v*"):
        _kill(child)
    shutil.rmtree(base, ignore_errors=True)


def _argv(target: Target, directory: Path, fd: int) -> list[str]:
    handler = "/code/" + HANDLER_FILE[target.runtime]
    if target.runtime == Runtime.PYTHON311:
        runner = ("/orchestrio/runner.py", str(directory / "python_runner.py"))
        command = ["{python}", "-I", "-B", "-u", runner[0], "--listen-fd", str(fd), "--handler", handler]
    else:
        runner = ("/orchestrio/runner.mjs", str(directory / "node_runner.mjs"))
        command = [shutil.which("node", path="/usr/local/bin:/usr/bin:/bin") or "/usr/bin/node", runner[0], "--listen-fd", str(fd), "--handler", handler]
    binds = [(str(directory / "code"), "/code", False), (runner[1], runner[0], False)]
    hostname = f"fn-{target.slug}"[:63]
    argv = sandbox.wrap(uid=uid_for(target.function_pk), hostname=hostname, binds=binds, argv=command, mode=sandbox.support().mode, chdir="/code")
    prlimit = shutil.which("prlimit")
    return [prlimit, f"--fsize={FILE_SIZE_LIMIT}", "--", *argv] if prlimit else argv


def _health(socket_path: str, timeout: float) -> bool:
    request = httpcore.Request(
        "GET", httpcore.URL(scheme=b"http", host=b"function", port=80, target=b"/health"), headers=[(b"Host", b"function")],
        extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}},
    )  # fmt: skip
    try:
        response = pool(socket_path).handle_request(request)
        response.read()
        response.close()
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
        return False
    return response.status == 200


def start(target: Target, *, timeout: float | None = None) -> int:
    """Start the version's runtime and wait for its health check; returns how long that took (ms).
    Raises StartFailed (with what it printed) when it exits or does not answer in time."""
    timeout = settings.FUNCTIONS_START_TIMEOUT_SECONDS if timeout is None else timeout
    began = time.monotonic()
    directory = prepare(target)
    _kill(directory)  # a leftover of an earlier start
    log_file = log_path(target.function_pk)
    offset = log_file.stat().st_size if log_file.exists() else 0
    socket_path = directory / SOCKET_NAME
    socket_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    os.chmod(socket_path, 0o600)
    listener.listen(64)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "HOME": "/tmp",
        **{str(k): str(v) for k, v in (target.env or {}).items()},
        "ORCHESTRIO_FUNCTION": target.slug, "ORCHESTRIO_FUNCTION_VERSION": str(target.number),
    }  # fmt: skip
    try:
        with open(log_file, "ab") as output:
            os.chmod(log_file, 0o600)
            try:
                proc = subprocess.Popen(
                    _argv(target, directory, listener.fileno()), cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=output, start_new_session=True, close_fds=True, pass_fds=(listener.fileno(),),
                )  # fmt: skip
            except OSError as exc:
                raise StartFailed(f"cannot start the runtime: {exc.strerror}") from exc
    finally:
        listener.close()  # the runtime holds it now
    started = live_process(proc.pid, None)
    init = sandbox_init(started, timeout=2.0) if started is not None else None
    record = {
        "pid": proc.pid, "start_time": started.create_time() if started else None, "init_pid": init.pid if init else None,
        "init_start": init.create_time() if init else None, "uid": uid_for(target.function_pk), "version": target.number,
    }  # fmt: skip
    (directory / "process.json").write_text(json.dumps(record))
    deadline = began + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _kill(directory)
            raise StartFailed(f"the runtime exited at start (code {proc.returncode})", _output_since(log_file, offset))
        if _health(str(socket_path), timeout=max(0.05, min(1.0, deadline - time.monotonic()))):
            threading_reap(proc)
            return int((time.monotonic() - began) * 1000)
        time.sleep(0.02)
    _kill(directory)
    proc.poll()
    raise StartFailed(f"the runtime did not answer its health check within {timeout:g}s", _output_since(log_file, offset))


def threading_reap(proc: subprocess.Popen) -> None:
    """Collect the process's exit status when it ends (no zombie is left behind us)."""
    threading.Thread(target=proc.wait, name=f"reap-fn-{proc.pid}", daemon=True).start()


def _output_since(path: Path, offset: int, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read(1 << 20).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return text[-limit:].strip()


# --- locks -------------------------------------------------------------------------------------


@contextmanager
def _flock(path: Path, kind: int, deadline: float | None):
    """Hold flock `kind` on `path` (shared across processes and threads alike: each holder opens
    its own file description). With `deadline`: wait until then, else raise TimeoutError; with
    None: try once (BlockingIOError when held)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")
    try:
        while True:
            try:
                fcntl.flock(handle, kind | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is None:
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(str(path)) from None
                time.sleep(0.01)
        yield
    finally:
        handle.close()  # releases the lock


def ensure_running(target: Target, *, deadline: float) -> tuple[str, bool]:
    """The socket of the version's runtime, starting it when it is not running (a cold start):
    concurrent callers share one start (the first starts it under start.lock, the others wait for
    the lock and find it running). Returns (socket path, whether this call waited for a start).
    UpstreamTimeout (504) past `deadline`; UpstreamError (502) when the runtime cannot start."""
    directory = version_dir(target.function_pk, target.number)
    if is_running(target.function_pk, target.number):
        return str(directory / SOCKET_NAME), False
    try:
        with _flock(function_dir(target.function_pk) / "start.lock", fcntl.LOCK_EX, deadline):
            if is_running(target.function_pk, target.number):
                return str(directory / SOCKET_NAME), True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if target.loader is not None and (target.env is None or target.code is None):
                code, env = target.loader()
                target = replace(target, code=code, env=env)
            try:
                took = start(target, timeout=min(settings.FUNCTIONS_START_TIMEOUT_SECONDS, remaining))
            except StartFailed as exc:
                log(target.function_pk, f"version {target.number} did not start: {exc}")
                if "health check" in str(exc) and time.monotonic() >= deadline - 0.05:
                    raise UpstreamTimeout(f"function {target.slug} did not start within {settings.FUNCTIONS_WAKE_TIMEOUT_SECONDS:g}s") from exc
                raise UpstreamError(f"function {target.slug} could not start: {exc} (see its logs)") from exc
            log(target.function_pk, f"version {target.number} started on request (cold start {took} ms)")
            return str(directory / SOCKET_NAME), True
    except TimeoutError as exc:
        raise UpstreamTimeout(f"function {target.slug} did not start within {settings.FUNCTIONS_WAKE_TIMEOUT_SECONDS:g}s") from exc


@contextmanager
def in_flight(function_pk: int, *, deadline: float):
    """Held (shared) for an invocation: the idle sweep never stops a runtime that is answering."""
    try:
        with _flock(function_dir(function_pk) / "inflight.lock", fcntl.LOCK_SH, deadline):
            yield
    except TimeoutError as exc:
        raise UpstreamTimeout("the function is being stopped; retry") from exc


def stop_if_idle(function_pk: int, number: int, *, idle_after: float | None, reason: str) -> bool:
    """Stop the runtime unless an invocation holds it, or (with `idle_after`) it was invoked less
    than that many seconds ago. True when it was stopped."""
    try:
        with _flock(function_dir(function_pk) / "inflight.lock", fcntl.LOCK_EX, None):
            with _flock(function_dir(function_pk) / "start.lock", fcntl.LOCK_EX, None):
                if idle_after is not None:
                    idle = idle_seconds(function_pk)
                    if idle is not None and idle < idle_after:
                        return False
                return stop(function_pk, number, reason=reason)
    except BlockingIOError:
        return False


def call(socket_path: str, envelope: dict, *, timeout: float) -> dict:
    """POST the request envelope to the runtime; its response envelope (not validated yet)."""
    body = json.dumps(envelope).encode()
    request = httpcore.Request(
        "POST", httpcore.URL(scheme=b"http", host=b"function", port=80, target=b"/invoke"),
        headers=[(b"Host", b"function"), (b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())],
        content=body,
        extensions={"timeout": {"connect": settings.GATEWAY_CONNECT_TIMEOUT_SECONDS, "pool": settings.GATEWAY_CONNECT_TIMEOUT_SECONDS, "read": timeout, "write": timeout}},
    )  # fmt: skip
    try:
        response = pool(socket_path).handle_request(request)
        data = read_capped(response, limit=envelope_limit())
    except httpcore.TimeoutException as exc:
        raise UpstreamTimeout(f"the function did not answer within {timeout:g}s") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise UpstreamError(f"the function's runtime broke the connection ({type(exc).__name__}): see its logs") from exc
    return runner_payload(response.status, data)


def envelope_limit() -> int:
    """The most a response envelope may be: the response's bytes, base64'd and JSON-escaped."""
    return settings.FUNCTIONS_MAX_RESPONSE_BYTES * 2 + 65536


def read_capped(response: httpcore.Response, *, limit: int) -> bytes:
    """The body of a streamed httpcore response, closed afterwards; UpstreamError past `limit` bytes."""
    try:
        chunks, size = [], 0
        for chunk in response.iter_stream():
            size += len(chunk)
            if size > limit:
                raise UpstreamError(f"the function's response is over {settings.FUNCTIONS_MAX_RESPONSE_BYTES} bytes")
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


def runner_payload(status: int, data: bytes) -> dict:
    """A runner's answer to POST /invoke (200: the response envelope; 500: the handler raised)
    as the envelope, not validated yet; UpstreamError for anything else."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise UpstreamError("the function's runtime answered something that is not its response envelope") from exc
    if status == 500 and isinstance(payload, dict):
        raise UpstreamError(f"{str(payload.get('error'))[:200]} (see the function's logs)")
    if status != 200 or not isinstance(payload, dict):
        raise UpstreamError(f"the function's runtime answered {status}")
    return payload
