"""Hooks the instances app offers the apps built on it. A higher app registers in its
`AppConfig.ready`; the instances app calls the hook without knowing who listens.

- `machine_started(instance)`: the instance's machine has just been launched (create, start,
  restart, a resize that restarts it) and its agent answers, before the readiness check. What an
  instance keeps only in memory is gone after a start (secrets live in a tmpfs, never on disk):
  whoever owns such state pushes it again here.
- `instance_running(instance)`: an operation has just finished with the instance running and
  healthy (create, start, restart, resume, a resize that restarts it; in its job, or in the
  readiness sweep). Whoever waits for an instance to run, with no worker held, resumes here.
- `instance_destroying(instance)`: a destroy has just been accepted, inside its transaction (the
  instance row is locked). Whoever serves something for the instance stops here (the domains app:
  its custom domain stops being served and certified). A failure rolls the destroy back.
- `instance_destroyed(instance)`: the destroy has finished, inside the transaction that records
  it. Whoever keeps rows for the instance ends them here. A failure rolls the finish back (the
  job runs it again).
- `reconcile(summary)`: the reconciler's pass (instances.reconciler.reconcile_all), after the
  instances app has reconciled its operations and machines, under the reconciler's singleton.
  Each listener adds its corrections to `summary`; it runs in the order registered.
- `instance_environment(instance, replace=…)`: the environment the instance's program gets (the
  agent's one set of secrets), merged from every app that contributes a part (`on_environment`:
  deployments their current revision's secrets, add-ons their URLs). Whoever pushes secrets to the
  agent pushes this whole set, so that no push drops another app's part; `replace` gives one part's
  values for this push (a deployment applying a new revision). On a name two parts set, the part
  of higher `priority` wins (a deployment's own secret over an add-on's URL).
- `managed_config_key(key)`: who sets a key of an instance's config that a higher app owns (the
  runtime app: `model_policy`, validated against its model catalogue); a config merge patch that
  names it is refused (422) and points there.
- `create_held_by(operation)`: a create is about to launch its instance's machine. An app that
  launches several instances' machines in one call (the fleet app: one EC2 Fleet for a request's
  batch) answers the id of the job that will hand this instance its machine and run the create
  again; the create then waits, queued under that job (`services.operation_hold`). None: launch
  as usual. The first listener with an answer wins.
- `machine_ready(instance)`: the instance's agent has just answered its health path after an
  operation that (re)started its machine, before the operation finishes as running. An app that
  launched the machine with a provisional identity (the fleet app: a batch's shared bootstrap
  key) makes the agent the instance's own here; a ProviderError fails the operation.
- `sandbox_binds(instance_id=…, instance_pk=…)`: directories a sandboxed local instance gets
  bound into its filesystem view at launch, `(host path, sandbox path, writable)` (add-ons: the
  directory of its add-ons' unix sockets, read-only at /run/addons). A bind is fixed at launch, so
  a listener binds a directory that outlives its contents: what it puts in it later (an add-on
  created while the instance runs) appears inside at once. Only that instance gets it.
- `instance_for_host(host)`: the id of the instance a host name outside BASE_DOMAIN serves, or
  None (the domains app: an active custom domain). The gateway routes by it; the first resolver
  that knows the name wins, and with none the host is the console's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_machine_started: list[Callable] = []
_instance_running: list[Callable] = []
_environment: dict[str, tuple[int, Callable]] = {}
_managed_config_keys: dict[str, str] = {}


def on_managed_config_key(key: str, where: str) -> None:
    """`key` of an instance's config is set only through `where` (a route of the registering app)."""
    _managed_config_keys[key] = where


def managed_config_key(key: str) -> str | None:
    return _managed_config_keys.get(key)


def on_environment(name: str, func: Callable, *, priority: int = 0) -> Callable:
    """Register `name`'s part of an instance's environment: `func(instance=…) -> {NAME: value}`."""
    _environment[name] = (priority, func)
    return func


def instance_environment(instance, *, replace: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """Every part merged, lower priority first (see the module's docstring)."""
    merged: dict[str, str] = {}
    for name, (_, func) in sorted(_environment.items(), key=lambda item: item[1][0]):
        merged.update(replace[name] if replace and name in replace else func(instance=instance))
    return merged


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


_instance_destroying: list[Callable] = []
_instance_destroyed: list[Callable] = []
_reconcile: list[Callable] = []


def _register(registry: list[Callable], func: Callable) -> Callable:
    if func not in registry:
        registry.append(func)
    return func


def on_instance_destroying(func: Callable) -> Callable:
    return _register(_instance_destroying, func)


def instance_destroying(instance) -> None:
    for func in _instance_destroying:
        func(instance)


def on_instance_destroyed(func: Callable) -> Callable:
    return _register(_instance_destroyed, func)


def instance_destroyed(instance) -> None:
    for func in _instance_destroyed:
        func(instance)


def on_reconcile(func: Callable) -> Callable:
    return _register(_reconcile, func)


def reconcile(summary: dict) -> None:
    for func in _reconcile:
        func(summary)


_host_resolvers: list[Callable] = []


def on_instance_for_host(func: Callable) -> Callable:
    return _register(_host_resolvers, func)


def instance_for_host(host: str) -> str | None:
    for func in _host_resolvers:
        instance_id = func(host)
        if instance_id:
            return instance_id
    return None


_create_held_by: list[Callable] = []
_machine_ready: list[Callable] = []


def on_create_held_by(func: Callable) -> Callable:
    return _register(_create_held_by, func)


def create_held_by(operation) -> str | None:
    for func in _create_held_by:
        job_id = func(operation)
        if job_id:
            return job_id
    return None


def on_machine_ready(func: Callable) -> Callable:
    return _register(_machine_ready, func)


def machine_ready(instance) -> list[str]:
    """Run every `machine_ready` hook; returns what each reported (for the lifecycle log)."""
    return [note for note in (func(instance) for func in _machine_ready) if note]


_sandbox_binds: list[Callable] = []


def on_sandbox_binds(func: Callable) -> Callable:
    return _register(_sandbox_binds, func)


def sandbox_binds(*, instance_id: str, instance_pk: int) -> list[tuple[str, str, bool]]:
    """Every listener's binds for this instance's sandbox (see the module's docstring)."""
    binds: list[tuple[str, str, bool]] = []
    for func in _sandbox_binds:
        binds += func(instance_id=instance_id, instance_pk=instance_pk)
    return binds
