"""The local provider: every instance is a real, sandboxed process tree on this host.

Each instance has a directory `<LOCAL_PROVIDER_DIR>/<instance_id>-<pk>/`:

    meta.json, process.json   the control plane's records (which instance; which processes)
    agent.sock                the listening socket the control plane binds and the agent serves
    console.log               the sandbox's stdout and stderr
    agent.py, etc/            the agent's code and the instance's passwd/group/hosts (read-only)
    state/  home/  root/opt/  the instance's own writable files (owned by its uid, mode 0700)

The directory itself belongs to the control plane (root, not writable by the instance); only the
three subdirectories are the instance's, bound into its sandbox (instances/providers/sandbox.py).
After it is created, the control plane never opens, follows or connects to a path the instance
can write: it launches with fresh arguments, talks to the agent over the socket it bound itself,
and passes the agent key's hash in the environment. It is also the provider's record: a worker or
web process that restarts finds every instance's processes again from `process.json` (pids
checked against their start times, so a recycled pid is never taken for ours).

stop: SIGTERM to the agent (which stops the instance's program and tasks), SIGKILL to the whole
tree after a grace period. suspend/resume: SIGSTOP/SIGCONT to every process of the tree. resize:
records the new size and restarts (a process has no size to change).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from django.conf import settings

from ..agent_client import AgentClient, AgentError, AgentTimeout, AgentUnreachable, key_sha256
from .. import hooks
from ..choices import ErrorCode
from . import sandbox
from .base import Machine, MachineSpec, MachineState, Provider, ProviderError, TaskRequest, TaskResult

logger = logging.getLogger(__name__)

AGENT_PATH = Path(__file__).resolve().parent.parent / "agent.py"
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "agent_scripts"
HOOKS_DIR = SCRIPTS_DIR / "hooks"
START_TIMEOUT_SECONDS = 15
SOCKET_NAME = "agent.sock"
OWN_DIRS = ("state", "home", "root")  # the instance's; everything else in its directory is ours


def live_process(pid: int | None, start_time: float | None) -> psutil.Process | None:
    """The process with this pid if it is the one we started (same start time), alive."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if start_time is not None and abs(proc.create_time() - start_time) > 0.01:
            return None
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc


