#!/usr/bin/env python3
"""The Orchestrio instance agent: a small HTTP service that runs on every instance.

Standard library only (Python 3.8+), one file, so that EC2 user data can install it with a
single `cat` and the local provider can run it as a child process.

    GET  /health                 liveness, no authentication
    GET  /api/status             uptime, version, config digest, running tasks, the app's process
    GET  /app-logs?after=&since=&tail=&stream=&q=   the instance's own output (below)
    GET  /stats                  cumulative counters of the instance's processes (below)
    GET  /config, POST /config   the instance's platform config (JSON object)
    POST /chat                   {"message", "conversation_id"?, "user"?, "model"?}: the reply (below)
    GET  /conversations?limit=, GET /conversations/{cid}   what was said (under the state dir)
    GET  /usage                  tokens, requests and end users per UTC day, cumulative (below)
    POST /secrets                the deployment's secrets (JSON object of strings)
    POST /agent-key              replace the key (authenticated with the current one); a batch
                                 machine takes its instance's identity with it
    PUT  /app                    {"command", "files"}: run that program as the app (below)
    POST /tasks                  run a script: {"task_id", "script_path", "args", "timeout_seconds"}
    GET  /tasks/{id}             its status, exit code and the last 64 KiB of stdout/stderr
    POST /tasks/{id}/cancel      kill its whole process group
    ANY  /webhooks/{slug}        echo what was received (gateway traffic)
    ANY  /{path}                 echo what was received (tunnel traffic)
    GET  /_orchestrio/blob?bytes=N   N bytes, streamed (for proxy tests and benchmarks)

Every call but /health needs `X-Orchestrio-Agent-Key: <key>`; the agent keeps only the key's
SHA-256 (given by the launcher in ORCHESTRIO_AGENT_KEY_SHA256, then kept in
`<state-dir>/agent-key.sha256` across rotations). A machine of a fleet batch starts with the
batch's bootstrap key and no instance; the control plane's first `POST /agent-key` gives it its
instance's key and `identity` ({"instance_id", "tenant_id"}), kept in `<state-dir>/identity.json`
and never changed afterwards. Traffic the control plane's gateway proxies
(`/webhooks/…` and the echo) carries `X-Orchestrio-Gateway-Key` instead, a key derived from that
hash which opens those routes only: a gateway caller can never reach the management routes.
Script arguments reach the script as data: JSON on stdin, and `--key value` pairs in argv (the
script is executed directly, never through a shell).

App mode (`--app-command '<JSON argv>'`): the agent supervises the instance's own program (a
blueprint's `command`), started with PORT=<--app-port> and the deployment's secrets in its
environment, and forwards every request that is not a management call to it on 127.0.0.1. When
the program exits on its own the agent exits with its code: the instance's process is gone, as
the control plane expects. New secrets restart the program, and so does a new key: the program's
env has ORCHESTRIO_APP_KEY, derived from the key's hash (like the gateway key) for the control
plane to authenticate to it. `PUT /app` (a function instance's host, docs/functions.md) writes the
files (at most 4 MiB) into `<state-dir>/app/` afresh and runs the command there (its PORT
--app-port, its data in `<state-dir>/app-data/`, its /health open) as in app mode, remembered in
`<state-dir>/app.json`: a restarted agent without --app-command runs it again. Unlike a blueprint's
program it is the control plane's, not the instance's: when it exits on its own the agent starts
it again a second later (as systemd restarts a service) instead of exiting.

App logs: the instance's stdout and stderr — the program's in app mode, the agent's own request
log otherwise — each line with its time, its stream and a sequence number, kept in a ring buffer on
disk under the state dir (`app-logs/`, two files of half `--app-log-bytes` each: the older is
dropped when the newer fills), with the number of starts and the last exit code
(`app-logs/runs.json`), which survive the agent's restarts.

Stats: counters since they began (the control plane turns two samples into rates): CPU seconds
of the agent and every process under it (/proc/<pid>/stat, reaped children included; the
cgroup's cpu.stat with `--own-cgroup`, as under systemd on AWS), their RSS, the memory limit
(the cgroup's memory.max, else RLIMIT_AS; null when none), network bytes of the namespace's
interfaces other than loopback (/proc/net/dev; loopback alone where it is the only one, as in the
local sandbox), disk bytes read and written (/proc/<pid>/io, when readable) and the starts.

Chat (the `Runtime` class; docs/agent.md): the config's `model_policy` ({"allowed_models",
"default_model", "max_tokens_per_day"}) is enforced (a model outside it: 422 with the allowed
list; the day's budget used up: 429 with Retry-After at the next 00:00 UTC); the reply comes from
the config's `skills` (keyword → reply), or in app mode from the program's own `POST /chat`.
Tokens are counted as one per 4 characters. Usage counters only grow, per day, under an `epoch`.

Listening: on TCP (`--host/--port`, on a machine of its own) or on a listening socket the launcher
bound and handed over (`--listen-fd N`, the local provider's sandbox: the socket's file lives in a
directory only the control plane can reach). Secrets are written only under `--secrets-dir`
(a tmpfs: never on disk), readable by the agent's user alone.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import posixpath
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = "1.0.0"
KEY_HEADER = "X-Orchestrio-Agent-Key"
GATEWAY_HEADER = "X-Orchestrio-Gateway-Key"
OUTPUT_TAIL = 64 * 1024
MAX_JSON_BODY = 1024 * 1024
KILL_GRACE_SECONDS = 3
APP_TIMEOUT_SECONDS = 120
APP_LOG_BYTES = 1024 * 1024
APP_LOG_LINE_MAX = 8 * 1024  # longer lines are cut (and say so)
APP_LOG_TAIL_MAX = 1000
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
)


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Tail:
    """Keeps the last `limit` bytes written to it."""

    def __init__(self, limit: int = OUTPUT_TAIL) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.lock = threading.Lock()

    def write(self, chunk: bytes) -> None:
        with self.lock:
            self.buf += chunk
            if len(self.buf) > self.limit:
                del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        with self.lock:
            return bytes(self.buf).decode("utf-8", errors="replace")


def argv_pairs(args: dict) -> list:
    out = []
    for key, value in args.items():
        if isinstance(value, str):
            rendered = value
        else:
            rendered = json.dumps(value, separators=(",", ":"))
        out += [f"--{key}", rendered]
    return out


class Task:
    def __init__(self, agent: Agent, task_id: str, script: str, args: dict, timeout: int) -> None:
        self.agent = agent
        self.id = task_id
        self.script = script
        self.args = args
        self.timeout = timeout
        self.status = "running"
        self.exit_code = None
        self.stdout = Tail()
        self.stderr = Tail()
        self.started_at = now_iso()
        self.finished_at = None
        self.proc = None
        self._cancel = threading.Event()
        self.lock = threading.Lock()

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "exit_code": self.exit_code,
            "stdout": self.stdout.text(),
            "stderr": self.stderr.text(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def _finish(self, status: str, exit_code) -> None:
        with self.lock:
            if self.finished_at is not None:
                return
            self.status = status
            self.exit_code = exit_code
            self.finished_at = now_iso()
        self.agent.save_task(self)

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=KILL_GRACE_SECONDS)
                # The leader is gone; make sure no child of the group survives.
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            except subprocess.TimeoutExpired:
                continue

    def cancel(self) -> None:
        self._cancel.set()
        self._kill_group()

    def run(self) -> None:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": self.agent.home,
            "ORCHESTRIO_TASK_ID": self.id,
            "ORCHESTRIO_INSTANCE_ID": self.agent.instance_id,
            "ORCHESTRIO_SECRETS_FILE": self.agent.secrets_file,
        }
        try:
            self.proc = subprocess.Popen(
                [self.script, *argv_pairs(self.args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=os.path.dirname(self.script),
                env=env,
                start_new_session=True,  # its own process group: a timeout kills every child
                close_fds=True,
            )
        except OSError as exc:
            self.stderr.write(f"cannot execute {self.script}: {exc.strerror}\n".encode())
            self._finish("failed", 127 if isinstance(exc, FileNotFoundError) else 126)
            return
        readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            self.proc.stdin.write(json.dumps(self.args).encode("utf-8"))
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        timed_out = False
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill_group()
        else:
            # The script is done; children it left in its group go with it.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for reader in readers:
            reader.join(timeout=5)
        if self._cancel.is_set():
            self._finish("cancelled", self.proc.returncode)
        elif timed_out:
            self.stderr.write(f"\n[orchestrio] timed out after {self.timeout}s; process group killed\n".encode())
            self._finish("timed_out", self.proc.returncode)
        else:
            code = self.proc.returncode
            self._finish("succeeded" if code == 0 else "failed", code)

    @staticmethod
    def _pump(stream, tail: Tail) -> None:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            tail.write(chunk)
        stream.close()


class AppLog:
    """The instance's output as JSON lines `{"seq", "ts", "stream", "line"}` in `app.log`, rotated
    to `app.log.1` when it passes half of `max_bytes` (so both together stay within it)."""

    def __init__(self, directory: str, max_bytes: int = APP_LOG_BYTES) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "app.log")
        self.older = self.path + ".1"
        self.runs_path = os.path.join(directory, "runs.json")
        self.half = max(max_bytes // 2, 4096)
        self.lock = threading.Lock()
        self.seq = self._last_seq()
        self.partial = {"stdout": b"", "stderr": b""}

    def _last_seq(self) -> int:
        for path in (self.path, self.older):
            try:
                with open(path, "rb") as handle:
                    handle.seek(max(os.path.getsize(path) - 2 * APP_LOG_LINE_MAX, 0))
                    lines = handle.read().splitlines()
            except OSError:
                continue
            for raw in reversed(lines):
                try:
                    return int(json.loads(raw)["seq"])
                except (ValueError, KeyError, TypeError):
                    continue
        return 0

    def write(self, stream: str, data: bytes) -> None:
        """Append `data` (any chunk of the stream: whole lines are written, the rest waits)."""
        with self.lock:
            buffered = self.partial[stream] + data
            *lines, rest = buffered.split(b"\n")
            if len(rest) > APP_LOG_LINE_MAX:
                lines.append(rest)
                rest = b""
            self.partial[stream] = rest
            self._append(stream, lines)

    def flush(self, stream: str) -> None:
        with self.lock:
            rest, self.partial[stream] = self.partial[stream], b""
            if rest:
                self._append(stream, [rest])

    def _append(self, stream: str, lines: list) -> None:
        if not lines:
            return
        try:
            size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            handle = open(self.path, "ab")
            try:
                for raw in lines:
                    text = raw.rstrip(b"\r").decode("utf-8", "replace")
                    if len(text) > APP_LOG_LINE_MAX:
                        text = text[:APP_LOG_LINE_MAX] + f" [cut: {len(text) - APP_LOG_LINE_MAX} more characters]"
                    self.seq += 1
                    entry = (json.dumps({"seq": self.seq, "ts": now_iso(), "stream": stream, "line": text}, ensure_ascii=False) + "\n").encode()
                    if size and size + len(entry) > self.half:  # the newer half is full: it becomes the older
                        handle.close()
                        os.replace(self.path, self.older)
                        handle, size = open(self.path, "ab"), 0
                    handle.write(entry)
                    size += len(entry)
            finally:
                handle.close()
        except OSError:
            pass  # a full disk loses log lines, never the instance

    def read(self, *, after: int = 0, since: str = "", tail: int = 100, stream: str = "", q: str = "") -> dict:
        """The last `tail` lines after seq `after` (and at or after time `since`), of one stream
        or both, containing `q` (case-insensitive)."""
        with self.lock:
            chunks = []
            for path in (self.older, self.path):
                try:
                    with open(path, "rb") as handle:
                        chunks.append(handle.read())
                except OSError:
                    pass
        wanted = q.lower()
        found = []
        for raw in b"".join(chunks).splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("seq", 0) <= after or (since and entry.get("ts", "") < since):
                continue
            if stream and entry.get("stream") != stream:
                continue
            if wanted and wanted not in entry.get("line", "").lower():
                continue
            found.append(entry)
        lines = found[-tail:] if tail else []
        return {"lines": lines, "last_seq": self.seq, "truncated": len(found) > len(lines), **self.runs()}

    def runs(self) -> dict:
        try:
            with open(self.runs_path, "rb") as handle:
                runs = json.loads(handle.read())
        except (OSError, ValueError):
            runs = {}
        return {"starts": runs.get("starts", 0), "last_exit_code": runs.get("last_exit_code"), "last_exit_at": runs.get("last_exit_at")}

    def record_run(self, *, started: bool = False, exit_code=None) -> None:
        with self.lock:
            runs = self.runs()
            if started:
                runs["starts"] += 1
            if exit_code is not None:
                runs["last_exit_code"], runs["last_exit_at"] = exit_code, now_iso()
            _atomic_write(self.runs_path, json.dumps(runs).encode())


def pump_lines(source, log: AppLog, stream: str) -> None:
    """Copy a pipe into the app log until it closes."""
    try:
        for chunk in iter(lambda: source.read1(65536), b""):
            log.write(stream, chunk)
    except (OSError, ValueError):
        pass
    finally:
        log.flush(stream)


class App:
    """The instance's own program (app mode): started with PORT and the secrets in its
    environment, restarted when the secrets change. When it exits on its own, `on_exit(code)`
    runs (the agent then exits with that code)."""

    def __init__(self, agent: "Agent", argv: list, port: int, home: str, health_path: str = "/health") -> None:
        self.agent = agent
        self.argv = argv
        self.port = port
        self.home = home
        self.health_path = health_path
        self.proc = None
        self.lock = threading.Lock()
        self.restarting = False
        self.restarts = 0
        self.started_at = None
        self.pumps = []
        self.on_exit = lambda code: None

    def env(self) -> dict:
        env = {key: value for key, value in self.agent.secrets().items() if isinstance(value, str)}
        env.update({
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self.home, "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1", "ORCHESTRIO_INSTANCE_ID": self.agent.instance_id,
            "ORCHESTRIO_APP_KEY": hmac.new(bytes.fromhex(self.agent.key_hash()), b"orchestrio-app", hashlib.sha256).hexdigest(),
        })  # fmt: skip
        return env

    def start(self) -> None:
        with self.lock:
            self.proc = proc = subprocess.Popen(
                self.argv, cwd=self.home, env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
            self.started_at = now_iso()
        self.agent.app_log.record_run(started=True)
        self.pumps = [
            threading.Thread(target=pump_lines, args=(pipe, self.agent.app_log, stream), name=f"app-{stream}", daemon=True)
            for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for pump in self.pumps:
            pump.start()
        threading.Thread(target=self._watch, args=(proc,), name="app-watch", daemon=True).start()

    def _watch(self, proc) -> None:
        code = proc.wait()
        self.agent.app_log.record_run(exit_code=code)
        with self.lock:
            if proc is not self.proc or self.restarting:
                return
        for pump in self.pumps:
            pump.join(timeout=2)  # its last lines are in the app log
        last = [entry["line"] for entry in self.agent.app_log.read(tail=10)["lines"]]
        sys.stderr.write(f"orchestrio-agent: the instance's program exited with code {code}; its last output: {' | '.join(last)[-400:]}\n")
        sys.stderr.flush()
        self.on_exit(code)

    def _stop(self, proc) -> None:
        for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def restart(self) -> None:
        with self.lock:
            self.restarting, proc = True, self.proc
        try:
            if proc is not None:
                self._stop(proc)
            self.restarts += 1
            self.start()
        finally:
            with self.lock:
                self.restarting = False

    def stop(self) -> None:
        with self.lock:
            self.restarting, proc = True, self.proc
        if proc is not None:
            self._stop(proc)

    def listening(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def status(self) -> dict:
        proc = self.proc
        running = proc is not None and proc.poll() is None
        return {
            "pid": proc.pid if proc else None,
            "running": running,
            "listening": running and self.listening(),
            "exit_code": proc.returncode if proc is not None else None,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "port": self.port,
        }


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.state_dir = os.path.abspath(args.state_dir)
        # A machine of a fleet batch starts without an instance (its user data is the batch's):
        # it is told which instance it is with its own key (POST /agent-key), kept in identity.json.
        self.identity_file = os.path.join(self.state_dir, "identity.json")
        try:
            with open(self.identity_file, encoding="utf-8") as fh:
                identity = json.load(fh)
        except (OSError, ValueError):
            identity = {}
        self.instance_id = args.instance_id or str(identity.get("instance_id", ""))
        self.tenant_id = args.tenant_id or str(identity.get("tenant_id", ""))
        self.root = os.path.abspath(args.root)
        self.home = os.path.abspath(args.home)
        self.started = time.time()
        self.tasks: dict = {}
        self.tasks_lock = threading.Lock()
        os.makedirs(os.path.join(self.state_dir, "tasks"), exist_ok=True)
        self.key_file = os.path.join(self.state_dir, "agent-key.sha256")
        self.config_file = os.path.join(self.state_dir, "config.json")
        secrets_dir = os.path.abspath(args.secrets_dir or self.state_dir)
        os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
        self.secrets_file = os.path.join(secrets_dir, "secrets.json")
        self.reloads = 0
        self.app = None  # run_app()'s
        self.app_port, self.app_file, self.exit = getattr(args, "app_port", 8080), os.path.join(self.state_dir, "app.json"), None
        self.own_cgroup = getattr(args, "own_cgroup", False)
        self.app_log = AppLog(os.path.join(self.state_dir, "app-logs"), getattr(args, "app_log_bytes", APP_LOG_BYTES))
        self.runtime = Runtime(self)
        # The launcher's hash is the control plane's current key: it wins over what a previous
        # run left on disk (a rotation while stopped, or a file the instance's own code changed).
        env_hash = os.environ.pop("ORCHESTRIO_AGENT_KEY_SHA256", "")
        self._key_hash = env_hash or self._read_key_file()
        if env_hash:
            _atomic_write(self.key_file, env_hash.encode())

    # --- keys and config -------------------------------------------------------------------

    def _read_key_file(self) -> str:
        try:
            with open(self.key_file, encoding="ascii") as fh:
                return fh.read().strip()
        except (OSError, UnicodeError):
            return ""

    def key_hash(self) -> str:
        """Held in memory: the file only carries it across restarts of the agent (on a machine of
        its own, where no launcher passes it), so nothing written there later changes it."""
        return self._key_hash

    def check_key(self, presented: str | None) -> bool:
        expected = self.key_hash()
        if not presented or not expected:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode("utf-8")).hexdigest(), expected)

    def check_gateway_key(self, presented: str | None) -> bool:
        expected = self.key_hash()
        if not presented or not expected:
            return False
        derived = hmac.new(bytes.fromhex(expected), b"orchestrio-gateway", hashlib.sha256).hexdigest()
        return hmac.compare_digest(derived, presented)

    def set_key_hash(self, value: str) -> None:
        self._key_hash = value
        _atomic_write(self.key_file, value.encode("ascii"))
        if self.app is not None:
            self.app.restart()  # its ORCHESTRIO_APP_KEY changed

    def run_app(self, argv: list, home: str, health_path: str = "/health", pushed: bool = False) -> int:
        """Stop the app if one runs, start `argv` as the app (OSError when it cannot start). A
        blueprint's program ends the agent when it exits; a `pushed` one (PUT /app) is started again."""
        if self.app is not None:
            self.app.stop()
            self.app = None
        app = App(self, argv, self.app_port, home, health_path)
        app.on_exit = (lambda code: self._again(app)) if pushed else self.exit
        app.start()
        self.app = app
        return app.proc.pid

    def _again(self, app) -> None:
        time.sleep(1)
        if self.app is app and not app.restarting:
            app.restart()

    def put_app(self, body) -> dict:
        command, files = (body.get(k) if isinstance(body, dict) else None for k in ("command", "files"))
        if not isinstance(command, list) or not command or not all(isinstance(p, str) for p in command):
            raise ValueError("command must be a non-empty list of strings")
        if not isinstance(files, dict) or not all(isinstance(v, str) and re.fullmatch(r"\w[\w.-]{0,63}", n, re.A) for n, v in files.items()):
            raise ValueError("files must map names ([A-Za-z0-9_][A-Za-z0-9._-]{0,63}) to text")
        if sum(len(v.encode()) for v in files.values()) > 4 << 20:
            raise ValueError("the files are over 4 MiB")
        app = os.path.join(self.state_dir, "app")
        shutil.rmtree(app + ".new", ignore_errors=True)
        os.mkdir(app + ".new")
        os.chmod(app + ".new", 0o755)
        for name, text in files.items():
            with open(os.path.join(app + ".new", name), "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(fh.name, 0o644)
        shutil.rmtree(app, ignore_errors=True)
        os.rename(app + ".new", app)
        os.makedirs(app + "-data", 0o700, exist_ok=True)
        _atomic_write(self.app_file, json.dumps({"command": command}).encode())
        try:
            return {"started": True, "pid": self.run_app(command, app, pushed=True)}
        except OSError as exc:
            os.unlink(self.app_file)  # not started again by the next agent
            raise ValueError(f"cannot start {command[0]}: {exc.strerror}") from None

    def config_bytes(self) -> bytes:
        try:
            with open(self.config_file, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return b"{}"

    def config_digest(self) -> str:
        return hashlib.sha256(self.config_bytes()).hexdigest()

    def set_config(self, config: dict) -> str:
        data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8")
        _atomic_write(self.config_file, data)
        return hashlib.sha256(data).hexdigest()

    def set_secrets(self, values: dict) -> int:
        """Store the secrets (0600, in the secrets dir); returns how many. No digest of them is
        ever given out: a hash of a short secret is a way to guess it."""
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise ValueError("secrets must be an object of strings")
        data = json.dumps(values, sort_keys=True, separators=(",", ":")).encode("utf-8")
        old = os.umask(0o077)
        try:
            _atomic_write(self.secrets_file, data)
        finally:
            os.umask(old)
        os.chmod(self.secrets_file, 0o600)
        if self.app is not None:
            self.app.restart()  # the program reads its secrets from its environment
        return len(values)

    def secrets(self) -> dict:
        try:
            with open(self.secrets_file, "rb") as fh:
                values = json.loads(fh.read() or b"{}")
        except (FileNotFoundError, ValueError):
            return {}
        return values if isinstance(values, dict) else {}

    def health(self) -> tuple[bool, str]:
        """Unhealthy when the config says so ({"health": {"fail": true}}): the stand-in for a
        product that a bad config breaks, so failure handling can be rehearsed."""
        try:
            config = json.loads(self.config_bytes() or b"{}")
        except ValueError:
            return False, "the config file is not valid JSON"
        health = config.get("health") if isinstance(config, dict) else None
        if isinstance(health, dict) and health.get("fail"):
            return False, str(health.get("reason") or "the config marks this instance unhealthy")
        return True, "ok"

    def run_reload_hook(self) -> dict:
        """After config or secrets change, run the product's reload hook if it installed one
        (/opt/orchestrio/hooks/reload): that is how "restart what needs restarting" happens."""
        hook = self.root_path("/opt/orchestrio/hooks/reload")
        if not os.access(hook, os.X_OK):
            return {"ran": False}
        self.reloads += 1
        try:
            proc = subprocess.run([hook], capture_output=True, timeout=60, cwd=os.path.dirname(hook), env={"PATH": "/usr/local/bin:/usr/bin:/bin", "ORCHESTRIO_STATE_DIR": self.state_dir, "ORCHESTRIO_SECRETS_FILE": self.secrets_file})
        except subprocess.TimeoutExpired:
            return {"ran": True, "exit_code": None, "error": "the reload hook timed out after 60s"}
        return {"ran": True, "exit_code": proc.returncode, "output": (proc.stdout + proc.stderr)[-2000:].decode("utf-8", "replace")}

    # --- tasks -----------------------------------------------------------------------------

    def root_path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/")) if self.root != "/" else path

    def resolve_script(self, script_path: str) -> str:
        if not isinstance(script_path, str) or not script_path.startswith("/"):
            raise ValueError("script_path must be an absolute path")
        normal = posixpath.normpath(script_path)
        if normal != script_path or ".." in script_path.split("/"):
            raise ValueError("script_path must be normalised and must not contain '..'")
        resolved = os.path.realpath(self.root_path(normal))
        if self.root != "/" and not resolved.startswith(self.root + os.sep):
            raise ValueError("script_path leaves the instance's filesystem")
        return resolved

    def save_task(self, task: Task) -> None:
        path = os.path.join(self.state_dir, "tasks", f"{task.id}.json")
        _atomic_write(path, json.dumps(task.to_dict()).encode("utf-8"))

    def load_task(self, task_id: str):
        with self.tasks_lock:
            task = self.tasks.get(task_id)
        if task is not None:
            return task.to_dict()
        try:
            with open(os.path.join(self.state_dir, "tasks", f"{task_id}.json"), encoding="utf-8") as fh:
                return json.load(fh)
        except (FileNotFoundError, ValueError):
            return None

    def start_task(self, body: dict):
        task_id = str(body.get("task_id", ""))
        if not task_id or not all(c.isalnum() or c in "-_" for c in task_id) or len(task_id) > 64:
            raise ValueError("task_id must be 1–64 letters, digits, '-' or '_'")
        existing = self.load_task(task_id)
        if existing is not None:
            return existing  # idempotent: the same task id never runs twice
        args = body.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError("args must be an object")
        timeout = body.get("timeout_seconds", 600)
        if not isinstance(timeout, int) or not 1 <= timeout <= 3600:
            raise ValueError("timeout_seconds must be an integer from 1 to 3600")
        script = self.resolve_script(body.get("script_path"))
        task = Task(self, task_id, script, args, timeout)
        with self.tasks_lock:
            self.tasks[task_id] = task
        threading.Thread(target=task.run, name=f"task-{task_id}", daemon=True).start()
        return task.to_dict()

    def cancel_task(self, task_id: str):
        with self.tasks_lock:
            task = self.tasks.get(task_id)
        if task is None:
            return self.load_task(task_id)
        if task.finished_at is None:
            task.cancel()
        return task.to_dict()

    def running_tasks(self) -> int:
        with self.tasks_lock:
            return sum(1 for task in self.tasks.values() if task.finished_at is None)

    def shutdown_tasks(self) -> None:
        with self.tasks_lock:
            tasks = list(self.tasks.values())
        for task in tasks:
            if task.finished_at is None:
                task.cancel()

    def status(self) -> dict:
        return {
            "instance_id": self.instance_id,
            "tenant_id": self.tenant_id,
            "version": VERSION,
            "pid": os.getpid(),
            "started_at": datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "uptime_seconds": round(time.time() - self.started, 3),
            "config_digest": self.config_digest(),
            "reloads": self.reloads,
            "tasks_running": self.running_tasks(),
            "python": sys.version.split()[0],
            "app": self.app.status() if self.app is not None else None,
        }

    def stats(self) -> dict:
        """Cumulative counters of the instance's processes (the module's docstring)."""
        procs, kids = {}, {}
        for pid in os.listdir("/proc"):
            raw = pid.isdigit() and _read(f"/proc/{pid}/stat")
            if raw:
                procs[pid] = f = raw[raw.rfind(")") + 2 :].split()
                kids.setdefault(f[1], []).append(pid)
        tree = [str(os.getpid())]
        for pid in tree:  # grows as it goes: every descendant
            tree += kids.get(pid, [])
        out = {"cpu_seconds": 0, "rss_bytes": 0, "disk_read_bytes": None, "disk_write_bytes": None}
        for pid in tree:
            f = procs[pid]
            out["cpu_seconds"] += sum(map(int, f[11:15])) / os.sysconf("SC_CLK_TCK")
            out["rss_bytes"] += int(f[21]) * os.sysconf("SC_PAGE_SIZE")
            for line in _read(f"/proc/{pid}/io").splitlines():
                key, _, value = line.partition(": ")
                if "disk_" + key in out:
                    out["disk_" + key] = (out["disk_" + key] or 0) + int(value)
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        out["memory_limit_bytes"] = None if limit == resource.RLIM_INFINITY else limit
        if self.own_cgroup:
            group = "/sys/fs/cgroup" + _read("/proc/self/cgroup").rsplit(":", 1)[-1].strip()
            for line in _read(group + "/cpu.stat").splitlines():
                if line.startswith("usage_usec "):
                    out["cpu_seconds"] = int(line[11:]) / 1e6
            limit = _read(group + "/memory.max").strip()
            if limit.isdigit():
                out["memory_limit_bytes"] = int(limit)
        nets = {line.split(":")[0].strip(): line.split(":")[1].split() for line in _read("/proc/net/dev").splitlines()[2:]}
        outside = [v for name, v in nets.items() if name != "lo"] or list(nets.values())
        starts, now = self.app_log.runs()["starts"], time.time()
        return {
            **out, "sampled_at": now, "started_at": self.started, "uptime_seconds": round(now - self.started, 3),
            "processes": len(tree), "starts": starts, "restarts": max(starts - 1, 0),
            "net_rx_bytes": sum(int(v[0]) for v in outside), "net_tx_bytes": sum(int(v[8]) for v in outside),
        }  # fmt: skip


CHAT_MAX_CHARS = 8000
KEEP_DAYS = 35  # days of usage counters kept (the metering job reads them every few minutes)
USER_HASH_DAYS = 2  # days whose user hashes are kept (older days keep only their count)
USERS_PER_DAY = 5000  # unique end users counted per day at most
CONVERSATIONS_MAX = 200  # the oldest conversation goes when a new one passes this
MESSAGES_MAX = 200  # messages kept per conversation (the newest)
DEFAULT_SKILLS = [
    {"name": "greeting", "keywords": ["hello", "hi", "hey"], "reply": "Hello! I am the agent of {instance}. Ask me for help to see what I can do."},
    {"name": "help", "keywords": ["help", "skills"], "reply": "I answer from my configured skills: {skills}. Anything else I repeat back."},
]


class Refused(Exception):
    """A chat the agent will not take: its status, detail and extra body fields (and headers)."""

    def __init__(self, status: int, detail: str, headers: dict | None = None, **extra) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra


def count_tokens(text: str) -> int:
    """The documented count (docs/agent.md): one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


def valid_cid(cid) -> bool:
    return isinstance(cid, str) and 1 <= len(cid) <= 128 and all(c.isascii() and (c.isalnum() or c in ":_-") for c in cid)


class Runtime:
    """The agent runtime's side of chat: the model policy and skills of the config, conversations
    under `<state-dir>/conversations/` (bounded), and cumulative usage per UTC day in
    `<state-dir>/usage.json` with an `epoch` that changes only when the file starts anew (so the
    control plane adds what grew since its last read and never counts an exchange twice)."""

    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.dir = os.path.join(agent.state_dir, "conversations")
        os.makedirs(self.dir, exist_ok=True)
        self.usage_path = os.path.join(agent.state_dir, "usage.json")
        self.lock = threading.Lock()
        try:
            with open(self.usage_path, "rb") as handle:
                self.usage = json.loads(handle.read())
            assert isinstance(self.usage["days"], dict) and self.usage["epoch"]
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            self.usage = {"epoch": os.urandom(8).hex(), "days": {}}

    def config(self) -> dict:
        try:
            config = json.loads(self.agent.config_bytes() or b"{}")
        except ValueError:
            config = {}
        return config if isinstance(config, dict) else {}

    def chat(self, body: dict) -> dict:
        message, cid, user, model = (body.get(k) for k in ("message", "conversation_id", "user", "model"))
        if not isinstance(message, str) or not 1 <= len(message) <= CHAT_MAX_CHARS:
            raise ValueError(f"message must be a string of 1 to {CHAT_MAX_CHARS} characters")
        message.encode("utf-8")  # a lone surrogate is not text (UnicodeError is a ValueError)
        cid = cid or "c-" + os.urandom(8).hex()
        if not valid_cid(cid):
            raise ValueError("conversation_id must be 1-128 letters, digits, ':', '_' or '-'")
        if user is not None and (not isinstance(user, str) or len(user) > 256):
            raise ValueError("user must be a string of at most 256 characters")
        config = self.config()
        policy = config.get("model_policy") if isinstance(config.get("model_policy"), dict) else {}
        allowed = [m for m in policy.get("allowed_models") or [] if isinstance(m, str)]
        model = model or policy.get("default_model") or (allowed[0] if allowed else "default")
        if not isinstance(model, str) or (allowed and model not in allowed):
            raise Refused(422, f"model {model!r} is not allowed by this instance's model policy; allowed: {', '.join(allowed)}", allowed_models=allowed)
        budget, now = policy.get("max_tokens_per_day"), datetime.now(timezone.utc)
        with self.lock:
            today = self.usage["days"].get(now.strftime("%Y-%m-%d"), {})
            used = today.get("tokens_in", 0) + today.get("tokens_out", 0)
        if isinstance(budget, int) and used >= budget:
            wait = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
            raise Refused(429, f"this instance's daily token budget ({budget}) is used up ({used}); it resets at 00:00 UTC", {"Retry-After": str(wait)}, retry_after=wait)
        uhash = hashlib.sha256(f"{self.agent.instance_id}:{user}".encode("utf-8", "replace")).hexdigest()[:16] if user else None
        reply, skill = self.forward(message, cid, model, uhash) if self.agent.app is not None else self.answer(message, config)
        exchange = {"conversation_id": cid, "model": model, "skill": skill, "reply": reply, "tokens_in": count_tokens(message), "tokens_out": count_tokens(reply), "at": now_iso()}
        self.record(exchange, message, uhash)
        return exchange

    def answer(self, message: str, config: dict) -> tuple:
        """The deterministic responder: the first skill with a keyword among the message's words."""
        skills = [s for s in config.get("skills") or DEFAULT_SKILLS if isinstance(s, dict) and isinstance(s.get("reply"), str)]
        words = set("".join(c if c.isalnum() else " " for c in message.lower()).split())
        for skill in skills:
            if words & {str(k).lower() for k in skill.get("keywords") or []}:
                names = ", ".join(str(s.get("name")) for s in skills)
                return skill["reply"].replace("{instance}", self.agent.instance_id).replace("{skills}", names).replace("{message}", message), str(skill.get("name", "skill"))
        return f"You said: {message}", "echo"

    def forward(self, message: str, cid: str, model: str, uhash) -> tuple:
        """App mode: the program's `POST /chat` answers (docs/agent.md has the contract)."""
        import http.client

        body = json.dumps({"message": message, "conversation_id": cid, "model": model, "user": uhash, "history": (self.conversation(cid) or {}).get("messages", [])[-20:]}).encode()
        upstream = http.client.HTTPConnection("127.0.0.1", self.agent.app.port, timeout=APP_TIMEOUT_SECONDS)
        try:
            upstream.request("POST", "/chat", body, {"Content-Type": "application/json"})
            response = upstream.getresponse()
            answer = json.loads(response.read(MAX_JSON_BODY)) if response.status == 200 else None
        except TimeoutError:
            raise Refused(504, "the instance's program did not answer the chat in time") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise Refused(502, f"the instance's program did not answer the chat ({type(exc).__name__})") from None
        finally:
            upstream.close()
        if not isinstance(answer, dict) or not isinstance(answer.get("reply"), str):
            raise Refused(502, f"the instance's program answered the chat with {response.status}, not 200 and a JSON reply")
        return answer["reply"], str(answer.get("skill") or "app")

    def record(self, exchange: dict, message: str, uhash) -> None:
        """The exchange into its conversation (read again under the lock: two chats of one
        conversation at once both land) and into the day's counters."""
        day, model, cid = exchange["at"][:10], exchange["model"], exchange["conversation_id"]
        with self.lock:
            history = self.conversation(cid) or {"id": cid, "created_at": exchange["at"], "messages": []}
            history["messages"] += [
                {"role": "user", "content": message, "user": uhash, "at": exchange["at"], "tokens": exchange["tokens_in"]},
                {"role": "assistant", "content": exchange["reply"], "model": model, "skill": exchange["skill"], "at": exchange["at"], "tokens": exchange["tokens_out"]},
            ]
            history["messages"], history["updated_at"] = history["messages"][-MESSAGES_MAX:], exchange["at"]
            days = self.usage["days"]
            totals = days.setdefault(day, {"requests": 0, "tokens_in": 0, "tokens_out": 0, "user_count": 0, "users": [], "models": {}})
            per_model = totals["models"].setdefault(model, {"requests": 0, "tokens_in": 0, "tokens_out": 0})
            for counts in (totals, per_model):
                counts["requests"] += 1
                counts["tokens_in"] += exchange["tokens_in"]
                counts["tokens_out"] += exchange["tokens_out"]
            if uhash and uhash not in totals.get("users", ()) and totals["user_count"] < USERS_PER_DAY:
                totals["users"].append(uhash)
                totals["user_count"] += 1
            for old in sorted(days)[:-USER_HASH_DAYS]:
                days[old].pop("users", None)
            for old in sorted(days)[:-KEEP_DAYS]:
                del days[old]
            _atomic_write(self.usage_path, json.dumps(self.usage).encode())
            _atomic_write(os.path.join(self.dir, exchange["conversation_id"] + ".json"), json.dumps(history).encode())
            files = sorted(os.scandir(self.dir), key=lambda e: e.stat().st_mtime)
            for entry in files[: max(len(files) - CONVERSATIONS_MAX, 0)]:
                os.unlink(entry.path)

    def usage_report(self) -> dict:
        with self.lock:
            days = {d: {k: v for k, v in c.items() if k != "users"} for d, c in self.usage["days"].items()}
        return {"instance_id": self.agent.instance_id, "epoch": self.usage["epoch"], "days": days}

    def conversation(self, cid: str):
        if not valid_cid(cid):
            return None
        try:
            with open(os.path.join(self.dir, cid + ".json"), "rb") as handle:
                return json.loads(handle.read())
        except (OSError, ValueError):
            return None

    def conversations(self, query: str) -> dict:
        limit = parse_qs(query).get("limit", ["20"])[-1]
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise ValueError("limit must be a whole number from 1 to 100")
        found = [c for c in (self.conversation(name[:-5]) for name in os.listdir(self.dir) if name.endswith(".json")) if c]
        found.sort(key=lambda c: c.get("updated_at", ""), reverse=True)
        return {"count": len(found), "results": [
            {"id": c["id"], "created_at": c.get("created_at"), "updated_at": c.get("updated_at"), "messages": len(c["messages"]),
             "preview": next((m["content"][:120] for m in c["messages"] if m["role"] == "user"), "")}
            for c in found[: int(limit)]
        ]}  # fmt: skip


def app_log_query(query: str) -> dict:
    """`/app-logs`' parameters, checked (ValueError: 422)."""
    params = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    out = {"after": 0, "since": "", "tail": 100, "stream": "", "q": params.get("q", "")[:200]}
    for name in ("after", "tail"):
        if name in params:
            if not params[name].isdigit():
                raise ValueError(f"{name} must be a whole number")
            out[name] = int(params[name])
    out["tail"] = min(out["tail"], APP_LOG_TAIL_MAX)
    if params.get("stream", "") not in ("", "stdout", "stderr"):
        raise ValueError("stream must be stdout or stderr")
    out["stream"] = params.get("stream", "")
    out["since"] = params.get("since", "")[:40]
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # peer's delayed ACK add ~40 ms to every small response.
    disable_nagle_algorithm = True
    server_version = f"orchestrio-agent/{VERSION}"
    agent: Agent = None  # set by main()

    def log_message(self, fmt, *args):  # quiet; one line per request to stderr is enough
        line = "%s %s\n" % (self.log_date_time_string(), fmt % args)
        sys.stderr.write(line)
        if self.agent.app is None and getattr(self, "app_traffic", False):
            # The agent is the instance's process: the requests it serves as the app are its log.
            self.agent.app_log.write("stderr", line.encode("utf-8", "replace"))

    def setup(self) -> None:
        import socket

        if self.request.family == socket.AF_UNIX:
            self.disable_nagle_algorithm = False  # no Nagle on a unix socket (and no TCP_NODELAY)
        super().setup()

    def address_string(self) -> str:
        # On a unix socket the peer has no address (client_address is '').
        return self.client_address[0] if isinstance(self.client_address, tuple) and self.client_address else "local"

    # --- plumbing --------------------------------------------------------------------------

    def _send(self, status: int, body, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, detail: str) -> None:
        self._send(status, {"detail": detail})

    def _iter_body(self):
        """The request body in chunks, whether sent with Content-Length or chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 65536))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline(3)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def _json_body(self, limit: int = MAX_JSON_BODY):
        data = bytearray()
        for chunk in self._iter_body():
            data += chunk
            if len(data) > limit:
                raise ValueError("body too large")
        if not data:
            return {}
        return json.loads(data.decode("utf-8"))

    def _authorized(self, *, gateway_ok: bool = False) -> bool:
        if self.agent.check_key(self.headers.get(KEY_HEADER)):
            return True
        if gateway_ok and self.agent.check_gateway_key(self.headers.get(GATEWAY_HEADER)):
            return True
        for _ in self._iter_body():  # drain so the connection stays usable
            pass
        self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong agent key")
        return False

    # --- routing ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.app_traffic = False  # set for the requests the agent serves as the instance's app
        url = urlsplit(self.path)
        path = url.path
        method = self.command
        if path == "/health" and method in ("GET", "HEAD") and self.agent.app is None:
            healthy, reason = self.agent.health()
            self._send(200 if healthy else 503, {"status": "ok" if healthy else "unhealthy", "instance_id": self.agent.instance_id, "reason": reason})
            return
        if self.agent.app is not None and path == self.agent.app.health_path and method in ("GET", "HEAD"):
            self._forward()  # the program's health check is open, as /health is in the agent's own mode
            return
        management = path in ("/api/status", "/config", "/secrets", "/agent-key", "/tasks", "/app-logs", "/stats", "/chat", "/usage", "/conversations", "/app") or path.startswith(("/tasks/", "/conversations/"))
        if management and self.agent.app is not None and not self.agent.check_key(self.headers.get(KEY_HEADER)):
            management = False  # in app mode, the program's own route of that name
        if not self._authorized(gateway_ok=not management):
            return
        try:
            if path == "/api/status" and method == "GET":
                self._send(200, self.agent.status())
            elif path == "/stats" and method == "GET":
                self._send(200, self.agent.stats())
            elif path == "/app-logs" and method == "GET":
                self._send(200, self.agent.app_log.read(**app_log_query(url.query)))
            elif path == "/chat" and method == "POST":
                self._chat()
            elif path == "/usage" and method == "GET":
                self._send(200, self.agent.runtime.usage_report())
            elif path == "/conversations" and method == "GET":
                self._send(200, self.agent.runtime.conversations(url.query))
            elif path.startswith("/conversations/") and method == "GET":
                found = self.agent.runtime.conversation(path[len("/conversations/") :])
                self._send(200, found) if found else self._error(404, "no such conversation")
            elif path == "/config" and method == "GET":
                self._send(200, self.agent.config_bytes())
            elif path == "/config" and method in ("POST", "PUT"):
                body = self._json_body()
                if not isinstance(body, dict):
                    raise ValueError("config must be a JSON object")
                digest = self.agent.set_config(body)
                self._send(200, {"digest": digest, "reload": self.agent.run_reload_hook()})
            elif path == "/secrets" and method in ("POST", "PUT"):
                body = self._json_body()
                if not isinstance(body, dict):
                    raise ValueError("secrets must be a JSON object")
                stored = self.agent.set_secrets(body)
                self._send(200, {"stored": stored, "reload": self.agent.run_reload_hook()})
            elif path == "/agent-key" and method == "POST":
                body = self._json_body()
                value = body.get("key_sha256", "") if isinstance(body, dict) else ""
                if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                    raise ValueError("key_sha256 must be 64 lowercase hex characters")
                identity = body.get("identity")
                if identity is not None:  # a batch machine becomes its instance's (docs/fleet.md)
                    if not isinstance(identity, dict) or not all(isinstance(identity.get(k), str) and identity[k] for k in ("instance_id", "tenant_id")):
                        raise ValueError("identity must name instance_id and tenant_id")
                    if self.agent.instance_id not in ("", identity["instance_id"]):
                        raise ValueError(f"this agent is already {self.agent.instance_id}'s")
                    _atomic_write(self.agent.identity_file, json.dumps({k: identity[k] for k in ("instance_id", "tenant_id")}).encode())
                    self.agent.instance_id, self.agent.tenant_id = identity["instance_id"], identity["tenant_id"]
                self.agent.set_key_hash(value)
                self._send(200, {"rotated": True, "instance_id": self.agent.instance_id})
            elif path == "/app" and method == "PUT":
                self._send(200, self.agent.put_app(self._json_body(25 << 20)))  # 4 MiB of text, escaped
            elif path == "/tasks" and method == "POST":
                body = self._json_body()
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                self._send(202, self.agent.start_task(body))
            elif path.startswith("/tasks/") and path.endswith("/cancel") and method == "POST":
                task = self.agent.cancel_task(path[len("/tasks/") : -len("/cancel")])
                self._send(202, task) if task else self._error(404, "no such task")
            elif path.startswith("/tasks/") and method == "GET":
                task = self.agent.load_task(path[len("/tasks/") :])
                self._send(200, task) if task else self._error(404, "no such task")
            elif self.agent.app is not None:
                self._forward()
            elif path == "/_orchestrio/blob" and method == "GET":
                self.app_traffic = True
                self._blob(url.query)
            else:
                self.app_traffic = True
                self._echo(url)
        except ValueError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))

    def _chat(self) -> None:
        """`POST /chat`: JSON, or with `Accept: text/event-stream` the reply as `delta` events
        (a few words each) and a `done` event with the exchange's record."""
        body = self._json_body()
        try:
            exchange = self.agent.runtime.chat(body if isinstance(body, dict) else {})
        except Refused as exc:
            data = json.dumps({"detail": exc.detail, **exc.extra}).encode()
            self.send_response(exc.status)
            for name, value in {**exc.headers, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            return
        if "text/event-stream" not in self.headers.get("Accept", ""):
            self._send(200, exchange)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = exchange["reply"].split(" ")
        events = [("delta", {"text": " ".join(words[i : i + 4]) + (" " if i + 4 < len(words) else "")}) for i in range(0, len(words), 4)]
        for name, data in [*events, ("done", exchange)]:
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _echo(self, url) -> None:
        digest = hashlib.sha256()
        length = 0
        head = bytearray()
        for chunk in self._iter_body():
            digest.update(chunk)
            length += len(chunk)
            if len(head) < OUTPUT_TAIL:
                head += chunk[: OUTPUT_TAIL - len(head)]
        secret = (KEY_HEADER.lower(), GATEWAY_HEADER.lower())
        headers = {name.lower(): value for name, value in self.headers.items() if name.lower() not in secret}
        slug = url.path[len("/webhooks/") :] if url.path.startswith("/webhooks/") else None
        self._send(
            200,
            {
                "echo": True,
                "instance_id": self.agent.instance_id,
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query, keep_blank_values=True),
                "raw_query": url.query,
                "webhook_slug": slug,
                "headers": headers,
                "body_length": length,
                "body_sha256": digest.hexdigest(),
                "body": head.decode("utf-8", errors="replace"),
            },
        )

    def _forward(self) -> None:
        """Pass the request to the instance's program and stream its answer back."""
        import http.client

        app = self.agent.app
        connection_tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        skip = HOP_BY_HOP | connection_tokens | {KEY_HEADER.lower(), GATEWAY_HEADER.lower(), "content-length"}
        length = self.headers.get("Content-Length")
        chunked_in = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        upstream = http.client.HTTPConnection("127.0.0.1", app.port, timeout=APP_TIMEOUT_SECONDS)
        try:
            upstream.connect()
            upstream.sock.setsockopt(6, 1, 1)  # TCP_NODELAY: the body is a write of its own (as disable_nagle_algorithm above)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in skip:
                    upstream.putheader(name, value)
            if chunked_in:
                upstream.putheader("Transfer-Encoding", "chunked")
            elif length:
                upstream.putheader("Content-Length", length)
            upstream.endheaders()
            for chunk in self._iter_body():
                upstream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked_in else chunk)
            if chunked_in:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
        except ConnectionRefusedError:
            upstream.close()
            for _ in self._iter_body():
                pass
            self._error(HTTPStatus.BAD_GATEWAY, f"the instance's program is not listening on its port ({app.port})")
            return
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            upstream.close()
            self.close_connection = True
            self._error(HTTPStatus.GATEWAY_TIMEOUT if isinstance(exc, TimeoutError) else HTTPStatus.BAD_GATEWAY,
                        f"the instance's program did not answer ({type(exc).__name__})")
            return
        try:
            self.send_response(response.status, response.reason)
            out_length = response.getheader("Content-Length")
            chunked_out = out_length is None and self.command != "HEAD" and response.status not in (204, 304) and response.status >= 200
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() not in ("content-length", "server", "date"):
                    self.send_header(name, value)
            if out_length is not None:
                self.send_header("Content-Length", out_length)
            elif chunked_out:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked_out else chunk)
            if chunked_out:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            upstream.close()

    def _blob(self, query: str) -> None:
        size = int(parse_qs(query).get("bytes", ["0"])[0])
        if not 0 <= size <= 1 << 34:
            raise ValueError("bytes out of range")
        block = (b"orchestrio-" * 6554)[:65536]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        remaining = size
        while remaining:
            piece = block[: min(remaining, len(block))]
            self.wfile.write(piece)
            remaining -= len(piece)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class InheritedSocketServer(Server):
    """Serves on a listening socket the launcher bound and passed down (socket activation)."""

    def __init__(self, fd: int, handler) -> None:
        import socket

        listener = socket.socket(fileno=fd)
        self.address_family = listener.family
        super().__init__(listener.getsockname() or ("", 0), handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Orchestrio instance agent")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port and write it to --port-file")
    parser.add_argument("--listen-fd", type=int, help="serve on this inherited listening socket instead of --host/--port")
    parser.add_argument("--port-file")
    parser.add_argument("--pid-file")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--secrets-dir", help="where secrets are kept (a tmpfs); default: the state dir")
    parser.add_argument("--root", default="/", help="where script paths are resolved (/ on a real machine)")
    parser.add_argument("--instance-id", default="")
    parser.add_argument("--tenant-id", default="")
    parser.add_argument("--instance-pk", default="", help="the control plane's tag for this process")
    parser.add_argument("--app-command", help="app mode: the JSON argv of the program to supervise")
    parser.add_argument("--app-port", type=int, default=8080, help="app mode: the program's PORT")
    parser.add_argument("--home", default="/", help="HOME (and working directory) of tasks and of the program in app mode")
    parser.add_argument("--health-path", default="/health", help="app mode: the program's health path (open, without a key)")
    parser.add_argument("--own-cgroup", action="store_true", help="the agent's cgroup is the instance's own (systemd): CPU and memory limit from it")
    parser.add_argument("--app-log-bytes", type=int, default=APP_LOG_BYTES, help="the app logs' ring buffer on disk, in bytes")
    args = parser.parse_args(argv)

    agent = Agent(args)
    Handler.agent = agent
    server = InheritedSocketServer(args.listen_fd, Handler) if args.listen_fd is not None else Server((args.host, args.port), Handler)
    where = "the inherited socket" if args.listen_fd is not None else f"{args.host}:{server.server_address[1]}"
    if args.pid_file:
        _atomic_write(args.pid_file, str(os.getpid()).encode())
    if args.port_file and args.listen_fd is None:
        _atomic_write(args.port_file, str(server.server_address[1]).encode())
    exit_code = [0]

    def _shutdown(code: int = 0) -> None:
        exit_code[0] = code
        agent.shutdown_tasks()
        if agent.app is not None:
            agent.app.stop()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, lambda signum, frame: _shutdown())
    signal.signal(signal.SIGINT, lambda signum, frame: _shutdown())
    agent.exit = _shutdown
    if args.app_command:
        app_argv = json.loads(args.app_command)
        if not isinstance(app_argv, list) or not app_argv or not all(isinstance(part, str) for part in app_argv):
            parser.error("--app-command must be a JSON list of strings")
        try:
            agent.run_app(app_argv, args.home, args.health_path)
        except OSError as exc:
            sys.stderr.write(f"orchestrio-agent: cannot start {app_argv[0]}: {exc.strerror}\n")
            return 127 if isinstance(exc, FileNotFoundError) else 126
    elif os.path.exists(agent.app_file):  # PUT /app's, before this agent (re)started
        try:
            with open(agent.app_file, encoding="utf-8") as fh:
                agent.run_app(json.load(fh)["command"], os.path.join(agent.state_dir, "app"), pushed=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            sys.stderr.write(f"orchestrio-agent: cannot start the app of {agent.app_file}: {exc}\n")
    if agent.app is None:
        agent.app_log.record_run(started=True)
    sys.stderr.write(f"orchestrio-agent {VERSION} for {agent.instance_id} listening on {where}\n")
    sys.stderr.flush()
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return exit_code[0]


if __name__ == "__main__":
    sys.exit(main())
