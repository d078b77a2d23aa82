"""Every command the README shows, run in order as a new user pastes them, after `make run`.

`make run` is stood in for by what it does: the local settings file (`python -m
orchestrio.localsettings`), then `manage.py seeddemo` (whose printed `ork_test_` token the README's
`ORK_TOKEN=ork_test_…` stands for) and `manage.py serve` with its worker and scheduler, here on the
suite's test database and a free port. Every fenced `sh` block then runs, command by command, in
one bash shell with nothing of the suite's settings in its environment (no SECRET_KEY, no DEBUG:
only what `var/local.env` gives `manage.py`). The only changes to the text: the server's address
for `http://127.0.0.1:8000` and the demo token for `ork_test_…`/`ork_live_…`.

Each command must exit 0; its trailing comment is what the README promises, and is checked: a
status code in it (`# 202, "stopping"`) must be what every curl in the command answered (without
one, 2xx), and each "quoted" word must appear in what it printed. curl is run as a shell function
that adds `-sS` and reports each answer's status on stderr, so pipelines (`| field id`) see the
body unchanged. The first command that does not do what its comment says fails the test, with the
command and its output."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ..processes import database_url, server_process

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_BASE = "http://127.0.0.1:8000"
# Stood in for by the harness (make run) or by this very run (make test).
MAKE = re.compile(r"^(\w+=\S+ )*make (run|test)\b")
STATUS = re.compile(r"@@status (\d{3})@@")
DONE = re.compile(r"^@@rc (\d+)@@$")
COMMAND_TIMEOUT = 180



@dataclass
class Command:
    text: str
    line: int
    comment: str = ""
    expect_status: int | None = None
    expect_words: list[str] = field(default_factory=list)


def _trailing_comment(line: str) -> tuple[str, str]:
    """(code, comment): a `#` outside quotes that starts a word begins the comment."""
    single = double = False
    for index, char in enumerate(line):
        if char == "'" and not double:
            single = not single
        elif char == '"' and not single:
            double = not double
        elif char == "#" and not single and not double and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1 :].strip()
    return line, ""


def readme_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)```(\w*)\s*$", lines[index])
        index += 1
        if not opening:
            continue
        indent, language = opening.groups()
        block: list[tuple[int, str]] = []
        while index < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[index]):
            block.append((index + 1, lines[index][len(indent) :]))
            index += 1
        index += 1
        if language != "sh":
            continue  # output shown, the layout: not commands
        pending: list[str] = []
        start = 0
        for number, raw in block:
            code, comment = _trailing_comment(raw)
            if not code.strip() and not pending:
                continue  # a blank or comment-only line: prose
            if not pending:
                start = number
            if code.endswith("\\"):
                pending.append(code)
                continue
            pending.append(code)
            command = Command("\n".join(pending), start, comment)
            status = re.search(r"\b([1-5]\d\d)\b", comment)
            command.expect_status = int(status.group(1)) if status else None
            command.expect_words = re.findall(r'"([^"]+)"', comment)
            commands.append(command)
            pending = []
    return commands


class Shell:
    """One bash process the commands are fed to, as a user pastes them into one terminal."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        # curl as the README's reader runs it, plus the status of each answer on stderr.
        self.run("curl() { command curl -sS -w '%{stderr}\\n@@status %{http_code}@@\\n' \"$@\"; }")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
        self.proc.stdin.write(f"{{\n{command}\n}} </dev/null\necho; echo \"@@rc $?@@\"\n")
        self.proc.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                return -1, "\n".join(output) + f"\n(no end after {timeout:.0f} s)"
            if line is None:
                return -2, "\n".join(output) + "\n(the shell exited)"
            done = DONE.match(line)
            if done:
                return int(done.group(1)), "\n".join(output)
            output.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def _problem(command: Command, rc: int, output: str) -> str | None:
    statuses = [int(code) for code in STATUS.findall(output)]
    shown = STATUS.sub("", output)
    if rc != 0:
        return f"exited with {rc}"
    if command.expect_status is not None and (not statuses or any(code != command.expect_status for code in statuses)):
        return f"answered {statuses or 'nothing'}, the README says {command.expect_status}"
    if command.expect_status is None and any(not 200 <= code < 300 for code in statuses):
        return f"answered {statuses}, the README promises success"
    missing = [word for word in command.expect_words if word not in shown]
    if missing:
        return f"printed no {', '.join(repr(word) for word in missing)}"
    return None