def process_record(directory: Path) -> dict:
    """What a launcher wrote of the processes it started in `directory` (`process.json`: pids and
    start times), {} when there is none: local instances, add-on servers and function runtimes."""
    try:
        record = json.loads((directory / "process.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _tree(root: psutil.Process) -> list[psutil.Process]:
    """The process and its descendants, parents first (the sandbox reparents orphans to its own
    pid 1, which is a descendant: nothing escapes the tree)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def process_state(pid: int | None, start_time: float | None = None) -> str | None:
    """'running', 'suspended', or None when the process is gone (or the pid was recycled)."""
    proc = live_process(pid, start_time)
    if proc is None:
        return None
    processes = _tree(proc)
    try:
        stopped = [p.status() == psutil.STATUS_STOPPED for p in processes]
    except psutil.NoSuchProcess:
        return process_state(pid, start_time)
    return "suspended" if stopped and all(stopped) else "running"


def _reap(proc: subprocess.Popen) -> None:
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


class LocalProvider(Provider):
    name = "local"

    def __init__(self, base_dir: Path | None = None) -> None:
        self.base_dir = Path(base_dir or settings.LOCAL_PROVIDER_DIR)

    # --- files -----------------------------------------------------------------------------

    def instance_dir(self, spec: MachineSpec) -> Path:
        return self.base_dir / f"{spec.instance_id}-{spec.instance_pk}"

    def _root_process(self, directory: Path) -> psutil.Process | None:
        """The top of the instance's process tree: the sandbox (bwrap) we started, or, should it
        have been killed on its own, the sandbox's init, which goes on holding every process of
        the instance (they are its descendants in their pid namespace)."""
        record = process_record(directory)
        return live_process(record.get("pid"), record.get("start_time")) or live_process(record.get("init_pid"), record.get("init_start"))

    def _machine(self, spec: MachineSpec, directory: Path) -> Machine:
        if not directory.exists():
            return Machine(provider_instance_id="", state=MachineState.MISSING)
        record = process_record(directory)
        root = self._root_process(directory)
        state = process_state(root.pid, root.create_time()) if root is not None else None
        machine_state = {"running": MachineState.RUNNING, "suspended": MachineState.SUSPENDED, None: MachineState.STOPPED}[state]
        return Machine(
            provider_instance_id=f"local-{spec.instance_pk}",
            state=machine_state,
            socket_path=str(directory / SOCKET_NAME) if state else None,
            instance_type=spec.instance_type,
            tags=spec.tag_set,
            provider_data={
                "pid": root.pid if state else None, "dir": str(directory),
                "uid": record.get("uid"), "sandbox": record.get("sandbox", "off"),
            },  # fmt: skip
        )

    def _prepare(self, spec: MachineSpec, directory: Path, uid: int | None) -> None:
        """The instance's directory: made once, fresh, before anything of the instance runs.
        The control plane's own files in it are rewritten on every launch (the directory is not
        the instance's to write); the instance's subdirectories are only ever created here."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o711)  # traversable (the sandbox is started as the instance's uid), not listable
        fresh = not directory.exists()
        directory.mkdir(mode=0o711, exist_ok=True)
        if fresh:
            state, home, root = (directory / name for name in OWN_DIRS)
            state.mkdir(mode=0o700)
            home.mkdir(mode=0o700)
            scripts = root / "opt" / "orchestrio" / "scripts"
            hooks = root / "opt" / "orchestrio" / "hooks"
            for path in (scripts, hooks, root / "opt" / "openclaw" / "scripts"):
                path.mkdir(parents=True)
            for script in SCRIPTS_DIR.glob("*.sh"):
                shutil.copy2(script, scripts / script.name)
                (scripts / script.name).chmod(0o755)
            shutil.copy2(HOOKS_DIR / "reload", hooks / "reload")
            (hooks / "reload").chmod(0o755)
            (state / "config.json").write_text(json.dumps(spec.config, sort_keys=True, separators=(",", ":")))
            if uid is not None:
                for top in (state, home, root):
                    for path in (top, *top.rglob("*")):
                        os.chown(path, uid, uid, follow_symlinks=False)
        # Ours, rewritten each time: the directory is root's, the instance cannot have replaced them.
        shutil.copy2(AGENT_PATH, directory / "agent.py")
        os.chmod(directory / "agent.py", 0o644)
        etc = directory / "etc"
        etc.mkdir(mode=0o755, exist_ok=True)
        user = uid if uid is not None else os.getuid()
        (etc / "passwd").write_text(f"root:x:0:0:root:/root:/usr/sbin/nologin\ninstance:x:{user}:{user}:{spec.instance_id}:{sandbox.HOME}:/bin/sh\n")
        (etc / "group").write_text(f"root:x:0:\ninstance:x:{user}:\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost {spec.instance_id}\n::1 localhost\n")
        (directory / "meta.json").write_text(
            json.dumps({"instance_pk": spec.instance_pk, "instance_id": spec.instance_id, "tenant_id": spec.tenant_id})
        )

    def _listen(self, directory: Path) -> socket.socket:
        """A fresh listening socket at `<dir>/agent.sock` (the directory is ours: no one else can
        put anything at that path)."""
        path = directory / SOCKET_NAME
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(128)
        return listener

    def _argv(self, spec: MachineSpec, directory: Path, listen_fd: int, support: sandbox.Support, uid: int | None) -> tuple[list[str], str | None]:
        """The agent's command line (wrapped in the sandbox when there is one) and the secrets dir
        it uses outside a sandbox."""
        app = (
            ["--app-command", json.dumps(list(spec.command)), "--app-port", str(sandbox.APP_PORT), "--health-path", spec.health_path]
            if spec.command else []
        )  # fmt: skip
        common = [
            "--listen-fd", str(listen_fd), "--instance-id", spec.instance_id, "--tenant-id", spec.tenant_id, "--instance-pk", str(spec.instance_pk),
            "--app-log-bytes", str(settings.APP_LOG_MAX_BYTES),
        ]  # fmt: skip
        if support.enabled:
            agent = [
                "{python}", "-I", sandbox.AGENT, "--state-dir", sandbox.STATE, "--secrets-dir", sandbox.SECRETS,
                "--root", "/", "--home", sandbox.HOME, *common, *app,
            ]  # fmt: skip
            binds = [
                (str(directory / "agent.py"), sandbox.AGENT, False),
                (str(directory / "etc" / "passwd"), "/etc/passwd", False),
                (str(directory / "etc" / "group"), "/etc/group", False),
                (str(directory / "etc" / "hosts"), "/etc/hosts", False),
                (str(directory / "state"), sandbox.STATE, True),
                (str(directory / "home"), sandbox.HOME, True),
                (str(directory / "root" / "opt"), sandbox.OPT, True),
                # What the apps above give the instance (add-ons: their unix sockets, read-only).
                *hooks.sandbox_binds(instance_id=spec.instance_id, instance_pk=spec.instance_pk),
            ]
            return sandbox.wrap(uid=uid, hostname=spec.instance_id, binds=binds, argv=agent, mode=support.mode), None
        # No sandbox: only the bundled agent, confined to its own directory (tasks run only
        # scripts under root/); secrets in memory-backed /dev/shm when the host has it.
        shm = Path("/dev/shm")
        secrets_dir = str(shm / f"orchestrio-{spec.instance_id}-{spec.instance_pk}") if shm.is_dir() else str(directory / "state")
        python = sandbox.interpreter()[0] if uid is not None else sys.executable
        return [
            python, "-I", str(directory / "agent.py"), "--state-dir", str(directory / "state"), "--secrets-dir", secrets_dir,
            "--root", str(directory / "root"), "--home", str(directory / "home"), *common,
        ], secrets_dir  # fmt: skip

    def _launch(self, spec: MachineSpec, directory: Path) -> Machine:
        existing = self._machine(spec, directory)
        if existing.state == MachineState.RUNNING:
            return existing  # idempotent: an earlier attempt started it
        if existing.state == MachineState.SUSPENDED:
            return self.resume(spec)
        support = sandbox.support()
        if spec.command and not support.enabled:
            raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, sandbox.refuse_command_reason())
        uid = sandbox.uid_for(spec.instance_pk) if os.geteuid() == 0 else None
        self._prepare(spec, directory, uid)
        listener = self._listen(directory)
        argv, secrets_dir = self._argv(spec, directory, listener.fileno(), support, uid)
        if secrets_dir and uid is not None:
            Path(secrets_dir).mkdir(mode=0o700, exist_ok=True)
            os.chown(secrets_dir, uid, uid, follow_symlinks=False)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
            "ORCHESTRIO_INSTANCE_ID": spec.instance_id, "ORCHESTRIO_AGENT_KEY_SHA256": key_sha256(spec.agent_key),
        }  # fmt: skip
        demote = None
        if uid is not None and not support.enabled:
            def demote() -> None:  # no sandbox, but still not root
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
        try:
            with open(directory / "console.log", "ab") as log:
                os.chmod(directory / "console.log", 0o600)
                try:
                    proc = subprocess.Popen(
                        argv, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                        close_fds=True, pass_fds=(listener.fileno(),), preexec_fn=demote,
                    )  # fmt: skip
                except OSError as exc:
                    raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"cannot start {argv[0]}: {exc.strerror}") from exc
        finally:
            listener.close()  # the agent holds it now
        _reap(proc)
        started = live_process(proc.pid, None)
        init = sandbox_init(started) if support.enabled and started is not None else None
        record = {
            "pid": proc.pid, "start_time": started.create_time() if started else None,
            "init_pid": init.pid if init else None, "init_start": init.create_time() if init else None,
            "uid": uid, "sandbox": support.mode,
        }  # fmt: skip
        (directory / "process.json").write_text(json.dumps(record))

        client = AgentClient.for_socket(str(directory / SOCKET_NAME), spec.agent_key, timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ProviderError(
                    ErrorCode.PROVIDER_ERROR, f"the instance process exited at start (code {proc.returncode}): {self._log_tail(directory)}"
                )
            try:
                status = client.status()
            except (AgentUnreachable, AgentTimeout, AgentError):
                time.sleep(0.05)
                continue
            app = status.get("app")
            if app is None or app.get("listening"):
                return self._machine(spec, directory)
            time.sleep(0.05)
        self._kill_tree(directory)
        raise ProviderError(ErrorCode.TIMEOUT, f"the instance process did not listen within {START_TIMEOUT_SECONDS}s: {self._log_tail(directory)}")

    @staticmethod
    def _log_tail(directory: Path, limit: int = 500) -> str:
        """What the instance printed last: its program's output (the agent's app log), else the
        sandbox's console, without the agent's own lines."""
        try:
            entries = [json.loads(raw) for raw in (directory / "state" / "app-logs" / "app.log").read_text(errors="replace").splitlines()[-20:]]
            program = [entry["line"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("line"), str)]
        except (OSError, ValueError):
            program = []
        if program:
            return "\n".join(program)[-limit:].strip()
        try:
            text = (directory / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        lines = [line for line in text.splitlines() if not line.startswith("orchestrio-agent")]
        return "\n".join(lines)[-limit:].strip() or "(no output)"

    def _kill_tree(self, directory: Path, grace: float | None = None) -> None:
        """SIGTERM to the agent (it stops the program and tasks), then SIGKILL to what is left."""
        grace = settings.LOCAL_STOP_GRACE_SECONDS if grace is None else grace
        root = self._root_process(directory)
        if root is None:
            return
        processes = _tree(root)
        _signal_all(processes, signal.SIGCONT)  # a suspended process cannot handle SIGTERM
        agent = _agent_process(processes)
        if agent is not None:
            _signal_all([agent], signal.SIGTERM)
        _, alive = psutil.wait_procs([root], timeout=grace)
        remaining = [p for p in _tree(root) if p.is_running()] if alive else [p for p in processes if _alive(p)]
        _signal_all(remaining, signal.SIGKILL)
        psutil.wait_procs(remaining, timeout=5)

    def _stop_process(self, spec: MachineSpec, directory: Path) -> None:
        self._kill_tree(directory)
        (directory / SOCKET_NAME).unlink(missing_ok=True)

    # --- lifecycle -------------------------------------------------------------------------

    def create(self, spec: MachineSpec) -> Machine:
        return self._launch(spec, self.instance_dir(spec))

    def start(self, spec: MachineSpec) -> Machine:
        return self._launch(spec, self.instance_dir(spec))

    def stop(self, spec: MachineSpec) -> Machine:
        directory = self.instance_dir(spec)
        if directory.exists():
            self._stop_process(spec, directory)
        return self._machine(spec, directory)

    def suspend(self, spec: MachineSpec) -> Machine:
        directory = self.instance_dir(spec)
        root = self._root_process(directory)
        if root is None:
            raise ProviderError(ErrorCode.MACHINE_VANISHED, "the instance process is not running; it cannot be suspended")
        _freeze(root)
        machine = self._machine(spec, directory)
        machine.provider_data["hibernated"] = False
        return machine

    def resume(self, spec: MachineSpec) -> Machine:
        directory = self.instance_dir(spec)
        root = self._root_process(directory)
        if root is None:
            raise ProviderError(ErrorCode.MACHINE_VANISHED, "the suspended instance process is gone; start it again")
        _signal_all(_tree(root), signal.SIGCONT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and process_state(root.pid, root.create_time()) != "running":
            time.sleep(0.02)
        return self._machine(spec, directory)

    def resize(self, spec: MachineSpec, *, instance_type: str, restart: bool) -> Machine:
        directory = self.instance_dir(spec)
        self._stop_process(spec, directory)
        resized = MachineSpec(**{**spec.__dict__, "instance_type": instance_type})
        if restart:
            return self._launch(resized, directory)
        return self._machine(resized, directory)

    def destroy(self, spec: MachineSpec) -> None:
        directory = self.instance_dir(spec)
        if directory.exists():
            self._stop_process(spec, directory)
            _remove(directory)

    def describe(self, spec: MachineSpec) -> Machine:
        return self._machine(spec, self.instance_dir(spec))

    def list_machines(self, region: str) -> list[Machine]:
        machines = []
        if not self.base_dir.exists():
            return machines
        for meta_file in sorted(self.base_dir.glob("*/meta.json")):
            try:
                meta = json.loads(meta_file.read_text())
            except (ValueError, OSError):
                continue
            spec = _spec_from_meta(meta)
            machines.append(self._machine(spec, meta_file.parent))
        return machines

    def destroy_orphan(self, machine: Machine, region: str) -> None:
        directory = Path(machine.provider_data["dir"])
        if not directory.is_relative_to(self.base_dir):
            raise ValueError(f"{directory} is not under {self.base_dir}")
        self._kill_tree(directory)
        _remove(directory)

    # --- tasks (run by the agent) ----------------------------------------------------------

    def _agent(self, spec: MachineSpec) -> AgentClient:
        machine = self.describe(spec)
        if machine.state != MachineState.RUNNING or not machine.socket_path:
            raise ProviderError(ErrorCode.MACHINE_VANISHED, f"the instance is not running (process {machine.state})")
        return AgentClient.for_socket(machine.socket_path, spec.agent_key)

    def run_task(self, spec: MachineSpec, task: TaskRequest) -> str:
        try:
            self._agent(spec).start_task(
                task_id=task.task_id, script_path=task.script_path, args=task.args, timeout_seconds=task.timeout_seconds
            )
        except AgentError as exc:
            raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"the agent refused the task: {exc.detail}") from exc
        except (AgentUnreachable, AgentTimeout) as exc:
            raise ProviderError(ErrorCode.PROVIDER_ERROR, str(exc), retryable=True) from exc
        return task.task_id

    def find_task(self, spec: MachineSpec, task: TaskRequest) -> str | None:
        try:
            self._agent(spec).get_task(task.task_id)
        except AgentError as exc:
            if exc.status_code == 404:
                return None
            raise ProviderError(ErrorCode.PROVIDER_ERROR, str(exc), retryable=True) from exc
        except (AgentUnreachable, AgentTimeout) as exc:
            raise ProviderError(ErrorCode.PROVIDER_ERROR, str(exc), retryable=True) from exc
        return task.task_id

    def task_status(self, spec: MachineSpec, task: TaskRequest, command_id: str) -> TaskResult:
        try:
            body = self._agent(spec).get_task(command_id)
        except AgentError as exc:
            if exc.status_code == 404:
                return TaskResult(status="failed", command_id=command_id, stderr="the agent has no record of this task (it restarted)")
            raise ProviderError(ErrorCode.PROVIDER_ERROR, str(exc), retryable=True) from exc
        except (AgentUnreachable, AgentTimeout) as exc:
            raise ProviderError(ErrorCode.PROVIDER_ERROR, str(exc), retryable=True) from exc
        return TaskResult(
            status=body["status"], command_id=command_id, exit_code=body.get("exit_code"),
            stdout=body.get("stdout", ""), stderr=body.get("stderr", ""),
        )

    def cancel_task(self, spec: MachineSpec, task: TaskRequest, command_id: str) -> None:
        try:
            self._agent(spec).cancel_task(command_id)
        except (AgentError, AgentUnreachable, AgentTimeout) as exc:
            raise ProviderError(ErrorCode.PROVIDER_ERROR, str(exc), retryable=True) from exc


def sandbox_init(outer: psutil.Process, timeout: float = 5.0) -> psutil.Process | None:
    """The sandbox's init (pid 1 of its namespace): bwrap's first child, forked at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = outer.children()
        except psutil.NoSuchProcess:
            return None
        if children:
            return children[0]
        time.sleep(0.005)
    return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_all(processes: list[psutil.Process], sig: int) -> None:
    for proc in processes:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue


def is_agent_command(argv: list[str]) -> bool:
    """`python -I …/agent.py …`: the agent itself (bwrap's own argv names agent.py too)."""
    return len(argv) > 2 and argv[1] == "-I" and argv[2].endswith("agent.py")


def _agent_process(processes: list[psutil.Process]) -> psutil.Process | None:
    """The agent among the instance's processes."""
    for proc in processes:
        try:
            if is_agent_command(proc.cmdline()):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def _freeze(root: psutil.Process) -> None:
    """SIGSTOP every process of the tree, parents first, until no unstopped one is left (a child
    forked between two looks is stopped on the next)."""
    for _ in range(20):
        pending = [p for p in _tree(root) if _status(p) not in (psutil.STATUS_STOPPED, None)]
        if not pending:
            return
        _signal_all(pending, signal.SIGSTOP)
        time.sleep(0.01)


def _status(proc: psutil.Process) -> str | None:
    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return None


def _remove(directory: Path) -> None:
    """Delete an instance's directory. shutil.rmtree never follows the symlinks the instance may
    have left in its own dirs (it removes the links)."""
    shutil.rmtree(directory, ignore_errors=True)


def _spec_from_meta(meta: dict) -> MachineSpec:
    return MachineSpec(
        instance_pk=int(meta["instance_pk"]), instance_id=meta["instance_id"], tenant_id=meta["tenant_id"],
        operation_id=None, region="", instance_type="", agent_key="", agent_port=0, health_path="/health",
    )
