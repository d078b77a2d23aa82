"""Test helpers: an API client that behaves like a real deployment, and run-the-queue."""

from __future__ import annotations

import json
from typing import Any

import django_rq
from django.test import Client, TestCase
from rest_framework.test import APIClient


class Api:
    """A JSON client for /api/v1 with a bearer token.

    Each request runs the on-commit callbacks its transaction registered (as a real commit
    would), so jobs are enqueued exactly as in production; `run_jobs()` then works them off.
    """

    def __init__(self, token: str | None = None, *, tenant=None, user=None, client: APIClient | None = None):
        self.client = client or APIClient()
        self.token = token
        self.tenant = tenant
        self.user = user

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = {}
        if self.token:
            merged["HTTP_AUTHORIZATION"] = f"Bearer {self.token}"
        for name, value in (headers or {}).items():
            merged["HTTP_" + name.upper().replace("-", "_")] = value
        return merged

    def request(self, method: str, path: str, data: Any = None, headers: dict[str, str] | None = None, raw: str | None = None, **query):
        if not path.startswith("/"):
            path = "/api/v1/" + path
        kwargs = self._headers(headers)
        call = getattr(self.client, method.lower())
        with TestCase.captureOnCommitCallbacks(execute=True):
            if method.upper() == "GET":
                return call(path, data or query or None, **kwargs)
            if raw is not None:
                return call(path, raw, content_type="application/json", **kwargs)
            body = json.dumps(data) if data is not None else None
            return call(path, body, content_type="application/json", **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, data=None, **kw):
        return self.request("POST", path, data, **kw)

    def put(self, path, data=None, **kw):
        return self.request("PUT", path, data, **kw)

    def patch(self, path, data=None, **kw):
        return self.request("PATCH", path, data, **kw)

    def delete(self, path, data=None, **kw):
        return self.request("DELETE", path, data, **kw)


def run_jobs(max_jobs: int | None = None, queues: tuple[str, ...] = ("default", "periodic")) -> int:
    """Work off queued jobs in this process (like a worker would), running their on-commit hooks."""
    from orchestrio.worker import SimpleWorker

    done = 0
    while True:
        queue_objs = [django_rq.get_queue(name) for name in queues]
        if not any(q.count for q in queue_objs):
            return done
        worker = SimpleWorker(queue_objs, connection=queue_objs[0].connection)
        with TestCase.captureOnCommitCallbacks(execute=True):
            worker.work(burst=True, max_jobs=1, logging_level="WARNING")
        done += 1
        if max_jobs is not None and done >= max_jobs:
            return done


def assert_error(response, status: int, *, contains: str | None = None) -> dict:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.content[:500]!r}"
    body = response.json()
    assert "detail" in body, body
    if contains is not None:
        text = json.dumps(body["detail"])
        assert contains.lower() in text.lower(), f"{contains!r} not in {text}"
    return body


def assert_validation_error(response, *locs: tuple) -> list[dict]:
    """422 with the API.md shape, with an issue at each given `loc`."""
    body = assert_error(response, 422)
    detail = body["detail"]
    assert isinstance(detail, list) and detail, body
    for issue in detail:
        assert set(issue) == {"loc", "msg", "type"}, issue
    seen = [tuple(issue["loc"]) for issue in detail]
    for loc in locs:
        assert tuple(loc) in seen, f"{loc} not in {seen}"
    return detail


def call_job(func, *args, **kwargs):
    """Call a job function directly, as a worker would: its on-commit hooks run when it returns."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return func(*args, **kwargs)


class BackgroundWorker:
    """A worker in a thread, as `manage.py serve` runs one (for browser and live-server tests).

    It also runs what serve's scheduler would for waits a job handed off (an instance's health
    path, a long task): the sweeps that finish them, each turn. The other periodic jobs are left
    to the tests that call them."""

    SWEEPS = ("instances.jobs.readiness_sweep", "tasks.jobs.poll_due_tasks")

    def __init__(self, interval: float = 0.2) -> None:
        import threading

        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-worker", daemon=True)

    def _run(self) -> None:
        from django.db import connection
        from django.utils.module_loading import import_string
        from rq.timeouts import TimerDeathPenalty

        from orchestrio.worker import SimpleWorker

        class ThreadWorker(SimpleWorker):
            death_penalty_class = TimerDeathPenalty

            def _install_signal_handlers(self):
                pass

        sweeps = [import_string(path) for path in self.SWEEPS]
        try:
            while not self.stop.is_set():
                for sweep in sweeps:
                    sweep()
                queues = [django_rq.get_queue(name) for name in ("default", "periodic")]
                if any(q.count for q in queues):
                    ThreadWorker(queues, connection=queues[0].connection).work(burst=True, logging_level="WARNING")
                self.stop.wait(self.interval)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


class CommitClient(Client):
    """Django's test client whose requests run their on-commit hooks (enqueue jobs) as a real
    request's commit would."""

    def request(self, **request):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().request(**request)


def local_instance(instance_id: str):
    """The live local instance's row (with its directory in provider_data["dir"])."""
    from instances.models import Instance

    return Instance.objects.select_related("blueprint").get(instance_id=instance_id, destroyed_at__isnull=True)


def local_pid(instance_id: str) -> int:
    """The pid of the local instance's process tree (its sandbox), as the provider recorded it."""
    import os

    with open(os.path.join(local_instance(instance_id).provider_data["dir"], "process.json")) as fh:
        return json.load(fh)["pid"]


def instance_http(instance_id: str, *, timeout: float = 2.0, gateway_key: bool = True):
    """An httpx client talking straight to the instance's agent (its unix socket), presenting the
    gateway key as the control plane's probes do."""
    from instances.agent_client import GATEWAY_HEADER, endpoint_for, gateway_key_for

    instance = local_instance(instance_id)
    client = endpoint_for(instance).client(timeout=timeout)
    if gateway_key:
        client.headers[GATEWAY_HEADER] = gateway_key_for(instance.agent_key_encrypted)
    return client


def run_in_instance(api, instance_id: str, body: str, *, name: str = "probe.sh", timeout_seconds: int = 30) -> dict:
    """Run a shell script inside the live local instance (as one of its tasks, through the API)
    and return the finished task: what the instance itself can see and do."""
    import os
    import stat

    path = f"/opt/orchestrio/scripts/{name}"
    full = os.path.join(local_instance(instance_id).provider_data["dir"], "root", path.lstrip("/"))
    with open(full, "w") as fh:
        fh.write("#!/bin/sh\n" + body)
    os.chmod(full, os.stat(full).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    response = api.post(f"instances/{instance_id}/tasks", {"operation_code": "probe", "script_path": path, "timeout_seconds": timeout_seconds})
    assert response.status_code in (200, 202), response.content
    run_jobs()
    return api.get(f"tasks/{response.json()['task_id']}").json()
