"""Rate-limit counters live in Redis, so two server processes share them."""

from __future__ import annotations

import httpx
import pytest

from ..factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from ..processes import child_env, real_redis_url, server_process  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_429_is_shared_across_two_processes(real_redis_url):  # noqa: F811
    import redis

    redis.Redis.from_url(real_redis_url).flushdb()
    user = UserFactory()
    tenant = TenantFactory(id="ratelimited")
    MembershipFactory(user=user, tenant=tenant)
    token = ApiTokenFactory(tenant=tenant, created_by=user)
    headers = {"Authorization": f"Bearer {token.plaintext}"}

    env = child_env(real_redis_url, RATE_LIMIT_READ="4/m")
    with server_process(env) as first, server_process(env) as second:
        statuses = []
        for base in (first, second, first, second, first, second):
            statuses.append(httpx.get(f"{base}/api/v1/tenant", headers=headers, timeout=10).status_code)
        last = httpx.get(f"{second}/api/v1/tenant", headers=headers, timeout=10)
    assert statuses[:4] == [200, 200, 200, 200]
    assert statuses[4:] == [429, 429]
    assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1
