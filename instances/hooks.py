"""Hooks the instances app offers the apps built on it. A higher app registers in its
`AppConfig.ready`; the instances app calls the hook without knowing who listens.

- `machine_started(instance)`: the instance's machine has just been launched (create, start,
  restart, a resize that restarts it) and its agent answers, before the readiness check. What an
  instance keeps only in memory is gone after a start (secrets live in a tmpfs, never on disk):
  whoever owns such state pushes it again here.
- `instance_running(instance)`: an operation has just finished with the instance running and
  healthy (create, start, restart, resume, a resize that restarts it; in its job, or in the
  readiness sweep). Whoever waits for an instance to run, with no worker held, resumes here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_machine_started: list[Callable] = []
_instance_running: list[Callable] = []


def on_machine_started(func: Callable) -> Callable:
    if func not in _machine_started:
        _machine_started.append(func)
    return func


def machine_started(instance) -> list[str]:
    """Run every `machine_started` hook; returns what each reported (for the lifecycle log). A
    failing hook is logged and reported, and fails nothing: the readiness check decides."""
    notes = []
    for func in _machine_started:
        try:
            note = func(instance)
        except Exception as exc:  # noqa: BLE001 - one listener must not stop a start
            logger.exception("machine_started hook %s failed for %s", func.__qualname__, instance.instance_id)
            note = f"{func.__module__}: {type(exc).__name__}"
        if note:
            notes.append(note)
    return notes


def on_instance_running(func: Callable) -> Callable:
    if func not in _instance_running:
        _instance_running.append(func)
    return func


def instance_running(instance) -> list[str]:
    """Run every `instance_running` hook; returns what each reported (for the lifecycle log). A
    failing hook is logged and reported: the operation has succeeded either way, and whoever
    listens has a periodic check that finds what it missed."""
    notes = []
    for func in _instance_running:
        try:
            note = func(instance)
        except Exception as exc:  # noqa: BLE001 - one listener must not undo a start
            logger.exception("instance_running hook %s failed for %s", func.__qualname__, instance.instance_id)
            note = f"{func.__module__}: {type(exc).__name__}"
        if note:
            notes.append(note)
    return notes
