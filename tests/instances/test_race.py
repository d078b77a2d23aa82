"""Requests racing for one instance on PostgreSQL: exactly one is accepted."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from orchestrio.models import SubscriptionPlan
from instances.models import Instance, Operation

from ..factories import ApiTokenFactory, InstanceFactory, MembershipFactory, TenantFactory, UserFactory
from ..helpers import Api

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _fire(n: int, request) -> Counter:
    """Run `request(i)` from n threads released together; count the statuses."""
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            status = request(i).status_code
        finally:
            connection.close()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return Counter(statuses)


@pytest.fixture
def tenant_token():
    user = UserFactory()
    tenant = TenantFactory(id="racers")
    MembershipFactory(user=user, tenant=tenant)
    return tenant, ApiTokenFactory(tenant=tenant, created_by=user).plaintext


def test_concurrent_lifecycle_requests_exactly_one_wins(tenant_token):
    tenant, token = tenant_token
    instance = InstanceFactory(tenant=tenant, instance_id="contested", state="running")
    verbs = ["stop", "restart", "suspend"]
    statuses = _fire(24, lambda i: Api(token).post(f"instances/contested/{verbs[i % 3]}"))
    assert statuses[202] == 1, statuses
    assert statuses[409] == 23, statuses
    assert Operation.objects.filter(instance=instance).count() == 1


def test_concurrent_destroy_and_stop(tenant_token):
    tenant, token = tenant_token
    InstanceFactory(tenant=tenant, instance_id="contested", state="running")
    statuses = _fire(10, lambda i: Api(token).delete("instances/contested") if i % 2 else Api(token).post("instances/contested/stop"))
    assert statuses[202] == 1, statuses
    assert statuses[409] + statuses[200] == 9, statuses  # 200: a later DELETE sees it already destroying


def test_concurrent_creates_of_one_id_exactly_one_wins(tenant_token):
    _, token = tenant_token
    statuses = _fire(12, lambda i: Api(token).post("instances", {"instance_id": "only-one"}))
    assert statuses == Counter({201: 1, 409: 11})
    assert Instance.objects.filter(instance_id="only-one").count() == 1


def test_concurrent_creates_respect_the_plan_limit(tenant_token):
    tenant, token = tenant_token
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_instances=3, max_running_instances=None)
    statuses = _fire(10, lambda i: Api(token).post("instances", {"instance_id": f"bulk-{i:02d}"}))
    assert statuses == Counter({201: 3, 402: 7})
    assert Instance.objects.filter(tenant=tenant).count() == 3


def test_one_unfinished_operation_is_also_a_database_constraint(tenant_token):
    from django.db import IntegrityError, transaction

    tenant, _ = tenant_token
    instance = InstanceFactory(tenant=tenant, instance_id="guarded", state="running")
    Operation.objects.create(instance=instance, tenant=tenant, kind="stop", requested_by="a", requested_by_type="user")
    with pytest.raises(IntegrityError), transaction.atomic():
        Operation.objects.create(instance=instance, tenant=tenant, kind="start", requested_by="b", requested_by_type="user")


def test_concurrent_fleet_requests_never_exceed_the_plan(tenant_token):
    """The pro plan runs 10: two requests of 6 at once — one is accepted whole, the other is 402
    with nothing created (each counts the batch with the tenant row locked)."""
    tenant, token = tenant_token
    statuses = _fire(2, lambda i: Api(token).post("requests", {"count": 6, "instance_id_prefix": f"race{i}"}))
    assert statuses == Counter({202: 1, 402: 1}), statuses
    assert Instance.objects.filter(tenant=tenant).count() == 6
