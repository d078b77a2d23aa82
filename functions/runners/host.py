#!/usr/bin/env python3
"""The function host: runs a tenant's functions on its function instance (docs/functions.md).

Standard library only (Python 3.9+), one file. The control plane pushes it with the instance
agent's `PUT /app` together with the two runners (python_runner.py, node_runner.mjs), and the
agent runs it as the instance's app:

    python3 -I -B host.py --data-dir ../app-data      (cwd: the agent's <state-dir>/app/)

with PORT, ORCHESTRIO_APP_KEY, HOME, PATH and ORCHESTRIO_INSTANCE_ID in its environment (and the
instance's deployment secrets, which it ignores: no runner ever gets the host's environment). It
listens on 127.0.0.1:$PORT; the control plane reaches it through the agent (which checks the agent
key and forwards everything that is not its own route). It runs one process, a *runner*, per
running function version, as functions/runtime.py does on the control plane's own host, and stops
it when idle (scale to zero). Nothing survives a restart of the host: at start it empties
--data-dir, and a version it does not know answers 404 `unknown_version` (the control plane then
pushes it again).

Every answer carries `X-Orchestrio-Function-Host: <digest>`, the first 16 hex digits of
sha256(b"".join(name + b"\\0" + content + b"\\0" for the files host.py, python_runner.py and
node_runner.mjs next to this one, sorted by name)): the control plane replaces a host of another
release. Every route but `GET /health` needs `X-Orchestrio-App-Key` equal to ORCHESTRIO_APP_KEY
(derived by the agent from its key: what runs on the machine, a handler included, cannot drive
the host without it); without that variable the host refuses them all. Errors are JSON
`{"detail": …}` (bad JSON or fields: 422); no input gets a traceback or stops the host.

    GET    /health                               {"status": "ok", "digest", "runtimes", "isolation"}
    PUT    /functions/{fid}/versions/{n}         {"slug", "runtime", "code", "env", "idle_timeout_seconds",
                                                 "start_timeout_seconds"?}: write the handler, start its
                                                 runner, wait for its GET /health → {"start_ms"}; a
                                                 known version → {"start_ms": 0, "already": true}
                                                 (started if it was stopped); a runner that exits or
                                                 is not healthy in time → 422 {"detail", "output"} (the
                                                 last 4000 characters it printed) and it is forgotten;
                                                 a runtime this machine lacks → 422
    POST   /functions/{fid}/versions/{n}/invoke  the request envelope → the runner's status and JSON
                                                 (its response envelope; 500 when the handler raised),
                                                 with X-Function-Cold-Start: 1|0. X-Function-Timeout
                                                 (seconds, default 30, at most 900) bounds the answer
                                                 (else 504). A stopped version starts first (one start
                                                 for concurrent invocations; a failed start: 502 with
                                                 its output); unknown: 404 {"code": "unknown_version"}
    DELETE /functions/{fid}/versions/{n}         stop and forget it → 204 (also when unknown)
    DELETE /functions/{fid}                      stop and forget all its versions, remove its files and
                                                 logs → 204 (also when unknown)
    GET    /functions/{fid}/logs?tail=N          {"lines": [...]} (N 1–5000, as the API's, default 200)
    GET    /functions                            {"functions": {"<fid>": {"known": [n…], "running": [n…],
                                                 "idle_seconds": seconds since its running versions'
                                                 last invocation or start, null when none runs}}}

Logs: one file per function (`<data-dir>/<fid>/output.log`, 0600): its runners' stdout and stderr,
appended, and the host's own lines `<UTC %Y-%m-%dT%H:%M:%SZ> [orchestrio] <message>` (started,
cold start, stopped: idle, did not start); kept to 1 MiB (past that, the newest half, cut at a line).

Idle: every few seconds a runner not invoked for its version's idle_timeout_seconds is stopped
(never one answering or starting an invocation); the version stays known and its next invocation
is a cold start. A runner that exits on its own is noticed then too.

Isolation of a runner, decided once when the host starts (GET /health says which):

* "bwrap" — the host is root and has bubblewrap and setpriv (and bubblewrap works here): as the
  local sandbox's root mode (instances/providers/sandbox.py), the system directories read-only,
  /proc, /dev, a private /tmp, the handler read-only at /code and the runner at /orchestrio (an
  interpreter installed elsewhere, e.g. under /opt, with its installation read-only), in pid, ipc,
  uts and network namespaces of its own (no network at all), then `setpriv` to the function's own
  uid and gid (--uid-base, default 200000, + the function's id), no supplementary groups, no
  capabilities, no new privileges; it dies with the host.
* "uid" — root without bubblewrap: the runner runs as the function's uid and gid, without groups
  or new privileges, in a session of its own, but NOT in namespaces of its own: it shares the
  machine's filesystem view and network (loopback included: the host's port, which the app key
  guards). Its code is reached through its working directory (`/proc/self/cwd/…`), so no parent
  directory needs to let it in.
* "none" — the host is not root (e.g. inside the local provider's sandbox, which is then the
  only boundary): runners run as the host's own uid. The host makes itself non-dumpable, so they
  cannot read its environment (the app key) or ptrace it through /proc, but whatever else that uid
  can reach they can too: the host's data directory and the agent's state (its key's hash, from
  which the app key derives) among it.

Runners get only PATH, LANG=C.UTF-8, PYTHONUNBUFFERED=1, HOME=/tmp, the function's env, and
ORCHESTRIO_FUNCTION=<slug>, ORCHESTRIO_FUNCTION_VERSION=<n>; no file they write may pass 64 MiB
(RLIMIT_FSIZE). Each listens on a unix socket the host binds in a 0700 directory of its own
(`<data-dir>/sockets/`, or a new one under $TMPDIR when that path is too long for a socket's) and
hands over as `--listen-fd`: the host never connects to a path a runner can write. The host stops
its runners when it is told to stop (SIGTERM) and when its parent (the agent) goes away; a runner
whose host is killed outright dies with it (PR_SET_PDEATHSIG; bwrap's --die-with-parent).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import hmac
import http.client
import json
import os
import queue
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_FILES = ("host.py", "python_runner.py", "node_runner.mjs")
KEY_HEADER = "X-Orchestrio-App-Key"
HOST_HEADER = "X-Orchestrio-Function-Host"
COLD_HEADER = "X-Function-Cold-Start"
TIMEOUT_HEADER = "X-Function-Timeout"
# runtime → (runner file, handler file)
RUNTIMES = {"python3.11": ("python_runner.py", "handler.py"), "node20": ("node_runner.mjs", "handler.mjs")}
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/sbin")
SYSTEM_ETC = ("ld.so.cache", "alternatives", "ssl", "ca-certificates", "localtime", "mime.types", "protocols", "services")
TMP_BYTES = 256 << 20
FILE_SIZE_LIMIT = 64 << 20
LOG_MAX_BYTES = 1 << 20
OUTPUT_CHARS = 4000
MAX_TAIL = 5000  # what the control plane's API lets a person ask for (its logs' `tail`)
MAX_PUT_BODY = 8 << 20
MAX_INVOKE_BODY = (16 << 20) + 65536  # the runners take envelopes of up to 16 MiB
MAX_ANSWER = 64 << 20
DEFAULT_TIMEOUT, MAX_TIMEOUT = 30.0, 900.0
SWEEP_SECONDS = 2.0
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
ROUTE = re.compile(r"/functions(?:/([1-9][0-9]{0,9})(?:/versions/([1-9][0-9]{0,9})(/invoke)?|(/logs))?)?")
MAX_UID = 4294967294


def utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_digest(directory: str = HERE) -> str:
    files = []
    for name in HOST_FILES:
        try:
            with open(os.path.join(directory, name), "rb") as handle:
                files.append((name, handle.read()))
        except OSError:
            continue
    return hashlib.sha256(b"".join(name.encode() + b"\0" + content + b"\0" for name, content in sorted(files))).hexdigest()[:16]


class Refused(Exception):
    """An answer other than success: its status and body ({"detail"} and more)."""

    def __init__(self, status: int, detail: str, **extra) -> None:
        super().__init__(detail)
        self.status, self.body = status, {"detail": detail, **extra}


class StartFailed(Exception):
    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def _libc_prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None


PRCTL = _libc_prctl()
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38


def _in_child() -> None:
    """In the runner's process, after its uid changed (which clears the parent-death signal): it
    dies with the host, and can gain no privilege (no setuid binary works for it)."""
    if PRCTL is not None:
        PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        PRCTL(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _version_output(argv: list) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, timeout=10, env={"PATH": SYSTEM_PATH}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (result.stdout or result.stderr).decode("utf-8", "replace").strip()


def find_interpreters(path: str) -> dict:
    """runtime → the interpreter that runs it here: python3.11 (or a python3 that is 3.11), node 20."""
    found = {}
    python = shutil.which("python3.11", path=path)
    if python is None:
        candidate = shutil.which("python3", path=path)
        if candidate and _version_output([candidate, "--version"]).startswith("Python 3.11"):
            python = candidate
    if python:
        found["python3.11"] = python
    node = shutil.which("node", path=path)
    if node and _version_output([node, "--version"]).startswith("v20."):
        found["node20"] = node
    return found


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("function", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Version:
    """One version of one function: what it runs and, while it runs, its runner."""

    def __init__(self, host: "Host", fid: int, number: int, spec: dict) -> None:
        self.fid, self.number = fid, number
        self.slug, self.runtime, self.env = spec["slug"], spec["runtime"], spec["env"]
        self.idle_timeout, self.start_timeout = spec["idle_timeout_seconds"], spec["start_timeout_seconds"]
        self.dir = os.path.join(host.data_dir, str(fid), f"v{number}")
        self.socket_path = os.path.join(host.sockets_dir, f"{fid}-{number}.sock")
        self.proc = None
        self.ready = False  # its runner answered its health check (and was not stopped since)
        self.lock = threading.Lock()  # held by the one start of this version at a time
        self.inflight = 0  # invocations and starts under way (the idle sweep leaves it alone)
        self.last = time.monotonic()  # the last invocation or start
        self.forgotten = False

    def running(self) -> bool:
        return self.ready and self.proc is not None and self.proc.poll() is None


class Host:
    def __init__(self, args: argparse.Namespace) -> None:
        self.data_dir = os.path.abspath(args.data_dir)
        self.sockets_dir = os.path.join(self.data_dir, "sockets")
        if len(self.sockets_dir) > 80:  # a socket's path has at most 107 bytes, "<fid>-<n>.sock" up to 27 of them
            self.sockets_dir = tempfile.mkdtemp(prefix="orchestrio-fn-")  # 0700, ours
        self.uid_base = args.uid_base
        self.sweep_seconds = args.sweep_seconds
        self.app_key = os.environ.get("ORCHESTRIO_APP_KEY", "")
        self.digest = host_digest()
        self.interpreters = find_interpreters(os.environ.get("PATH") or SYSTEM_PATH)
        self.isolation, self.isolation_reason = self._isolation(args.isolation)
        self.versions: dict = {}  # (fid, number) → Version
        self.lock = threading.Lock()  # the versions' table and their counters
        self.log_lock = threading.Lock()
        self.spawns: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.parent = os.getppid()
        self._wipe()

    # --- set-up --------------------------------------------------------------------------

    def _wipe(self) -> None:
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        for entry in os.listdir(self.data_dir):
            path = os.path.join(self.data_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        os.makedirs(self.sockets_dir, 0o700, exist_ok=True)
        os.chmod(self.sockets_dir, 0o700)

    def _isolation(self, wanted: str) -> tuple:
        root = os.geteuid() == 0
        if wanted == "none" or not root:
            return "none", "the host does not run as root: runners run as its uid" if not root else "asked for (--isolation none)"
        if wanted == "auto":
            if not (shutil.which("bwrap") and shutil.which("setpriv")):
                return "uid", "bubblewrap or setpriv is not installed: runners get a uid of their own, no namespaces"
            problem = self._bwrap_smoke()
            if problem is None:
                return "bwrap", "bubblewrap: own uid, pid/ipc/uts/network namespaces, private filesystem"
            return "uid", f"bubblewrap does not work here ({problem}): runners get a uid of their own, no namespaces"
        return "uid", "asked for (--isolation uid): runners get a uid of their own, no namespaces"

    def _bwrap_smoke(self):
        argv = self._bwrap_argv(uid=self.uid_base, hostname="probe", binds=[], command=["/bin/sh", "-c", f'test "$(id -u)" = {self.uid_base}'], die_with_parent=False)
        try:
            result = subprocess.run(argv, capture_output=True, timeout=20, env={"PATH": SYSTEM_PATH}, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if result.returncode != 0:
            return (result.stderr.decode("utf-8", "replace").strip() or f"exit code {result.returncode}")[:300]
        return None

    # --- logs ----------------------------------------------------------------------------

    def function_dir(self, fid: int) -> str:
        return os.path.join(self.data_dir, str(fid))

    def log_path(self, fid: int) -> str:
        return os.path.join(self.function_dir(fid), "output.log")

    def log(self, fid: int, message: str) -> None:
        """One line of the host's own in the function's logs."""
        with self.log_lock:
            try:
                fd = os.open(self.log_path(fid), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError:
                return  # the function was removed meanwhile
            try:
                os.write(fd, f"{utc()} [orchestrio] {message}\n".encode("utf-8", "replace"))
            except OSError:
                pass
            finally:
                os.close(fd)
        self.trim_log(fid)

    def trim_log(self, fid: int) -> None:
        """Past LOG_MAX_BYTES only the newest half is kept, from a line's start; in place (the
        runners append with O_APPEND and go on at its new end)."""
        path = self.log_path(fid)
        with self.log_lock:
            try:
                if os.path.getsize(path) <= LOG_MAX_BYTES:
                    return
                with open(path, "r+b") as handle:
                    handle.seek(-(LOG_MAX_BYTES // 2), os.SEEK_END)
                    tail = handle.read()
                    newline = tail.find(b"\n")
                    tail = tail[newline + 1 :] if newline >= 0 else tail
                    handle.seek(0)
                    handle.truncate()
                    handle.write(tail)
            except OSError:
                return

    def read_log(self, fid: int, tail: int) -> list:
        self.trim_log(fid)
        try:
            with open(self.log_path(fid), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - LOG_MAX_BYTES))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-tail:]

    def _output_since(self, fid: int, offset: int) -> str:
        try:
            with open(self.log_path(fid), "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(offset if offset <= size else 0)
                text = handle.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            return ""
        return text[-OUTPUT_CHARS:].strip()

    # --- processes -----------------------------------------------------------------------

    def spawn(self, **kwargs) -> subprocess.Popen:
        """Popen in the main thread: the parent-death signal of a child fires when the *thread*
        that forked it ends, and request threads end all the time."""
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(**kwargs)
        box: dict = {}
        done = threading.Event()
        self.spawns.put((kwargs, box, done))
        if not done.wait(30):
            raise OSError("the host did not start the process in time")
        if "error" in box:
            raise box["error"]
        return box["proc"]

    def serve_spawns(self) -> None:
        """The main thread's loop: start what spawn() asked for, until the host stops."""
        while not self.stopping.is_set():
            try:
                kwargs, box, done = self.spawns.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                box["proc"] = subprocess.Popen(**kwargs)
            except Exception as exc:  # OSError, ValueError (a NUL in the env): the start fails
                box["error"] = exc
            done.set()

    def _bwrap_argv(self, *, uid: int, hostname: str, binds: list, command: list, die_with_parent: bool = True) -> list:
        mounts = []
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                mounts += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                mounts += ["--ro-bind", path, path]
        mounts += ["--perms", "0755", "--dir", "/etc"]
        for name in SYSTEM_ETC:
            mounts += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        mounts += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
        mounts += ["--perms", "0755", "--dir", "/run", "--perms", "0755", "--dir", "/orchestrio"]
        for source, target in binds:
            mounts += ["--ro-bind", source, target]
        return [
            shutil.which("bwrap") or "bwrap", *mounts, "--remount-ro", "/",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try", "--hostname", hostname,
            "--new-session", *(["--die-with-parent"] if die_with_parent else []), "--chdir", "/code" if binds else "/", "--",
            shutil.which("setpriv") or "setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", *command,
        ]  # fmt: skip

    def _popen_args(self, version: Version, fd: int) -> dict:
        runner, handler = RUNTIMES[version.runtime]
        interpreter = self.interpreters[version.runtime]
        if self.isolation == "bwrap":
            inner_runner, inner_handler = f"/orchestrio/{runner}", f"/code/{handler}"
        else:  # reached through the working directory: no parent directory needs to let the uid in
            inner_runner, inner_handler = f"/proc/self/cwd/{runner}", f"/proc/self/cwd/code/{handler}"
        if version.runtime == "python3.11":
            command = [interpreter, "-I", "-B", "-u", inner_runner, "--listen-fd", str(fd), "--handler", inner_handler]
        else:
            command = [interpreter, "--preserve-symlinks", "--preserve-symlinks-main", inner_runner, "--listen-fd", str(fd), "--handler", inner_handler]
        uid = self.uid_base + version.fid
        kwargs: dict = {"cwd": version.dir}
        if self.isolation == "bwrap":
            binds = [(os.path.join(version.dir, "code"), "/code"), (os.path.join(version.dir, runner), inner_runner)]
            real = os.path.realpath(interpreter)
            prefix = os.path.dirname(os.path.dirname(real))
            if not real.startswith(tuple(path + "/" for path in SYSTEM_DIRS)) and prefix.count("/") >= 2:
                binds.append((prefix, prefix))  # e.g. /opt/node/bin/node: its installation, read-only
                command[0] = real
            kwargs["args"] = self._bwrap_argv(uid=uid, hostname=f"fn-{version.slug}"[:63], binds=binds, command=command)
        else:
            kwargs["args"] = command
            kwargs["preexec_fn"] = _in_child
            if self.isolation == "uid":
                kwargs.update(user=uid, group=uid, extra_groups=[])
        return kwargs

    def _kill(self, version: Version) -> None:
        proc, version.proc, version.ready = version.proc, None, False
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its session's group: bwrap, or the runner and its children
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.unlink(version.socket_path)
        except FileNotFoundError:
            pass

    def _kill_uid(self, uid: int) -> None:
        """Every process of the function's own uid (uid isolation: what its runners left behind)."""
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == uid:
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                continue

    def start(self, version: Version) -> int:
        """Start the version's runner (its lock held) and wait for its health; the ms it took."""
        began = time.monotonic()
        self._kill(version)
        log_file = self.log_path(version.fid)
        try:
            offset = os.path.getsize(log_file)
        except OSError:
            offset = 0
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(version.socket_path)
            os.chmod(version.socket_path, 0o600)
            listener.listen(64)
            env = {
                "PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "HOME": "/tmp", **version.env,
                "ORCHESTRIO_FUNCTION": version.slug, "ORCHESTRIO_FUNCTION_VERSION": str(version.number),
            }  # fmt: skip
            output = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                kwargs = self._popen_args(version, listener.fileno())
                version.proc = proc = self.spawn(
                    **kwargs, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True,
                    close_fds=True, pass_fds=(listener.fileno(),),
                )  # fmt: skip
            except (OSError, ValueError) as exc:
                raise StartFailed(f"cannot start the runtime: {getattr(exc, 'strerror', None) or exc}") from None
            finally:
                os.close(output)
        except OSError as exc:
            raise StartFailed(f"cannot start the runtime: {exc.strerror or exc}") from None
        finally:
            listener.close()  # the runner holds it now
        deadline = began + version.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._kill(version)
                raise StartFailed(f"the runtime exited at start (code {proc.returncode})", self._output_since(version.fid, offset))
            if self._healthy(version.socket_path, max(0.05, min(1.0, deadline - time.monotonic()))):
                version.ready = True
                return int((time.monotonic() - began) * 1000)
            time.sleep(0.02)
        self._kill(version)
        raise StartFailed(f"the runtime did not answer its health check within {version.start_timeout:g}s", self._output_since(version.fid, offset))

    @staticmethod
    def _healthy(socket_path: str, timeout: float) -> bool:
        connection = UnixConnection(socket_path, timeout)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    # --- what the routes do --------------------------------------------------------------

    def _files(self, version: Version, code: str) -> None:
        runner, handler = RUNTIMES[version.runtime]
        function_dir = self.function_dir(version.fid)
        os.makedirs(function_dir, mode=0o700, exist_ok=True)
        shutil.rmtree(version.dir, ignore_errors=True)
        code_dir = os.path.join(version.dir, "code")
        os.makedirs(code_dir)
        for path in (version.dir, code_dir):
            os.chmod(path, 0o755)  # the runner reads, never writes (root's, or read-only bound)
        with open(os.path.join(code_dir, handler), "w", encoding="utf-8") as out:
            out.write(code)
        shutil.copyfile(os.path.join(HERE, runner), os.path.join(version.dir, runner))
        for path in (os.path.join(code_dir, handler), os.path.join(version.dir, runner)):
            os.chmod(path, 0o444)

    def _forget(self, version: Version) -> None:
        with self.lock:
            version.forgotten = True
            if self.versions.get((version.fid, version.number)) is version:
                del self.versions[(version.fid, version.number)]

    def put_version(self, fid: int, number: int, spec: dict) -> dict:
        if spec["runtime"] not in self.interpreters:
            offered = ", ".join(sorted(self.interpreters)) or "none"
            raise Refused(422, f"this function instance has no {spec['runtime']} runtime (it offers: {offered})")
        if self.uid_base + fid > MAX_UID:
            raise Refused(422, f"function id {fid} is too large for a uid of its own here")
        with self.lock:
            version = self.versions.get((fid, number))
            already = version is not None
            if not already:
                version = self.versions[(fid, number)] = Version(self, fid, number, spec)
            else:
                version.idle_timeout = spec["idle_timeout_seconds"]
            version.inflight += 1
            version.last = time.monotonic()
        try:
            with version.lock:
                if version.forgotten:
                    raise Refused(422, f"version {number} did not start: it was removed while it started")
                if already and version.running():
                    return {"start_ms": 0, "already": True}
                try:
                    if not already:
                        try:
                            self._files(version, spec["code"])
                        except OSError as exc:
                            raise StartFailed(f"its files could not be written ({exc.strerror or exc})") from None
                    took = self.start(version)
                except StartFailed as exc:
                    self.log(fid, f"version {number} did not start: {exc}")
                    if not already:
                        self._forget(version)
                        shutil.rmtree(version.dir, ignore_errors=True)
                    raise Refused(422, f"version {number} did not start: {exc}", output=exc.output) from None
                self.log(fid, f"version {number} started ({took} ms)")
                return {"start_ms": 0, "already": True} if already else {"start_ms": took}
        finally:
            with self.lock:
                version.inflight -= 1
                version.last = time.monotonic()

    def invoke(self, fid: int, number: int, body: bytes, timeout: float) -> tuple:
        """(status, body bytes, cold) of the runner's answer."""
        with self.lock:
            version = self.versions.get((fid, number))
            if version is None:
                raise Refused(404, f"version {number} of function {fid} is not on this host", code="unknown_version")
            version.inflight += 1
            version.last = time.monotonic()
            cold = not version.running()  # this invocation waits for a start (its own or another's)
        try:
            # Held briefly, or while a start (concurrent invocations share one) or an idle stop is
            # under way: then this finds the runner started, or starts it again.
            with version.lock:
                if version.forgotten:
                    raise Refused(404, f"version {number} of function {fid} is not on this host", code="unknown_version")
                if not version.running():
                    cold = True
                    try:
                        took = self.start(version)
                    except StartFailed as exc:
                        self.log(fid, f"version {number} did not start: {exc}")
                        raise Refused(502, f"version {number} could not start: {exc} (see its logs)", output=exc.output) from None
                    self.log(fid, f"version {number} started on request (cold start {took} ms)")
            return (*self._call(version.socket_path, body, timeout), cold)
        finally:
            with self.lock:
                version.inflight -= 1
                version.last = time.monotonic()

    @staticmethod
    def _call(socket_path: str, body: bytes, timeout: float) -> tuple:
        connection = UnixConnection(socket_path, timeout)
        try:
            connection.request("POST", "/invoke", body, {"Content-Type": "application/json", "Content-Length": str(len(body))})
            response = connection.getresponse()
            data = response.read(MAX_ANSWER + 1)
        except socket.timeout:
            raise Refused(504, f"the function did not answer within {timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise Refused(502, f"the function's runtime broke the connection ({type(exc).__name__}): see its logs") from None
        finally:
            connection.close()
        if len(data) > MAX_ANSWER:
            raise Refused(502, f"the function's response is over {MAX_ANSWER} bytes")
        return response.status, data

    def delete_version(self, fid: int, number: int) -> None:
        with self.lock:
            version = self.versions.get((fid, number))
        if version is None:
            return
        self._forget(version)
        with version.lock:  # after a start under way
            was = version.running()
            self._kill(version)
        shutil.rmtree(version.dir, ignore_errors=True)
        if was:
            self.log(fid, f"version {number} stopped: removed")

    def delete_function(self, fid: int) -> None:
        with self.lock:
            versions = [v for (f, _), v in self.versions.items() if f == fid]
        for version in versions:
            self._forget(version)
            with version.lock:
                self._kill(version)
        if self.isolation == "uid":
            self._kill_uid(self.uid_base + fid)
        with self.log_lock:
            shutil.rmtree(self.function_dir(fid), ignore_errors=True)

    def listing(self) -> dict:
        now, out = time.monotonic(), {}
        with self.lock:
            versions = list(self.versions.values())
        for version in sorted(versions, key=lambda v: (v.fid, v.number)):
            entry = out.setdefault(str(version.fid), {"known": [], "running": [], "idle_seconds": None})
            entry["known"].append(version.number)
            if version.running():
                entry["running"].append(version.number)
                idle = 0.0 if version.inflight else round(now - version.last, 3)
                entry["idle_seconds"] = idle if entry["idle_seconds"] is None else min(entry["idle_seconds"], idle)
        return {"functions": out}

    def health(self) -> dict:
        return {"status": "ok", "digest": self.digest, "runtimes": sorted(self.interpreters), "isolation": self.isolation, "isolation_reason": self.isolation_reason}

    # --- background ----------------------------------------------------------------------

    def sweep(self) -> None:
        """Stop the runners idle past their timeout; notice the ones that exited; trim the logs."""
        now = time.monotonic()
        with self.lock:
            versions = list(self.versions.values())
        for version in versions:
            if version.proc is not None and version.proc.poll() is not None:
                if version.lock.acquire(blocking=False):
                    try:
                        if version.proc is not None and version.proc.poll() is not None:
                            code = version.proc.returncode
                            self._kill(version)
                            self.log(version.fid, f"version {version.number} exited on its own (code {code})")
                    finally:
                        version.lock.release()
                continue
            if not version.running() or not version.lock.acquire(blocking=False):
                continue  # stopped already, or starting (or being invoked)
            try:
                with self.lock:
                    idle = now - version.last
                    if version.inflight or idle < version.idle_timeout:
                        continue
                # An invocation that comes now waits for the lock, then starts it again.
                self._kill(version)
                self.log(version.fid, f"version {version.number} stopped: idle for {int(idle)}s (scaled to zero)")
            finally:
                version.lock.release()
        for fid in {v.fid for v in versions}:
            self.trim_log(fid)

    def sweep_forever(self) -> None:
        while not self.stopping.wait(self.sweep_seconds):
            if os.getppid() != self.parent:  # the agent went away: so do we
                sys.stderr.write("function host: the agent is gone; stopping\n")
                self.stopping.set()
                return
            try:
                self.sweep()
            except Exception as exc:  # the sweep must go on
                sys.stderr.write(f"function host: idle sweep failed: {type(exc).__name__}: {exc}\n")

    def stop_all(self) -> None:
        with self.lock:
            versions = list(self.versions.values())
        for version in versions:
            self._kill(version)
        if not self.sockets_dir.startswith(self.data_dir + os.sep):
            shutil.rmtree(self.sockets_dir, ignore_errors=True)


def _spec(body) -> dict:
    """PUT /functions/…/versions/…'s body, checked (422 otherwise)."""
    if not isinstance(body, dict):
        raise Refused(422, "the body must be a JSON object")
    slug, runtime, code, env = body.get("slug"), body.get("runtime"), body.get("code"), body.get("env", {})
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise Refused(422, "slug must be a DNS label (lowercase letters, digits and '-', at most 63)", field="slug")
    if runtime not in RUNTIMES:
        raise Refused(422, f"runtime must be one of {', '.join(RUNTIMES)}", field="runtime")
    if not isinstance(code, str) or "\0" in code:
        raise Refused(422, "code must be text", field="code")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v for k, v in env.items()
    ):
        raise Refused(422, "env must map names (no '=') to strings, without NUL characters", field="env")
    idle = body.get("idle_timeout_seconds")
    if isinstance(idle, bool) or not isinstance(idle, int) or not 1 <= idle <= 86400 * 7:
        raise Refused(422, "idle_timeout_seconds must be a whole number of seconds from 1 to 604800", field="idle_timeout_seconds")
    start = body.get("start_timeout_seconds", 10)
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 < start <= 600:
        raise Refused(422, "start_timeout_seconds must be a number of seconds above 0, at most 600", field="start_timeout_seconds")
    try:
        code.encode("utf-8")
        for key, value in env.items():
            (key + value).encode("utf-8")
    except UnicodeError:
        raise Refused(422, "code and env must be valid text (no lone surrogates)") from None
    return {"slug": slug, "runtime": runtime, "code": code, "env": dict(env), "idle_timeout_seconds": idle, "start_timeout_seconds": float(start)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "orchestrio-function-host"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # agent's delayed ACK hold the body back ~40 ms (measured: warm invocations p50 49 ms → below).
    disable_nagle_algorithm = True
    timeout = 300  # a client that stops sending (or an idle keep-alive) frees its thread
    host: Host = None  # set by main()

    def log_message(self, fmt, *args) -> None:
        pass  # the functions' logs are the log; request lines would only fill the app log

    def send_error(self, code, message=None, explain=None) -> None:
        """The server's own errors (a malformed request) as ours: JSON, with the digest."""
        self.close_connection = True
        try:
            self._send(code, {"detail": message or "bad request"})
        except OSError:
            pass

    def _send(self, status: int, body=None, headers: dict | None = None) -> None:
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header(HOST_HEADER, self.host.digest)
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(data)

    def _body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    self.close_connection = True
                    raise Refused(400, "the chunked body is malformed") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                if len(data) + size > limit:
                    self.close_connection = True
                    raise Refused(413, f"the body is over {limit} bytes")
                data += self.rfile.read(size)
                self.rfile.readline(3)
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit():
            self.close_connection = True
            raise Refused(400, "Content-Length must be a whole number")
        if int(length) > limit:
            self.close_connection = True  # the body is not read: the connection cannot go on
            raise Refused(413, f"the body is over {limit} bytes")
        return self.rfile.read(int(length))

    def _json(self, limit: int):
        data = self._body(limit)
        try:
            return json.loads(data.decode("utf-8")) if data else None
        except ValueError:
            raise Refused(422, "the body is not valid JSON") from None

    def _dispatch(self) -> None:
        try:
            self._route()
        except Refused as exc:
            self._send(exc.status, exc.body)
        except Exception as exc:  # a bug of ours: one answer fails, the host goes on
            sys.stderr.write(f"function host: {self.command} {self.path} failed: {type(exc).__name__}: {exc}\n")
            self.close_connection = True
            try:
                self._send(500, {"detail": f"the function host failed on this request ({type(exc).__name__})"})
            except OSError:
                pass

    def _route(self) -> None:
        url = urlsplit(self.path)
        path, method = url.path, self.command
        if path == "/health" and method in ("GET", "HEAD"):
            return self._send(200, self.host.health())
        presented = self.headers.get(KEY_HEADER) or ""
        if not self.host.app_key or not hmac.compare_digest(presented.encode("utf-8", "replace"), self.host.app_key.encode()):
            self.close_connection = True  # its body is not read
            raise Refused(401, "missing or wrong app key" if self.host.app_key else "this host has no app key (ORCHESTRIO_APP_KEY): it refuses every call")
        match = ROUTE.fullmatch(path)
        if match is None:
            raise Refused(404, f"no such route: {path}")
        fid, number, invoke, logs = match.groups()
        fid, number = int(fid) if fid else None, int(number) if number else None
        if fid is None:
            allowed = ("GET",)
        elif logs:
            allowed = ("GET",)
        elif invoke:
            allowed = ("POST",)
        elif number is not None:
            allowed = ("PUT", "DELETE")
        else:
            allowed = ("DELETE",)
        if method not in allowed:
            self.close_connection = True
            raise Refused(405, f"{method} is not allowed on {path} (only {', '.join(allowed)})")
        if fid is None:
            return self._send(200, self.host.listing())
        if logs:
            tail = parse_qs(url.query).get("tail", ["200"])[-1]
            if not tail.isdigit() or not 1 <= int(tail) <= MAX_TAIL:
                raise Refused(422, f"tail must be a whole number from 1 to {MAX_TAIL}", field="tail")
            return self._send(200, {"lines": self.host.read_log(fid, int(tail))})
        if invoke:
            raw = self.headers.get(TIMEOUT_HEADER)
            try:
                timeout = DEFAULT_TIMEOUT if raw is None else float(raw)
            except ValueError:
                timeout = -1.0
            if not 0 < timeout <= MAX_TIMEOUT:  # NaN fails too
                self._body(MAX_INVOKE_BODY)
                raise Refused(422, f"{TIMEOUT_HEADER} must be a number of seconds above 0, at most {MAX_TIMEOUT:g}")
            status, data, cold = self.host.invoke(fid, number, self._body(MAX_INVOKE_BODY), timeout)
            return self._send(status, data, {COLD_HEADER: "1" if cold else "0"})
        if method == "PUT":
            return self._send(200, self.host.put_version(fid, number, _spec(self._json(MAX_PUT_BODY))))
        self._body(MAX_PUT_BODY)
        if number is not None:
            self.host.delete_version(fid, number)
        else:
            self.host.delete_function(fid)
        return self._send(204)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Orchestrio function host")
    parser.add_argument("--data-dir", required=True, help="emptied at start: the versions' code, sockets and logs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $PORT")
    parser.add_argument("--uid-base", type=int, default=200000, help="a function's runners run as this + its id (when root)")
    parser.add_argument("--isolation", choices=("auto", "uid", "none"), default="auto", help="auto: the strongest this machine has")
    parser.add_argument("--sweep-seconds", type=float, default=SWEEP_SECONDS, help="how often idle runners are looked for")
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else int(os.environ.get("PORT") or 0)
    if args.isolation == "uid" and os.geteuid() != 0:
        parser.error("--isolation uid needs root")
    if PRCTL is not None:
        PRCTL(PR_SET_DUMPABLE, 0, 0, 0, 0)  # same-uid runners cannot read our environment or ptrace us
    # Every file a runner writes stays under 64 MiB (inherited; the runners get SIGXFSZ back by
    # Popen's restore_signals, the host gets EFBIG on its own writes instead of dying).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    if hard == resource.RLIM_INFINITY or hard > FILE_SIZE_LIMIT:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    for attempt in range(50):  # a host the agent had before it restarted leaves within seconds
        try:
            server = Server((args.host, port), Handler)
            break
        except OSError as exc:
            if attempt == 49 or exc.errno != errno.EADDRINUSE:
                sys.stderr.write(f"function host: cannot listen on {args.host}:{port}: {exc.strerror}\n")
                return 1
            time.sleep(0.1)
    host = Handler.host = Host(args)  # (after the port is ours: an older host's runners are gone)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: host.stopping.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True).start()
    threading.Thread(target=host.sweep_forever, name="idle-sweep", daemon=True).start()
    sys.stderr.write(
        f"function host {host.digest} listening on {args.host}:{server.server_address[1]}; runtimes: "
        f"{', '.join(sorted(host.interpreters)) or 'none'}; isolation: {host.isolation} ({host.isolation_reason})\n"
    )
    sys.stderr.flush()
    host.serve_spawns()
    host.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