def test_the_readme_parser_finds_the_walk_through():
    """The harness below reads what the README says: a broken parser would check nothing."""
    commands = readme_commands(README.read_text())
    texts = [command.text for command in commands]
    assert any(MAKE.match(text) for text in texts)
    create = next(c for c in commands if "-X POST $ORK/instances -d" in c.text)
    assert create.expect_status == 201 and create.expect_words == ["pending"]
    assert any("\\\n" in text for text in texts)  # continuation lines are joined
    assert sum("wait?state=" in text for text in texts) >= 5
    assert any("createtenant" in text for text in texts) and any("createsuperuser" in text for text in texts)
    sample = "```sh\ncurl -d '{\"a\": \"#1\"}' x   # 409: \"busy\"\n# prose\n```\n```\nnot a command\n```\n"
    (only,) = readme_commands(sample)
    assert only.text == "curl -d '{\"a\": \"#1\"}' x" and only.expect_status == 409 and only.expect_words == ["busy"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_command_the_readme_shows_does_what_it_says(settings):
    var_dir = Path(tempfile.mkdtemp(prefix="orchestrio-readme-"))
    os.chmod(var_dir, 0o755)  # the sandboxed instances traverse it, as a checkout's var/
    # Nothing of the suite's settings: manage.py gets DEBUG, SECRET_KEY and ENCRYPTION_KEYS from
    # the file make run writes. The test database, the suite's instance directory (its
    # leftover-process check looks there) and its sandbox uids (a pytest-xdist worker's own block).
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "ORCHESTRIO_VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url(),
        "LOCAL_PROVIDER_DIR": str(settings.LOCAL_PROVIDER_DIR),
        "LOCAL_SANDBOX_UID_BASE": str(settings.LOCAL_SANDBOX_UID_BASE),
        "LOG_LEVEL": "WARNING",
    }
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    try:
        # What make run does before it serves.
        subprocess.run([python, "-m", "orchestrio.localsettings"], cwd=ROOT, env=env, check=True, capture_output=True)
        seeded = subprocess.run([python, "manage.py", "seeddemo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        token = re.search(r"ork_test_[0-9A-Za-z]+", seeded.stdout).group()
        with server_process(env, worker=True, scheduler=True) as base:
            shell = Shell(env)
            try:
                ran = []
                for command in readme_commands(README.read_text()):
                    if MAKE.match(command.text):
                        continue  # make run: the server above; make test: this run
                    text = command.text.replace(README_BASE, base)
                    text = re.sub(r"ork_(test|live)_…", token, text)
                    rc, output = shell.run(text)
                    problem = _problem(command, rc, output)
                    assert problem is None, (
                        f"README.md line {command.line}: {problem}\n$ {text}\n# {command.comment}\n{output[-3000:]}"
                    )
                    ran.append(command.text)
                assert len(ran) >= 30, ran  # the walk-through, the tasks, gateway, domain, deployments, operators
                # "then log in at /admin/ with its email": the account createsuperuser made, as written.
                superuser = next(c.text for c in readme_commands(README.read_text()) if "createsuperuser" in c.text)
                password = re.search(r"DJANGO_SUPERUSER_PASSWORD='([^']+)'", superuser).group(1)
                email = re.search(r"--email (\S+)", superuser).group(1)
                with httpx.Client(base_url=base, timeout=30) as browser:
                    browser.get("/admin/login/")
                    login = browser.post(
                        "/admin/login/?next=/admin/",
                        data={"username": email, "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"], "next": "/admin/"},
                        headers={"Referer": f"{base}/admin/login/"},
                    )  # fmt: skip
                    assert login.status_code == 302 and login.headers["Location"] == "/admin/", login.text[-2000:]
                    assert browser.get("/admin/").status_code == 200
            finally:
                shell.close()
                # The README's last block destroys what it made; wait for that before the server stops.
                deadline = time.monotonic() + 60
                headers = {"Authorization": f"Bearer {token}"}
                while time.monotonic() < deadline:
                    if httpx.get(f"{base}/api/v1/instances", headers=headers, timeout=10).json().get("count") == 0:
                        break
                    time.sleep(0.5)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
