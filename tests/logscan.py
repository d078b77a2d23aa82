"""A session-wide watch for secrets in logs.

Every log record of the test run (at INFO and above, the production default, from every logger)
is kept, and so are the logs of the server and worker processes the tests start. At the end a
test (`tests/security/test_no_secrets_in_logs.py`, run last) looks for secrets in all of it: the
shapes of Orchestrio's own secrets (`ork_` API tokens, `oak_` agent keys, `whsec_` alert signing
secrets) and Stripe's (`sk_…`, `whsec_…`), and every value the run encrypted (deployment
secrets, agent keys, webhook secrets: whatever went through Fernet), whatever its shape.

With pytest-xdist every worker keeps its own; at the end each sends them to the controller
(`export`), which scans them all together after every worker is done (`scan_workers`, from
tests/conftest.py): a value one worker encrypted is looked for in every worker's logs too.
"""

from __future__ import annotations

import logging
import re

SHAPES = re.compile(
    r"ork_(?:live|test)_[0-9A-Za-z]{38}"  # an API token (its 12-character prefix alone is public)
    r"|oak_[A-Za-z0-9_-]{40,}"  # an instance agent key
    r"|sk_(?:live|test)_[0-9A-Za-z]{16,}"  # a Stripe secret key
    r"|whsec_[A-Za-z0-9_-]{20,}"  # a webhook signing secret
    r"|inv_[A-Za-z0-9_-]{43}"  # a team invitation's link token
)
MIN_SECRET_LENGTH = 8  # shorter encrypted values ("on", "1") would match everywhere

records: list[str] = []
encrypted: set[str] = set()
child_logs: list[tuple[str, str]] = []


class _Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to judge
            text = str(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        records.append(f"{record.name} {record.levelname} {text}\n{record.exc_text or ''}")


_keep = _Keep(level=logging.INFO)


def attach() -> None:
    """(Again) on the root logger at INFO: code under test may reconfigure logging (dictConfig
    replaces the root's handlers), so the suite calls this before every test."""
    root = logging.getLogger()
    if _keep not in root.handlers:
        root.addHandler(_keep)
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
        for handler in root.handlers:
            if handler is not _keep and handler.level < logging.WARNING:
                handler.setLevel(logging.WARNING)  # keep the console as quiet as before


def install() -> None:
    from cryptography.fernet import MultiFernet

    attach()

    real = MultiFernet.encrypt

    def recording(self, msg: bytes) -> bytes:
        try:
            value = msg.decode()
        except UnicodeDecodeError:
            value = ""
        if len(value) >= MIN_SECRET_LENGTH:
            encrypted.add(value)
        return real(self, msg)

    MultiFernet.encrypt = recording
    _keep_instance_logs()


def instance_logs(directory) -> list[tuple[str, str]]:
    """An instance's own logs (the local provider's directory): its app logs (the agent's ring
    buffer, which the API serves) and the sandbox's console output."""
    from pathlib import Path

    found = []
    base = Path(directory)
    for path in [base / "console.log", *sorted((base / "state" / "app-logs").glob("app.log*"))]:
        try:
            found.append((f"instance log {path}", path.read_text(errors="replace")))
        except OSError:
            continue
    return found


def _keep_instance_logs() -> None:
    """Read each local instance's logs before its directory is deleted (a destroy), so the scan
    covers every instance of the run."""
    from instances.providers import local

    real = local._remove

    def keeping(directory):
        child_logs.extend(instance_logs(directory))
        return real(directory)

    local._remove = keeping


def leaks(texts: list[tuple[str, str]], known: set[str]) -> list[str]:
    """(where, excerpt) of every secret found in the texts."""
    found = []
    values = sorted(known, key=len, reverse=True)
    pattern = re.compile("|".join([SHAPES.pattern, *(re.escape(v) for v in values)]))
    for where, text in texts:
        for match in pattern.finditer(text):
            start = max(0, match.start() - 80)
            found.append(f"{where}: …{text[start:match.end() + 20]}…")
    return found


def texts(where: str = "", kept: list[str] | None = None, children: list | None = None) -> list[tuple[str, str]]:
    """(where, text) of every log record and child process log kept (this process's by default)."""
    kept = records if kept is None else kept
    children = child_logs if children is None else children
    return [(f"{where}record {n}", text) for n, text in enumerate(kept)] + [(f"{where}{name}", text) for name, text in children]


def remaining_instance_logs() -> list[tuple[str, str]]:
    """The logs of the local instances still there at the end of the run (not destroyed)."""
    from pathlib import Path

    from django.conf import settings

    return [log for directory in sorted(Path(settings.LOCAL_PROVIDER_DIR).glob("*")) for log in instance_logs(directory)]


def export() -> dict:
    """What a pytest-xdist worker keeps, for its controller (execnet sends plain lists)."""
    children = [*child_logs, *remaining_instance_logs()]
    return {"records": list(records), "child_logs": [[name, text] for name, text in children], "encrypted": sorted(encrypted)}


def scan_workers(outputs: dict[str, dict | None]) -> list[str]:
    """The secrets in the logs of every pytest-xdist worker (worker id: its `export()`, or None when
    it ended without sending one, which leaves the scan incomplete and so fails it too)."""
    found, known, everything = [], set(), []
    for worker, output in sorted(outputs.items()):
        if output is None:
            found.append(f"{worker}: ended without sending its logs: the scan of the run is incomplete")
            continue
        known.update(output["encrypted"])
        everything += texts(f"{worker} ", output["records"], output["child_logs"])
    return found + leaks(everything, known)
