from __future__ import annotations

import os
import stat
import time

import pytest

from instances.models import Instance

from ..helpers import run_jobs
from ..instances.conftest import live, make_instance, running  # noqa: F401 - fixtures


@pytest.fixture
def script(api):
    """Write an executable script into a live instance's filesystem; returns its path there."""

    def write(instance_id: str, name: str, body: str) -> str:
        instance = Instance.objects.get(instance_id=instance_id, destroyed_at__isnull=True)
        root = os.path.join(instance.provider_data["dir"], "root")
        path = f"/opt/orchestrio/scripts/{name}"
        full = os.path.join(root, path.lstrip("/"))
        with open(full, "w") as fh:
            fh.write(body)
        os.chmod(full, os.stat(full).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    return write


def instance_root(instance_id: str) -> str:
    instance = Instance.objects.get(instance_id=instance_id, destroyed_at__isnull=True)
    return os.path.join(instance.provider_data["dir"], "root")


def instance_home(instance_id: str) -> str:
    """Where the instance's $HOME is on this host (tasks write there)."""
    instance = Instance.objects.get(instance_id=instance_id, destroyed_at__isnull=True)
    return os.path.join(instance.provider_data["dir"], "home")


def host_processes(*argv: str) -> list:
    """This host's processes running exactly `argv` (an instance's pids are its own namespace's)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] == list(argv) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.fixture
def dispatch(api):
    def go(instance_id: str, *, wait: bool = True, **body):
        body.setdefault("operation_code", "test")
        response = api.post(f"instances/{instance_id}/tasks", body)
        assert response.status_code in (200, 202), response.content
        if wait:
            run_jobs()
            return api.get(f"tasks/{response.json()['task_id']}").json()
        return response.json()

    return go


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
