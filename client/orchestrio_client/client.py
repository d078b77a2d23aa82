"""`Client`: every API operation (generated, named by operationId) plus the few helpers a script
needs on top: `wait` for a state, `wait_task` / `follow_task` for a task, and `from_env`."""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

from . import errors
from ._base import BaseClient
from ._generated import GeneratedOperations, Instance, Task

FINISHED_TASK_STATUSES = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
LONG_POLL_MAX = 300  # seconds: the server's cap on one `wait` request


class Client(GeneratedOperations, BaseClient):
    """A client of one Orchestrio installation with one API token.

        from orchestrio_client import Client
        with Client("http://127.0.0.1:8000", "ork_live_…") as ork:
            ork.instances_create(instance_id="demo")
            ork.wait("demo", "running", timeout=120)
            for instance in ork.instances_list(state=["running"]):
                print(instance["instance_id"])
    """

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """A client for `ORK_URL` (default http://127.0.0.1:8000) and `ORK_TOKEN`."""
        return cls(os.environ.get("ORK_URL", "http://127.0.0.1:8000"), os.environ.get("ORK_TOKEN"), **kwargs)

    def wait(self, instance_id: str, state: str = "running", *, timeout: float = 300.0) -> Instance:
        """Block until the instance is in `state` and return its record (`GET …/wait`, long
        polls of at most 300 s chained up to `timeout`). Raises `WaitTimeout` (408) when
        `timeout` passes first and `BadRequest` (400) when the instance went to `error` or
        `destroyed` and can no longer get there."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(1, min(LONG_POLL_MAX, int(deadline - time.monotonic() + 0.999)))
            try:
                return self.instances_wait_retrieve(instance_id, state=state, timeout=left, request_timeout=left + self.timeout)
            except errors.WaitTimeout:
                if time.monotonic() >= deadline - 0.5:
                    raise

    def wait_task(self, task_id: str, *, timeout: float = 3600.0, interval: float = 1.0) -> Task:
        """Poll a task until it finishes (succeeded, failed, timed_out, cancelled); return it."""
        for task in self._poll_task(task_id, timeout=timeout, interval=interval):
            if task["status"] in FINISHED_TASK_STATUSES:
                return task
        raise AssertionError("unreachable")  # _poll_task raises on timeout

    def follow_task(self, task_id: str, *, timeout: float = 3600.0, interval: float = 1.0) -> Iterator[tuple[str, str]]:
        """Yield `("stdout"|"stderr", text)` as the task's output grows, until it finishes; the
        finished task is then available as `self.last_task`. The API keeps each stream's last
        64 KiB: output that scrolled out between two polls is not seen."""
        seen = {"stdout": "", "stderr": ""}
        for task in self._poll_task(task_id, timeout=timeout, interval=interval):
            for stream in ("stdout", "stderr"):
                text = task.get(stream) or ""
                old = seen[stream]
                if text.startswith(old):
                    new = text[len(old):]
                else:  # the window moved: show what is new past the overlap
                    new = _after_overlap(old, text)
                if new:
                    yield stream, new
                seen[stream] = text
            if task["status"] in FINISHED_TASK_STATUSES:
                self.last_task = task
                return

    def follow_app_logs(self, instance_id: str, *, tail: int = 100, stream: str | None = None, q: str | None = None,
                        timeout: float | None = None, interval: float = 1.0) -> Iterator[dict[str, Any]]:
        """Yield the instance's app log lines (`GET …/app-logs`): the last `tail`, then each new
        one as it is written (polling with `after`), until `timeout` seconds pass (None: until
        the instance stops being readable, which raises its `BadRequest`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        answer = self.instances_app_logs_retrieve(instance_id, tail=tail, stream=stream, q=q)
        while True:
            yield from answer["lines"]
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._sleep(interval)
            answer = self.instances_app_logs_retrieve(instance_id, after=answer["last_seq"], tail=1000, stream=stream, q=q)

    def _poll_task(self, task_id: str, *, timeout: float, interval: float) -> Iterator[Task]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.tasks_retrieve(task_id)
            yield task
            if task["status"] in FINISHED_TASK_STATUSES:
                return
            if time.monotonic() >= deadline:
                raise errors.OrchestrioError(f"task {task_id} still {task['status']} after {timeout:g}s")
            self._sleep(interval)

    last_task: Task | None = None


def _after_overlap(old: str, new: str) -> str:
    for size in range(min(len(old), len(new)), 0, -1):
        if old.endswith(new[:size]):
            return new[size:]
    return new


__all__ = ["Client", "FINISHED_TASK_STATUSES"]
