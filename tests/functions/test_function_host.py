"""The function host (functions/runners/host.py) as the agent runs it on a function instance: a real
process on a free port, its runners real sandboxed processes; then the agent's PUT /app putting it
there and running it again after a restart (instances/agent.py)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import NODE_HANDLER, PYTHON_HANDLER

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUNNERS = REPO / "functions" / "runners"
AGENT = REPO / "instances" / "agent.py"
HOST_FILES = ("host.py", "python_runner.py", "node_runner.mjs")
UID_BASE = int(os.environ.get("FUNCTIONS_LOCAL_UID_BASE") or 4_600_000)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
KEY = "test-app-key-0123456789"
HAS_NODE = shutil.which("node", path=SYSTEM_PATH) is not None
needs_node = pytest.mark.skipif(not HAS_NODE, reason="node is not installed")

ENVELOPE = {"method": "POST", "path": "/hello", "query": {"a": ["1"]}, "headers": {"x-test": "yes"}, "body": "hi", "body_encoding": "text"}
ENV_HANDLER = "import os\n\ndef handler(request):\n    return dict(os.environ)\n"
SLEEPY_HANDLER = "import time\n\ndef handler(request):\n    time.sleep(float(request.get('body') or 3))\n    return 'woke'\n"
BROKEN_HANDLER = "print('about to break', flush=True)\nraise RuntimeError('this handler cannot be imported')\n"
DYING_HANDLER = "import os\n\ndef handler(request):\n    os._exit(3)\n"
ID_HANDLER = "import os\n\ndef handler(request):\n    return {'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups()}\n"
NODE_ID_HANDLER = "export default async () => ({ uid: process.getuid(), gid: process.getgid() });\n"


def digest_of(directory: Path) -> str:
    files = [(name, (directory / name).read_bytes()) for name in HOST_FILES]
    return hashlib.sha256(b"".join(name.encode() + b"\0" + content + b"\0" for name, content in sorted(files))).hexdigest()[:16]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(port: int, method: str, path: str, body=None, *, key: str | None = KEY, headers: dict | None = None, timeout: float = 30):
    """(status, headers, parsed JSON or None) of one call to 127.0.0.1:port."""
    sent = dict(headers or {})
    if key is not None:
        sent.setdefault("X-Orchestrio-App-Key", key)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, data, sent)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, response.headers, (json.loads(raw) if raw else None)


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting")
        time.sleep(step)


class HostProcess:
    """host.py as the agent starts it: in a directory of its own (beside its runners), with PORT
    and the app key in a minimal environment (and a deployment secret it must never hand on)."""

    def __init__(self, base: Path, *extra: str, path: str = SYSTEM_PATH) -> None:
        self.app = base / "app"
        self.app.mkdir(parents=True)
        for name in HOST_FILES:
            shutil.copyfile(RUNNERS / name, self.app / name)
        self.port = free_port()
        env = {"PATH": path, "HOME": str(self.app), "PORT": str(self.port), "ORCHESTRIO_APP_KEY": KEY,
               "ORCHESTRIO_INSTANCE_ID": "functions-test", "DEPLOY_SECRET": "do-not-leak"}  # fmt: skip
        self.output = open(base / "host.out", "wb")  # noqa: SIM115
        argv = [sys.executable, "-I", "-B", "host.py", "--data-dir", "../app-data", "--uid-base", str(UID_BASE), "--sweep-seconds", "0.2", *extra]
        self.proc = subprocess.Popen(argv, cwd=self.app, env=env, stdout=self.output, stderr=subprocess.STDOUT)
        wait_for(self._up, timeout=20)

    def _up(self) -> bool:
        assert self.proc.poll() is None, (self.app.parent / "host.out").read_text()
        try:
            return request(self.port, "GET", "/health", key=None, timeout=2)[0] == 200
        except OSError:
            return False

    def call(self, method: str, path: str, body=None, **kwargs):
        return request(self.port, method, path, body, **kwargs)

    def put(self, fid: int, number: int, code: str, *, runtime: str = "python3.11", env: dict | None = None, idle: int = 300, **extra):
        body = {"slug": f"fn-{fid}", "runtime": runtime, "code": code, "env": env or {}, "idle_timeout_seconds": idle, **extra}
        return self.call("PUT", f"/functions/{fid}/versions/{number}", body)

    def invoke(self, fid: int, number: int, envelope: dict | None = None, **kwargs):
        return self.call("POST", f"/functions/{fid}/versions/{number}/invoke", envelope if envelope is not None else ENVELOPE, **kwargs)

    def logs(self, fid: int, tail: int = 1000) -> list[str]:
        status, _, body = self.call("GET", f"/functions/{fid}/logs?tail={tail}")
        assert status == 200, body
        return body["lines"]

    def listing(self) -> dict:
        return self.call("GET", "/functions")[2]["functions"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.close()


def runner_pids(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (the tests' own data directories: bwrap binds
    from there) or that work in it (a runner without bwrap works in its version's directory)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read()
            cwd = os.readlink(f"/proc/{pid}/cwd") if os.access(f"/proc/{pid}/cwd", os.F_OK) else ""
        except OSError:
            continue
        if command and (marker.encode() in command or cwd.startswith(marker)):
            found.append(int(pid))
    return found


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    started = HostProcess(tmp_path_factory.mktemp("function-host"))
    yield started
    started.stop()
    assert not runner_pids(str(started.app.parent / "app-data")), "the host left runners behind"


# --- the host alone ----------------------------------------------------------------------------


def test_health_is_open_and_names_the_digest_of_its_files(host):
    status, headers, body = host.call("GET", "/health", key=None)
    assert status == 200 and body["status"] == "ok"
    assert body["digest"] == headers["X-Orchestrio-Function-Host"] == digest_of(RUNNERS)
    assert "python3.11" in body["runtimes"] and ("node20" in body["runtimes"]) == HAS_NODE
    assert body["isolation"] == ("bwrap" if os.geteuid() == 0 and shutil.which("bwrap") and shutil.which("setpriv") else "uid" if os.geteuid() == 0 else "none")


def test_every_other_route_needs_the_app_key(host):
    for key in (None, "wrong", KEY + "x"):
        status, headers, body = host.call("GET", "/functions", key=key)
        assert status == 401 and "app key" in body["detail"]
        assert headers["X-Orchestrio-Function-Host"] == digest_of(RUNNERS)
    status, _, _ = host.call("PUT", "/functions/1/versions/1", {"slug": "a"}, key="wrong")
    assert status == 401


def test_a_python_and_a_node_version_start_and_answer_as_their_runners_do(host):
    status, _, body = host.put(2, 1, PYTHON_HANDLER, env={"GREETING": "hello"})
    assert status == 200 and isinstance(body["start_ms"], int) and body["start_ms"] > 0
    status, headers, body = host.invoke(2, 1)
    assert status == 200 and headers["X-Function-Cold-Start"] == "0"
    assert headers["X-Orchestrio-Function-Host"] == digest_of(RUNNERS)
    assert body["status"] == 200 and body["headers"]["x-handled-by"] == "python"
    answer = json.loads(body["body"])
    assert answer["path"] == "/hello" and answer["greeting"] == "hello" and answer["query"] == {"a": ["1"]}
    # Putting it again changes nothing: a version never changes.
    status, _, body = host.put(2, 1, "this is not even python")
    assert (status, body) == (200, {"start_ms": 0, "already": True})
    assert host.invoke(2, 1)[2]["headers"]["x-handled-by"] == "python"
    if HAS_NODE:
        status, _, body = host.put(2, 2, NODE_HANDLER, runtime="node20", env={"GREETING": "hi from node"})
        assert status == 200, body
        status, headers, body = host.invoke(2, 2)
        assert status == 200 and headers["X-Function-Cold-Start"] == "0"
        assert body["status"] == 201 and json.loads(body["body"]) == {"path": "/hello", "greeting": "hi from node", "body": "hi"}
    assert "got POST /hello" in host.logs(2)
    listed = host.listing()["2"]
    assert listed["known"] == ([1, 2] if HAS_NODE else [1]) and listed["running"] == listed["known"]
    assert isinstance(listed["idle_seconds"], float)


def test_a_handler_that_does_not_import_is_refused_with_its_output_and_the_earlier_version_still_answers(host):
    assert host.put(3, 1, PYTHON_HANDLER)[0] == 200
    status, _, body = host.put(3, 2, BROKEN_HANDLER)
    assert status == 422
    assert body["detail"].startswith("version 2 did not start: the runtime exited at start (code 1)")
    assert "about to break" in body["output"] and "this handler cannot be imported" in body["output"]
    assert host.invoke(3, 1)[0] == 200
    status, _, body = host.invoke(3, 2)  # forgotten
    assert status == 404 and body["code"] == "unknown_version"
    assert any("[orchestrio] version 2 did not start" in line for line in host.logs(3))


def test_unknown_versions_and_bad_requests(host):
    status, headers, body = host.invoke(999, 1)
    assert status == 404 and body["code"] == "unknown_version" and headers["X-Orchestrio-Function-Host"]
    bad = [
        {"slug": "Bad Slug", "runtime": "python3.11", "code": "", "env": {}, "idle_timeout_seconds": 5},
        {"slug": "ok", "runtime": "ruby3", "code": "", "env": {}, "idle_timeout_seconds": 5},
        {"slug": "ok", "runtime": "python3.11", "code": 3, "env": {}, "idle_timeout_seconds": 5},
        {"slug": "ok", "runtime": "python3.11", "code": "", "env": {"A": 1}, "idle_timeout_seconds": 5},
        {"slug": "ok", "runtime": "python3.11", "code": "", "env": {"A=B": "1"}, "idle_timeout_seconds": 5},
        {"slug": "ok", "runtime": "python3.11", "code": "", "env": {}, "idle_timeout_seconds": True},
        {"slug": "ok", "runtime": "python3.11", "code": "", "env": {}, "idle_timeout_seconds": 5, "start_timeout_seconds": -1},
        [1, 2],
    ]
    for body in bad:
        status, _, answer = host.call("PUT", "/functions/4/versions/1", body)
        assert status == 422 and answer["detail"], (body, answer)
    status, _, answer = host.call("PUT", "/functions/4/versions/1", b"{not json")
    assert status == 422 and "JSON" in answer["detail"]
    for path in ("/functions/0/versions/1", "/functions/4/versions/-1", "/functions/x", "/nothing"):
        assert host.call("GET", path)[0] == 404
    assert host.call("POST", "/functions/4/versions/1")[0] == 405
    assert host.invoke(4, 1, headers={"X-Function-Timeout": "nan"})[0] == 422
    assert host.invoke(4, 1, headers={"X-Function-Timeout": "901"})[0] == 422
    assert host.call("GET", "/functions/4/logs?tail=0")[0] == 422
    assert host.call("GET", "/functions/4/logs?tail=5001")[0] == 422
    assert host.call("GET", "/functions/4/logs?tail=5000")[0] == 200
    assert host.call("GET", "/health", key=None)[0] == 200  # still there


def test_an_idle_runner_is_stopped_and_the_next_invocation_is_a_cold_start(host):
    assert host.put(5, 1, PYTHON_HANDLER, idle=1)[0] == 200
    wait_for(lambda: host.listing()["5"]["running"] == [], timeout=10)
    assert host.listing()["5"] == {"known": [1], "running": [], "idle_seconds": None}
    (stopped,) = [line for line in host.logs(5) if "[orchestrio] version 1 stopped: idle for " in line]
    assert stopped.endswith("s (scaled to zero)") and stopped[:20].endswith("Z")
    status, headers, body = host.invoke(5, 1)
    assert status == 200 and headers["X-Function-Cold-Start"] == "1" and body["status"] == 200
    assert any("[orchestrio] version 1 started on request (cold start" in line for line in host.logs(5))
    assert host.invoke(5, 1)[1]["X-Function-Cold-Start"] == "0"


def test_concurrent_invocations_of_a_stopped_version_share_one_start(host):
    assert host.put(6, 1, PYTHON_HANDLER, idle=1)[0] == 200
    wait_for(lambda: host.listing()["6"]["running"] == [], timeout=10)
    results: list = []

    def invoke():
        results.append(host.invoke(6, 1))

    threads = [threading.Thread(target=invoke) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [r[0] for r in results] == [200] * 5
    assert [r[1]["X-Function-Cold-Start"] for r in results] == ["1"] * 5
    assert sum("started on request" in line for line in host.logs(6)) == 1


def test_the_handler_gets_its_env_and_nothing_of_the_hosts(host):
    assert host.put(7, 3, ENV_HANDLER, env={"GREETING": "hey", "API_TOKEN": "t0k"})[0] == 200
    env = json.loads(host.invoke(7, 3)[2]["body"])
    assert env["GREETING"] == "hey" and env["API_TOKEN"] == "t0k"
    assert env["ORCHESTRIO_FUNCTION"] == "fn-7" and env["ORCHESTRIO_FUNCTION_VERSION"] == "3"
    assert env["HOME"] == "/tmp" and env["PATH"] == SYSTEM_PATH and env["LANG"] == "C.UTF-8"
    assert "ORCHESTRIO_APP_KEY" not in env and "DEPLOY_SECRET" not in env and "PORT" not in env
    assert KEY not in json.dumps(env) and "do-not-leak" not in json.dumps(env)


def test_logs_keep_the_newest_lines_and_their_tail(host):
    printer = "def handler(request):\n    for i in range(int(request['body'])):\n        print('line', i, 'x' * 200)\n    return 'done'\n"
    assert host.put(8, 1, printer)[0] == 200
    assert host.invoke(8, 1, {**ENVELOPE, "body": "3"})[0] == 200
    assert host.logs(8, tail=1) == ["line 2 " + "x" * 200]
    first, *printed = host.logs(8, tail=4)
    assert "[orchestrio] version 1 started (" in first and printed == [f"line {i} " + "x" * 200 for i in range(3)]
    assert host.invoke(8, 1, {**ENVELOPE, "body": "8000"})[0] == 200  # ~1.7 MB of output
    lines = host.logs(8, tail=1000)
    assert lines[-1] == "line 7999 " + "x" * 200 and len(lines) == 1000
    size = (host.app.parent / "app-data" / "8" / "output.log").stat().st_size
    assert size <= 1 << 20


def test_delete_stops_and_forgets_versions_and_functions(host):
    assert host.put(9, 1, PYTHON_HANDLER)[0] == 200
    assert host.put(9, 2, PYTHON_HANDLER)[0] == 200
    assert host.call("DELETE", "/functions/9/versions/1")[0] == 204
    assert host.invoke(9, 1)[2]["code"] == "unknown_version"
    listed = host.listing()["9"]
    assert (listed["known"], listed["running"]) == ([2], [2])
    assert host.call("DELETE", "/functions/9")[0] == 204
    assert "9" not in host.listing() and host.logs(9) == []
    assert not (host.app.parent / "app-data" / "9").exists()
    assert host.call("DELETE", "/functions/9")[0] == 204 and host.call("DELETE", "/functions/9/versions/7")[0] == 204
    assert not runner_pids(str(host.app.parent / "app-data" / "9" / "v"))


def test_an_invocation_past_its_timeout_is_a_504_and_a_dying_runner_a_502(host):
    assert host.put(10, 1, SLEEPY_HANDLER)[0] == 200
    began = time.monotonic()
    status, headers, body = host.invoke(10, 1, {**ENVELOPE, "body": "3"}, headers={"X-Function-Timeout": "1"})
    assert status == 504 and "did not answer within 1s" in body["detail"] and time.monotonic() - began < 2.5
    assert headers["X-Orchestrio-Function-Host"] == digest_of(RUNNERS)
    assert host.invoke(10, 1, {**ENVELOPE, "body": "0"}, headers={"X-Function-Timeout": "2.5"})[2]["body"] == "woke"
    assert host.put(10, 2, DYING_HANDLER)[0] == 200
    status, _, body = host.invoke(10, 2)
    assert status == 502 and "broke the connection" in body["detail"]
    # The runner is gone (the idle sweep says so); the next invocation starts it again.
    wait_for(lambda: any("version 2 exited on its own (code 3)" in line for line in host.logs(10)), timeout=5)
    assert 2 not in host.listing()["10"]["running"]
    assert host.invoke(10, 2)[0] == 502
    assert any("version 2 started on request (cold start" in line for line in host.logs(10))


def test_a_failing_handler_is_its_runners_500(host):
    assert host.put(11, 1, "def handler(request):\n    raise ValueError('no')\n")[0] == 200
    status, _, body = host.invoke(11, 1)
    assert status == 500 and body == {"error": "the handler raised ValueError"}
    assert any("ValueError: no" in line for line in host.logs(11))


@pytest.mark.skipif(os.geteuid() != 0, reason="a uid of its own needs root")
@pytest.mark.parametrize("isolation", ["auto", "uid"])
def test_runners_run_as_the_functions_own_uid(tmp_path, isolation):
    """Both ways a root host isolates: bubblewrap (when it has it), or a uid of its own only — which
    reaches its code through its working directory although the data directory is 0700 root's."""
    own = HostProcess(tmp_path, "--isolation", isolation)
    try:
        expected = "bwrap" if isolation == "auto" and shutil.which("bwrap") and shutil.which("setpriv") else "uid"
        assert own.call("GET", "/health", key=None)[2]["isolation"] == expected
        assert (tmp_path / "app-data").stat().st_mode & 0o777 == 0o700
        assert own.put(12, 1, ID_HANDLER)[0] == 200
        assert json.loads(own.invoke(12, 1)[2]["body"]) == {"uid": UID_BASE + 12, "gid": UID_BASE + 12, "groups": []}
        if HAS_NODE:
            assert own.put(13, 1, NODE_ID_HANDLER, runtime="node20")[0] == 200
            assert json.loads(own.invoke(13, 1)[2]["body"]) == {"uid": UID_BASE + 13, "gid": UID_BASE + 13}
        # The handler cannot write its own code.
        writer = "def handler(request):\n    try:\n        open(__file__, 'a').write('x')\n    except OSError as exc:\n        return type(exc).__name__\n    return 'wrote'\n"
        assert own.put(12, 2, writer)[0] == 200
        assert own.invoke(12, 2)[2]["body"] in ("PermissionError", "OSError")
        # A host killed outright takes its runners with it (the parent-death signal).
        assert runner_pids(str(tmp_path / "app-data"))
        own.proc.kill()
        own.proc.wait(timeout=10)
        wait_for(lambda: not runner_pids(str(tmp_path / "app-data")), timeout=5)
    finally:
        own.stop()


