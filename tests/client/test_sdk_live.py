"""The SDK end to end against a live server (issue 17): a full instance lifecycle and a task,
the error table as typed exceptions, Retry-After honoured and bounded, pagination, idempotency."""

from __future__ import annotations

import pytest

from orchestrio_client import (
    AuthenticationError,
    BadRequest,
    Client,
    Conflict,
    NotFound,
    PlanLimitError,
    RateLimited,
    ValidationError,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_lifecycle_and_a_task(ork, worker):
    created = ork.instances_create(instance_id="sdk-life", labels={"env": "ci"})
    assert created["state"] == "pending"
    assert ork.wait("sdk-life", "running", timeout=60)["state"] == "running"

    listed = ork.instances_list(label=["env:ci"])
    assert [i["instance_id"] for i in listed] == ["sdk-life"]
    assert ork.instances_retrieve("sdk-life")["health_status"] in ("healthy", "unknown")
    assert ork.instances_runtime_retrieve("sdk-life")["state"] == "running"
    assert any(line["stage"] for line in ork.instances_logs_list("sdk-life"))

    # A task: run it, follow its output, read its result.
    task = ork.instances_tasks_create(
        "sdk-life", operation_code="echo", script_path="/opt/orchestrio/scripts/echo-args.sh", script_args={"greeting": "hi"}
    )
    chunks = list(ork.follow_task(task["task_id"], timeout=30, interval=0.1))
    assert ork.last_task["status"] == "succeeded", ork.last_task
    assert "hi" in "".join(text for stream, text in chunks if stream == "stdout")
    assert ork.wait_task(task["task_id"])["exit_code"] == 0

    # Stop, start: each verb answers 202 with the record; the wait follows it.
    assert ork.instances_stop_create("sdk-life")["instance_id"] == "sdk-life"
    assert ork.wait("sdk-life", "stopped", timeout=30)["state"] == "stopped"
    with pytest.raises(BadRequest) as stopped:
        ork.instances_stop_create("sdk-life")  # wrong state: 400
    assert "stop" in stopped.value.message.lower() or stopped.value.detail
    ork.instances_start_create("sdk-life")
    ork.wait("sdk-life", "running", timeout=60)

    ops = ork.instances_operations_list("sdk-life")
    assert [op["kind"] for op in ops][:3] == ["start", "stop", "create"] or {"start", "stop"} <= {op["kind"] for op in ops}

    destroyed = ork.instances_destroy("sdk-life")
    assert destroyed["state"] == "destroying"
    ork.wait("sdk-life", "destroyed", timeout=30)
    with pytest.raises(NotFound):
        ork.instances_retrieve("sdk-life")


def test_typed_errors(ork, live_server):
    from orchestrio.models import Tenant

    with pytest.raises(NotFound) as missing:
        ork.instances_retrieve("no-such-instance")
    assert missing.value.status == 404 and missing.value.detail

    with pytest.raises(ValidationError) as invalid:
        ork.instances_create(instance_id="Not Valid!")
    assert invalid.value.status == 422
    assert any(issue["loc"][-1] == "instance_id" for issue in invalid.value.errors)

    with pytest.raises(AuthenticationError):
        Client(live_server.url, "ork_live_not-a-real-token").tenant_retrieve()

    # 409: the id is taken (a second create with another key).
    ork.instances_create(instance_id="sdk-taken")
    with pytest.raises(Conflict) as taken:
        ork.instances_create(instance_id="sdk-taken")
    assert taken.value.status == 409

    # 402: the starter plan's instance limit, with `limit` and `plan`.
    Tenant.objects.filter(pk="sdk-corp").update(plan_id="starter")
    with pytest.raises(PlanLimitError) as over:
        for n in range(ork.tenant_retrieve()["limits"]["instances"]):
            ork.instances_create(instance_id=f"sdk-fill-{n}")
    assert over.value.status == 402 and over.value.plan == "starter"
    assert over.value.limit in ("instances", "running_instances")


def test_idempotency_key_is_sent_and_replayed(ork, worker):
    first = ork.instances_create(instance_id="sdk-idem", idempotency_key="create-sdk-idem")
    again = ork.instances_create(instance_id="sdk-idem", idempotency_key="create-sdk-idem")
    assert again == first  # replayed, not a 409
    found = ork.instances_by_idempotency_key_retrieve("create-sdk-idem")
    assert found["found"] and found["instance_id"] == "sdk-idem"
    with pytest.raises(Conflict):
        ork.instances_create(instance_id="sdk-idem-2", idempotency_key="create-sdk-idem")  # same key, other body


def test_pagination_across_pages(ork, ork_tenant):
    tenant, owner, _ = ork_tenant
    from ..factories import ApiTokenFactory

    for n in range(6):
        ApiTokenFactory(tenant=tenant, created_by=owner, name=f"page token {n}")
    first = ork.api_tokens_list(limit=2)
    assert first.count == 7 and len(first.results) == 2 and first.next
    names = [token["name"] for token in first]  # iterating follows the pages
    assert len(names) == 7 and len(set(names)) == 7
    assert [len(page.results) for page in first.pages()] == [2, 2, 2, 1]


def test_rate_limit_retry_after_is_honoured_and_bounded(live_server, ork_token, settings):
    from orchestrio.redis import get_redis

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "2/m"}
    slept: list[float] = []

    def sleep_then_new_window(seconds: float) -> None:
        slept.append(seconds)
        get_redis().flushdb()  # what waiting Retry-After seconds would do: a fresh window

    with Client(live_server.url, ork_token, sleep=sleep_then_new_window) as ork:
        for _ in range(3):
            ork.tenant_retrieve()  # the third is limited, waited for and retried
    assert len(slept) == 1 and 0 < slept[0] <= 60

    # Bounded: a Retry-After beyond max_retry_wait raises at once, without sleeping.
    slept.clear()
    get_redis().flushdb()
    with Client(live_server.url, ork_token, sleep=slept.append, max_retry_wait=0) as ork:
        ork.tenant_retrieve(), ork.tenant_retrieve()
        with pytest.raises(RateLimited) as limited:
            ork.tenant_retrieve()
    assert limited.value.retry_after and limited.value.retry_after > 0 and slept == []

    # And at most max_retries retries, each after Retry-After.
    with Client(live_server.url, ork_token, sleep=slept.append, max_retries=2) as ork:
        with pytest.raises(RateLimited):
            ork.tenant_retrieve()
    assert len(slept) == 2 and all(0 < s <= 60 for s in slept)
