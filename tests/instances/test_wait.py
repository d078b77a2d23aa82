"""GET /instances/{id}/wait: returns on the state, times out with 408, 400 at a dead end."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from instances import lifecycle
from instances.models import Instance

from ..helpers import assert_error, assert_validation_error


def test_returns_at_once_when_already_there(api, running):
    started = time.monotonic()
    response = api.get("instances/web-01/wait", state="running", timeout=30)
    assert response.status_code == 200 and response.json()["state"] == "running"
    assert time.monotonic() - started < 2


def test_times_out_with_408(api, make_instance):
    make_instance(instance_id="slow-1", state="stopped")
    started = time.monotonic()
    response = api.get("instances/slow-1/wait", state="running", timeout=1)
    assert_error(response, 408, contains="timed out after 1s")
    assert 0.9 < time.monotonic() - started < 4


def test_dead_end_is_400(api, make_instance):
    make_instance(instance_id="broken-1", state="error")
    assert_error(api.get("instances/broken-1/wait", state="running", timeout=5), 400, contains="can no longer become running")
    assert api.get("instances/broken-1/wait", state="error", timeout=5).status_code == 200


@pytest.mark.parametrize("query", [{"state": "flying"}, {"timeout": "0"}, {"timeout": "301"}, {"timeout": "soon"}])
def test_query_validation(api, running, query):
    response = api.get("instances/web-01/wait", **query)
    key = next(iter(query))
    assert_validation_error(response, ("query", key))


@pytest.mark.django_db(transaction=True)
def test_wakes_up_when_the_state_changes(api_factory):
    """Another thread moves the instance to running; the waiter returns promptly, long before
    its timeout, and did not keep a database connection open while it waited."""
    api, instance = api_factory()
    results = {}

    def waiter():
        response = api.get(f"instances/{instance.instance_id}/wait", state="running", timeout=30)
        results["status"] = response.status_code
        results["state"] = response.json().get("state")
        results["elapsed"] = time.monotonic() - started
        connection.close()

    started = time.monotonic()
    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    locked = Instance.objects.get(pk=instance.pk)
    lifecycle.transition(locked, "running")  # outside a transaction: publishes at once
    thread.join(timeout=10)
    assert results == {"status": 200, "state": "running", "elapsed": results["elapsed"]}
    assert results["elapsed"] < 3


@pytest.fixture
def api_factory(transactional_db):
    from ..factories import ApiTokenFactory, InstanceFactory, MembershipFactory, TenantFactory, UserFactory
    from ..helpers import Api

    def make():
        user = UserFactory()
        tenant = TenantFactory()
        MembershipFactory(user=user, tenant=tenant)
        token = ApiTokenFactory(tenant=tenant, created_by=user)
        instance = InstanceFactory(tenant=tenant, instance_id="waiter-1", state="starting")
        return Api(token.plaintext, tenant=tenant, user=user), instance

    return make