def test_a_host_without_an_app_key_refuses_everything_but_health(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    for name in HOST_FILES:
        shutil.copyfile(RUNNERS / name, app / name)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-I", "-B", "host.py", "--data-dir", "../data", "--isolation", "none"], cwd=app,
                            env={"PATH": SYSTEM_PATH, "PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _answers(port), timeout=20)
        assert request(port, "GET", "/health", key=None)[2]["isolation"] == "none"
        for key in (None, "", "anything"):
            status, _, body = request(port, "GET", "/functions", key=key)
            assert status == 401 and "no app key" in body["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        return request(port, "GET", "/health", key=None, timeout=2)[0] == 200
    except OSError:
        return False


# --- through the agent (PUT /app) --------------------------------------------------------------

AGENT_KEY = "agent-key-for-the-function-host-test"
KEY_HEADER = "X-Orchestrio-Agent-Key"


def app_key(agent_key: str) -> str:
    """As the control plane derives it (functions/remote.py)."""
    return hmac.new(hashlib.sha256(agent_key.encode()).digest(), b"orchestrio-app", hashlib.sha256).hexdigest()


class AgentProcess:
    def __init__(self, base: Path, app_port: int) -> None:
        self.base, self.app_port = base, app_port
        self.state = base / "state"
        self.proc = None
        self.start()

    def start(self) -> None:
        port_file = self.base / "agent.port"
        port_file.unlink(missing_ok=True)
        env = {"PATH": SYSTEM_PATH, "ORCHESTRIO_AGENT_KEY_SHA256": hashlib.sha256(AGENT_KEY.encode()).hexdigest()}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(AGENT), "--port", "0", "--port-file", str(port_file), "--state-dir", str(self.state),
             "--instance-id", "functions-test", "--app-port", str(self.app_port), "--home", str(self.base)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.base / "agent.err", "ab"),  # noqa: SIM115
        )  # fmt: skip
        self.port = int(wait_for(lambda: port_file.exists() and port_file.read_text(), timeout=20))

    def call(self, method: str, path: str, body=None, *, agent_key: str | None = AGENT_KEY, app: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if agent_key is not None:
            headers[KEY_HEADER] = agent_key
        return request(self.port, method, path, body, key=app if app is not None else app_key(AGENT_KEY), headers=headers, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)


@pytest.fixture
def agent(tmp_path):
    started = AgentProcess(tmp_path, free_port())
    yield started
    started.stop()
    assert not runner_pids(str(tmp_path / "state")), "the agent's app left runners behind"


def host_files() -> dict:
    return {name: (RUNNERS / name).read_text() for name in HOST_FILES}


HOST_COMMAND = ["python3", "-I", "-B", "host.py", "--data-dir", "../app-data", "--uid-base", str(UID_BASE)]


def wait_for_host(agent: AgentProcess) -> dict:
    def current():
        status, headers, body = agent.call("GET", "/health", agent_key=None, app="")
        return body if status == 200 and headers.get("X-Orchestrio-Function-Host") == digest_of(RUNNERS) else None

    return wait_for(current, timeout=20)


def test_put_app_runs_the_host_which_runs_functions_through_the_agent(agent):
    status, _, body = agent.call("PUT", "/app", {"command": HOST_COMMAND, "files": host_files()})
    assert status == 200 and body["started"] is True and isinstance(body["pid"], int)
    assert wait_for_host(agent)["digest"] == digest_of(RUNNERS)
    assert sorted(os.listdir(agent.state / "app")) == sorted(HOST_FILES)
    assert (agent.state / "app").stat().st_mode & 0o777 == 0o755 and (agent.state / "app" / "host.py").stat().st_mode & 0o777 == 0o644
    assert (agent.state / "app-data").stat().st_mode & 0o777 == 0o700
    assert json.loads((agent.state / "app.json").read_text()) == {"command": HOST_COMMAND}

    body = {"slug": "via-agent", "runtime": "python3.11", "code": ENV_HANDLER, "env": {"GREETING": "yo"}, "idle_timeout_seconds": 60}
    status, _, answer = agent.call("PUT", "/functions/21/versions/1", body)
    assert status == 200 and answer["start_ms"] > 0, answer
    status, headers, answer = agent.call("POST", "/functions/21/versions/1/invoke", ENVELOPE)
    assert status == 200 and headers["X-Function-Cold-Start"] == "0", answer
    env = json.loads(answer["body"])
    assert env["GREETING"] == "yo" and "ORCHESTRIO_APP_KEY" not in env and AGENT_KEY not in json.dumps(env)
    # The agent key alone opens the agent, not the host; the app key alone opens nothing.
    assert agent.call("GET", "/functions", app="wrong")[0] == 401
    assert agent.call("GET", "/functions", agent_key=None)[0] == 401
    assert agent.call("GET", "/functions")[2]["functions"]["21"]["running"] == [1]

    # PUT /app is the agent's: without its key, 401; bad names or contents, 422.
    assert agent.call("PUT", "/app", {"command": HOST_COMMAND, "files": host_files()}, agent_key=None)[0] == 401
    assert agent.call("PUT", "/app", {"command": HOST_COMMAND, "files": host_files()}, agent_key="wrong")[0] == 401
    for files in ({"../x.py": "x"}, {".hidden": "x"}, {"a/b": "x"}, {"x" * 65: "x"}, {"é.py": "x"}, {"ok.py": 3}, ["host.py"]):
        status, _, answer = agent.call("PUT", "/app", {"command": HOST_COMMAND, "files": files})
        assert status == 422 and "files" in answer["detail"], (files, answer)
    for command in ([], "python3 host.py", [1]):
        assert agent.call("PUT", "/app", {"command": command, "files": host_files()})[0] == 422
    assert agent.call("PUT", "/app", {"command": HOST_COMMAND, "files": {"big.txt": "x" * ((4 << 20) + 1)}})[0] == 422
    # Those changed nothing: the same host still runs its version.
    assert agent.call("POST", "/functions/21/versions/1/invoke", ENVELOPE)[0] == 200

    # A restarted agent runs the host again; the host knows no version (the control plane re-pushes).
    agent.stop()
    assert not runner_pids(str(agent.state / "app-data"))
    agent.start()
    assert wait_for_host(agent)["status"] == "ok"
    status, _, answer = agent.call("POST", "/functions/21/versions/1/invoke", ENVELOPE)
    assert status == 404 and answer["code"] == "unknown_version"


def test_a_new_agent_key_restarts_the_host_with_its_new_app_key(agent):
    assert agent.call("PUT", "/app", {"command": HOST_COMMAND, "files": host_files()})[0] == 200
    wait_for_host(agent)
    assert agent.call("GET", "/functions")[0] == 200
    new_key = "the-rotated-agent-key"
    status, _, _ = agent.call("POST", "/agent-key", {"key_sha256": hashlib.sha256(new_key.encode()).hexdigest()})
    assert status == 200
    wait_for_host(agent)  # started again (its /health is open)
    assert request(agent.port, "GET", "/functions", key=app_key(AGENT_KEY), headers={KEY_HEADER: new_key})[0] == 401
    assert request(agent.port, "GET", "/functions", key=app_key(new_key), headers={KEY_HEADER: new_key})[0] == 200
    assert agent.call("GET", "/api/status", agent_key=new_key)[2]["app"]["restarts"] == 1


def test_a_command_that_cannot_start_is_a_422_and_is_not_kept(agent):
    status, _, body = agent.call("PUT", "/app", {"command": ["/nonexistent/program"], "files": {"a.txt": "x"}})
    assert status == 422 and "cannot start /nonexistent/program" in body["detail"]
    assert not (agent.state / "app.json").exists()
    assert agent.proc.poll() is None
    assert agent.call("GET", "/api/status")[2]["app"] is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the host as another user")
def test_a_host_that_is_not_root_runs_runners_as_itself_and_hides_its_environment():
    """As inside the local provider's sandbox: no uid of their own, but the host is not dumpable,
    so a handler (its uid) cannot read the host's environment, the app key in it, through /proc."""
    import tempfile

    uid = UID_BASE + 999
    base = Path(tempfile.mkdtemp(prefix="function-host-none-", dir="/tmp"))
    os.chmod(base, 0o711)
    app = base / "app"
    app.mkdir()
    for name in HOST_FILES:
        shutil.copyfile(RUNNERS / name, app / name)
    os.chown(app, uid, uid)
    port = free_port()
    env = {"PATH": SYSTEM_PATH, "PORT": str(port), "ORCHESTRIO_APP_KEY": KEY, "HOME": str(app)}
    proc = subprocess.Popen(["/usr/bin/python3", "-I", "-B", "host.py", "--data-dir", "data", "--sweep-seconds", "0.2"], cwd=app, env=env,
                            user=uid, group=uid, extra_groups=[], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _answers(port), timeout=20)
        assert request(port, "GET", "/health", key=None)[2]["isolation"] == "none"
        snoop = (
            "import os\n\ndef handler(request):\n    try:\n        data = open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
            "    except OSError as exc:\n        data = type(exc).__name__.encode()\n    return {'uid': os.getuid(), 'parent_env': data.decode('latin-1')}\n"
        )
        body = {"slug": "snoop", "runtime": "python3.11", "code": snoop, "env": {}, "idle_timeout_seconds": 60}
        status, _, answer = request(port, "PUT", "/functions/31/versions/1", body)
        assert status == 200, answer
        answer = json.loads(request(port, "POST", "/functions/31/versions/1/invoke", ENVELOPE)[2]["body"])
        assert answer["uid"] == uid
        assert answer["parent_env"] == "PermissionError" and KEY not in answer["parent_env"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
    assert not runner_pids(str(app / "data"))


def test_an_app_put_there_that_exits_on_its_own_is_started_again(agent):
    """Unlike a blueprint's program (app mode: the agent exits with it), PUT /app's is the control
    plane's: a crashed function host comes back a second later, the instance stays up."""
    program = "import os, time; open('runs', 'a').write('x'); time.sleep(0.3); raise SystemExit(3)"
    status, _, _ = agent.call("PUT", "/app", {"command": ["python3", "-c", program], "files": {}})
    assert status == 200
    runs = agent.state / "app" / "runs"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (not runs.exists() or len(runs.read_text()) < 3):
        time.sleep(0.1)
    assert len(runs.read_text()) >= 3  # started, exited, started again, …
    assert agent.proc.poll() is None  # the agent (the instance's process) is still there


def test_a_data_dir_too_deep_for_a_socket_path_gets_its_sockets_elsewhere(tmp_path):
    deep = tmp_path / ("deep-" * 14)
    own = HostProcess(deep)
    try:
        assert len(str(deep / "app-data" / "sockets")) > 107 - len("1-1.sock")
        assert own.put(1, 1, PYTHON_HANDLER)[0] == 200
        assert own.invoke(1, 1)[0] == 200
        assert not any((deep / "app-data" / "sockets").glob("*"))
    finally:
        own.stop()


@needs_node
@pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("bwrap") and shutil.which("setpriv")), reason="needs root and bubblewrap")
def test_an_interpreter_outside_the_system_directories_is_bound_into_the_sandbox(tmp_path):
    """A node installed under /opt (or anywhere but /usr): bwrap binds its installation, read-only."""
    install = tmp_path / "opt-node" / "bin"
    install.mkdir(parents=True)
    try:
        os.link(os.path.realpath(shutil.which("node", path=SYSTEM_PATH)), install / "node")
    except OSError as exc:
        pytest.skip(f"cannot link node here: {exc}")
    own = HostProcess(tmp_path / "host", path=f"{install}:{SYSTEM_PATH}")
    try:
        assert own.put(14, 1, "export default async () => process.execPath;\n", runtime="node20")[0] == 200
        assert own.invoke(14, 1)[2]["body"] == str(install / "node")
    finally:
        own.stop()


def test_a_runner_cannot_write_a_file_past_64_mib(host):
    writer = (
        "def handler(request):\n    with open('/tmp/big', 'wb') as out:\n        for _ in range(65):\n"
        "            out.write(b'x' * (1 << 20))\n    return 'wrote 65 MiB'\n"
    )
    assert host.put(15, 1, writer)[0] == 200
    status, _, body = host.invoke(15, 1)
    # Python ignores SIGXFSZ, so the write fails (EFBIG) instead of killing the runner.
    assert (status, body) == (500, {"error": "the handler raised OSError"})
    assert any("File too large" in line for line in host.logs(15))
