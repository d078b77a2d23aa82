"""Fault injection at named points, for the resilience tests (like etcd's failpoints).

`ORCHESTRIO_FAULTS` lists points, each optionally with an action: `operation.create.after_provider`
(kill, the default) or `task.after_start=error`. A point fires once per ORCHESTRIO_VAR_DIR (a
marker file records it), so a job re-run by the reconciler after the fault proceeds normally:
that is exactly what the tests prove. Unset (always, in production) a point costs one lookup in
an empty list. `manage.py check` warns when faults are configured.

Actions:
- `kill`: SIGKILL this process's group: the `rqworker` (with RQ's forking worker, its work horse too) dies mid-job, with
  no cleanup and no finally blocks (as when the host or the OOM killer takes the worker);
- `error`: raise FaultInjected (an unexpected crash the job's own error handling must absorb).
"""

from __future__ import annotations

import logging
import os
import signal

from django.conf import settings
from django.core import checks

logger = logging.getLogger(__name__)
ACTIONS = ("kill", "error")


class FaultInjected(RuntimeError):
    pass


def configured() -> dict[str, str]:
    faults = {}
    for item in settings.FAULTS:
        point, _, action = item.partition("=")
        faults[point.strip()] = action.strip() or "kill"
    return faults


def fault_point(name: str) -> None:
    if not settings.FAULTS:
        return
    action = configured().get(name)
    if action is None or not _claim(name):
        return
    logger.warning("fault injection: %s at %s (pid %s)", action, name, os.getpid())
    if action == "kill":
        if os.environ.get("RQ_WORKER_ID") and os.getpgrp() == os.getpid():
            # A forked work horse (its own process group): its rqworker goes first.
            os.kill(os.getppid(), signal.SIGKILL)
        os.killpg(os.getpgrp(), signal.SIGKILL)
    raise FaultInjected(f"injected fault at {name}")


def _claim(name: str) -> bool:
    """True the first time `name` fires for this var dir (an atomic create of a marker file)."""
    directory = settings.VAR_DIR / "faults"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(directory / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


@checks.register(checks.Tags.security)
def check_faults(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    unknown = sorted({action for action in configured().values() if action not in ACTIONS})
    messages = []
    if settings.FAULTS:
        messages.append(
            checks.Warning(
                f"fault injection is on: {', '.join(settings.FAULTS)}",
                hint="ORCHESTRIO_FAULTS is for the resilience tests; unset it in production.",
                id="orchestrio.W010",
            )
        )
    if unknown:
        messages.append(checks.Error(f"unknown fault actions: {', '.join(unknown)}", hint=f"use one of {', '.join(ACTIONS)}", id="orchestrio.E010"))
    return messages
