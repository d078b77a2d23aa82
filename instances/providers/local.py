"""The local provider: every instance is a real process on this host, the bundled instance agent
(or the blueprint's `command`) on a free loopback port.

Each instance has a directory `<LOCAL_PROVIDER_DIR>/<instance_id>-<pk>/` holding the agent's
state (`state/`), the filesystem its task scripts live in (`root/`), its log, and the pid and
port files the agent writes itself. The directory is the provider's record: a worker or web
process that restarts finds every process again from it (the pid is checked against the OS,
including the process start time so a recycled pid is not mistaken for ours).

stop: SIGTERM to the process group, SIGKILL after a grace period. suspend/resume: SIGSTOP/SIGCONT.
resize: records the new size and restarts (a process has no size to change).
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

from django.conf import settings

from ..agent_client import AgentClient, AgentError, AgentTimeout, AgentUnreachable, key_sha256
from ..choices import ErrorCode
from .base import Machine, MachineSpec, MachineState, Provider, ProviderError, TaskRequest, TaskResult

logger = logging.getLogger(__name__)

AGENT_PATH = Path(__file__).resolve().parent.parent / "agent.py"
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "agent_scripts"
HOOKS_DIR = SCRIPTS_DIR / "hooks"
START_TIMEOUT_SECONDS = 15


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) from /proc, or None when the process does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], rest[19]


HAVE_PROC = Path("/proc/self/stat").exists()


def process_state(pid: int | None, start_time: str | None) -> str | None:
    """'running', 'suspended', or None when the process is gone (or the pid was recycled)."""
    if not pid:
        return None
    if HAVE_PROC:
        stat = _proc_stat(pid)
        if stat is None:
            return None
        state, started = stat
        if start_time and started != start_time:
            return None
        if state in ("Z", "X", "x"):
            return None
        return "suspended" if state in ("T", "t") else "running"
    try:  # no /proc (macOS): existence only
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "running"


def _reap(proc: subprocess.Popen) -> None:
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


class LocalProvider(Provider):
    name = "local"

    def __init__(self, base_dir: Path | None = None) -> None:
        self.base_dir = Path(base_dir or settings.LOCAL_PROVIDER_DIR)

    # --- files -----------------------------------------------------------------------------

    def instance_dir(self, spec: MachineSpec) -> Path:
        return self.base_dir / f"{spec.instance_id}-{spec.instance_pk}"

    @staticmethod
    def _read_int(path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _pid(self, directory: Path) -> tuple[int | None, str | None]:
        pid = self._read_int(directory / "agent.pid")
        try:
            meta = json.loads((directory / "process.json").read_text())
        except (FileNotFoundError, ValueError):
            meta = {}
        start_time = meta.get("start_time") if meta.get("pid") == pid else None
        return pid, start_time

    def _machine(self, spec: MachineSpec, directory: Path) -> Machine:
        if not directory.exists():
            return Machine(provider_instance_id="", state=MachineState.MISSING)
        pid, start_time = self._pid(directory)
        state = process_state(pid, start_time)
        port = self._read_int(directory / "agent.port")
        machine_state = {
            "running": MachineState.RUNNING,
            "suspended": MachineState.SUSPENDED,
            None: MachineState.STOPPED,
        }[state]
        return Machine(
            provider_instance_id=f"local-{spec.instance_pk}",
            state=machine_state,
            ip_address="127.0.0.1" if state else None,
            port=port if state else None,
            instance_type=spec.instance_type,
            tags=spec.tag_set,
            provider_data={"pid": pid if state else None, "dir": str(directory)},
        )

    def _prepare(self, spec: MachineSpec, directory: Path) -> None:
        (directory / "state").mkdir(parents=True, exist_ok=True)
        scripts = directory / "root" / "opt" / "orchestrio" / "scripts"
        scripts.mkdir(parents=True, exist_ok=True)
        (directory / "root" / "opt" / "openclaw" / "scripts").mkdir(parents=True, exist_ok=True)
        hooks = directory / "root" / "opt" / "orchestrio" / "hooks"
        hooks.mkdir(parents=True, exist_ok=True)
        if not (hooks / "reload").exists():
            shutil.copy2(HOOKS_DIR / "reload", hooks / "reload")
            (hooks / "reload").chmod(0o755)
        for script in SCRIPTS_DIR.glob("*.sh"):
            target = scripts / script.name
            if not target.exists():
                shutil.copy2(script, target)
                target.chmod(0o755)
        # The instance runs its own copy of the agent, as a machine would (installed, not imported).
        shutil.copy2(AGENT_PATH, directory / "agent.py")
        (directory / "meta.json").write_text(
            json.dumps({"instance_pk": spec.instance_pk, "instance_id": spec.instance_id, "tenant_id": spec.tenant_id})
        )
        # The key the control plane holds now: the agent keeps only its hash.
        (directory / "state" / "agent-key.sha256").write_text(key_sha256(spec.agent_key))
        if not (directory / "state" / "config.json").exists():
            (directory / "state" / "config.json").write_text(json.dumps(spec.config, sort_keys=True, separators=(",", ":")))

    def _launch(self, spec: MachineSpec, directory: Path) -> Machine:
        existing = self._machine(spec, directory)
        if existing.state == MachineState.RUNNING:
            return existing  # idempotent: an earlier attempt started it
        if existing.state == MachineState.SUSPENDED:
            return self.resume(spec)
        self._prepare(spec, directory)
        for name in ("agent.port", "agent.pid"):
            (directory / name).unlink(missing_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "ORCHESTRIO_INSTANCE_ID": spec.instance_id,
        }
        if spec.command:
            port = _free_port()
            argv = list(spec.command)
            env["PORT"] = str(port)
            (directory / "agent.port").write_text(str(port))
        else:
            argv = [
                sys.executable, "-I", str(directory / "agent.py"),
                "--state-dir", str(directory / "state"),
                "--root", str(directory / "root"),
                "--port-file", str(directory / "agent.port"),
                "--pid-file", str(directory / "agent.pid"),
                "--instance-id", spec.instance_id,
                "--tenant-id", spec.tenant_id,
                "--instance-pk", str(spec.instance_pk),
            ]  # fmt: skip
        with open(directory / "agent.log", "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True, close_fds=True,
                )
            except OSError as exc:
                raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, f"cannot start {argv[0]}: {exc.strerror}") from exc
        _reap(proc)
        if spec.command:
            (directory / "agent.pid").write_text(str(proc.pid))
        start_time = _proc_stat(proc.pid)[1] if HAVE_PROC and _proc_stat(proc.pid) else None
        (directory / "process.json").write_text(json.dumps({"pid": proc.pid, "start_time": start_time}))

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ProviderError(
                    ErrorCode.PROVIDER_ERROR,
                    f"the instance process exited at start (code {proc.returncode}): {self._log_tail(directory)}",
                )
            port = self._read_int(directory / "agent.port")
            if port and self._read_int(directory / "agent.pid") == proc.pid and _port_open(port):
                return self._machine(spec, directory)
            time.sleep(0.05)
        self._kill(proc.pid)
        raise ProviderError(ErrorCode.TIMEOUT, f"the instance process did not listen within {START_TIMEOUT_SECONDS}s")

    @staticmethod
    def _log_tail(directory: Path, limit: int = 500) -> str:
        try:
            return (directory / "agent.log").read_text(errors="replace")[-limit:].strip() or "(no output)"
        except FileNotFoundError:
            return "(no log)"

    @staticmethod
    def _kill(pid: int, grace: float | None = None) -> None:
        grace = settings.LOCAL_STOP_GRACE_SECONDS if grace is None else grace
        try:
            os.killpg(pid, signal.SIGCONT)  # a suspended process cannot handle SIGTERM
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process_state(pid, None) is None:
                return
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and process_state(pid, None) is not None:
            time.sleep(0.05)

    def _stop_process(self, spec: MachineSpec, directory: Path) -> None:
        pid, start_time = self._pid(directory)
        if process_state(pid, start_time) is not None:
            self._kill(pid)
        (directory / "agent.port").unlink(missing_ok=True)

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
        pid, start_time = self._pid(directory)
        if process_state(pid, start_time) is None:
            raise ProviderError(ErrorCode.MACHINE_VANISHED, "the instance process is not running; it cannot be suspended")
        os.killpg(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while HAVE_PROC and time.monotonic() < deadline and process_state(pid, start_time) != "suspended":
            time.sleep(0.02)
        machine = self._machine(spec, directory)
        machine.provider_data["hibernated"] = False
        return machine

    def resume(self, spec: MachineSpec) -> Machine:
        directory = self.instance_dir(spec)
        pid, start_time = self._pid(directory)
        if process_state(pid, start_time) is None:
            raise ProviderError(ErrorCode.MACHINE_VANISHED, "the suspended instance process is gone; start it again")
        os.killpg(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while HAVE_PROC and time.monotonic() < deadline and process_state(pid, start_time) != "running":
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
            shutil.rmtree(directory, ignore_errors=True)

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
        pid, start_time = self._pid(directory)
        if process_state(pid, start_time) is not None:
            self._kill(pid)
        shutil.rmtree(directory, ignore_errors=True)

    # --- tasks (run by the agent) ----------------------------------------------------------

    def _agent(self, spec: MachineSpec) -> AgentClient:
        machine = self.describe(spec)
        if machine.state != MachineState.RUNNING or not machine.port:
            raise ProviderError(ErrorCode.MACHINE_VANISHED, f"the instance is not running (process {machine.state})")
        if spec.command:
            raise ProviderError(ErrorCode.PROVIDER_INVALID_REQUEST, "this instance runs a custom command without the agent: tasks are not available")
        return AgentClient(machine.ip_address, machine.port, spec.agent_key)

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


def _spec_from_meta(meta: dict) -> MachineSpec:
    return MachineSpec(
        instance_pk=int(meta["instance_pk"]), instance_id=meta["instance_id"], tenant_id=meta["tenant_id"],
        operation_id=None, region="", instance_type="", agent_key="", agent_port=0, health_path="/health",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True
