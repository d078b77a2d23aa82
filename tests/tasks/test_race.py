from __future__ import annotations

from collections import Counter

import pytest

from tasks.models import Task

from ..factories import InstanceFactory
from ..helpers import Api
from ..instances.test_race import _fire, tenant_token  # noqa: F401 - fixture

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_concurrent_dispatches_exactly_one_runs(tenant_token):  # noqa: F811
    tenant, token = tenant_token
    InstanceFactory(tenant=tenant, instance_id="busy-host", state="running")
    body = {"operation_code": "race", "script_path": "/opt/orchestrio/scripts/backup.sh"}
    statuses = _fire(20, lambda i: Api(token).post("instances/busy-host/tasks", body))
    assert statuses == Counter({202: 1, 409: 19})
    assert Task.objects.count() == 1


def test_concurrent_dispatches_with_one_idempotency_key(tenant_token):  # noqa: F811
    tenant, token = tenant_token
    InstanceFactory(tenant=tenant, instance_id="busy-host", state="running")
    body = {"operation_code": "race", "script_path": "/opt/orchestrio/scripts/backup.sh", "idempotency_key": "same"}
    statuses = _fire(10, lambda i: Api(token).post("instances/busy-host/tasks", body))
    assert statuses == Counter({202: 1, 200: 9})
    assert Task.objects.count() == 1
