from __future__ import annotations

import pytest

from ..factories import InstanceFactory
from ..helpers import run_jobs


@pytest.fixture
def make_instance(tenant):
    def make(**kwargs):
        kwargs.setdefault("tenant", tenant)
        return InstanceFactory(**kwargs)

    return make


@pytest.fixture
def running(make_instance):
    return make_instance(instance_id="web-01", state="running")


@pytest.fixture
def live(api):
    """A real local instance (an agent process), created through the API and run by the worker."""

    def create(instance_id: str = "live-01", **body):
        response = api.post("instances", {"instance_id": instance_id, **body})
        assert response.status_code == 201, response.content
        run_jobs()
        record = api.get(f"instances/{instance_id}").json()
        assert record["state"] == "running", api.get(f"instances/{instance_id}/logs").json()
        return record

    return create
