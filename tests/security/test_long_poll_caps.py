"""Issue 14, finding 4: long polls cannot exhaust the server. 16 open waits from one token used
to take every thread of `make run` (waitress), and `/health` waited for them. Open waits are
capped per token, per tenant and per server process (which keeps LONG_POLL_RESERVED_THREADS for
everything else), beyond which they get 429; the count lives in Redis, shared by every process.

The first test does it for real: a `manage.py serve` process (waitress) or gunicorn with gthread
workers, each with 8 threads, and more waits
than the caps allow, sent at once from threads; the extra waits are refused, and `/health`,
another tenant and the waiting tenant's own other requests are served while the rest wait. The
others drive `long_poll_slot` itself.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from instances.lifecycle import channel
from instances.models import Instance
from orchestrio import longpoll
from orchestrio.errors import TooManyRequests
from orchestrio.tenancy import Principal

from ..factories import ApiTokenFactory, InstanceFactory, MembershipFactory, TenantFactory, UserFactory
from ..helpers import Api, assert_error
from ..processes import child_env, free_port, gunicorn_process, real_redis_url, server_process, wait_http, worker_process  # noqa: F401 - fixture


def _tenant(tenant_id: str, tokens: int):
    user = UserFactory(username=f"owner@{tenant_id}.example")
    tenant = TenantFactory(id=tenant_id)
    MembershipFactory(user=user, tenant=tenant, role="owner")
    made = [ApiTokenFactory(tenant=tenant, created_by=user, role="owner") for _ in range(tokens)]
    instance = InstanceFactory(tenant=tenant, instance_id=f"{tenant_id}-web", state="starting")
    return tenant, made, instance


@contextmanager
def web_server(kind: str, env: dict[str, str]):
    """`make run`'s server (waitress, with its worker), or production's (the Procfile's gunicorn
    with gthread workers, which reads gunicorn.conf.py, and an rqworker), with 8 threads."""
    if kind == "waitress":
        with server_process(env, worker=True, threads=8) as base:
            yield base
        return
    port = free_port()
    web, worker = gunicorn_process(env, port, workers=1), worker_process(env)
    try:
        web.start()
        worker.start()
        wait_http(f"http://127.0.0.1:{port}", web)
        yield f"http://127.0.0.1:{port}"
    finally:
        web.close()
        worker.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", ["waitress", "gunicorn"])
def test_waits_beyond_the_caps_get_429_and_everyone_else_is_still_served(real_redis_url, server):  # noqa: F811
    import redis

    redis.Redis.from_url(real_redis_url).flushdb()
    _, (a1, a2, a3), a_instance = _tenant("tenant-a", 3)
    _, (b1, b2), b_instance = _tenant("tenant-b", 2)
    _, (c1,), c_instance = _tenant("tenant-c", 1)
    env = child_env(
        real_redis_url, LONG_POLL_MAX_PER_PRINCIPAL="2", LONG_POLL_MAX_PER_TENANT="4", LONG_POLL_RESERVED_THREADS="2",
    )  # fmt: skip

    # 8 threads, 2 reserved: the server holds at most 6 waits. Tenant A sends 7 (at most 4 held,
    # at most 2 per token), tenant B 3: whatever the order, 6 are held and 4 refused.
    sends = [(a1, a_instance)] * 3 + [(a2, a_instance)] * 3 + [(a3, a_instance)] + [(b1, b_instance)] * 2 + [(b2, b_instance)]
    with web_server(server, env) as base, ThreadPoolExecutor(max_workers=len(sends)) as pool:

        def get(token, path, **params):
            return httpx.get(f"{base}/api/v1/{path}" if path != "/health" else f"{base}/health", params=params,
                             headers={"Authorization": f"Bearer {token.plaintext}"}, timeout=60)  # fmt: skip

        waits = [pool.submit(get, token, f"instances/{instance.instance_id}/wait", state="running", timeout=60) for token, instance in sends]
        deadline = time.monotonic() + 30
        while sum(w.done() for w in waits) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        refused = [w.result() for w in waits if w.done()]
        assert [r.status_code for r in refused] == [429] * 4, [(r.status_code, r.text[:200]) for r in refused]
        for response in refused:
            assert int(response.headers["Retry-After"]) >= 1 and "long polls" in response.json()["detail"]
        time.sleep(1)  # the held waits stay held
        assert sum(w.done() for w in waits) == 4

        # While 6 of the server's 8 threads wait: /health, another tenant (several requests at
        # once, more than the 2 free threads) and the waiting tenants' other requests are served.
        others = [pool.submit(get, c1, "/health") for _ in range(3)]
        others += [pool.submit(get, c1, "instances") for _ in range(4)]
        others += [pool.submit(get, c1, f"instances/{c_instance.instance_id}"), pool.submit(get, a1, "tenant"), pool.submit(get, b2, "instances")]
        assert [f.result().status_code for f in others] == [200] * len(others)
        # The server is full: another tenant's wait is refused too, saying why.
        full = get(c1, f"instances/{c_instance.instance_id}/wait", state="running", timeout=5)
        assert full.status_code == 429 and "this server" in full.json()["detail"]

        # The instances start: every held wait answers 200, and their slots are free again.
        Instance.objects.filter(pk__in=[a_instance.pk, b_instance.pk]).update(state="running")
        publisher = redis.Redis.from_url(real_redis_url)
        for instance in (a_instance, b_instance):
            publisher.publish(channel(instance.pk), "running")
        held = [w.result(timeout=30) for w in waits if w.result(timeout=30).status_code != 429]
        assert [r.status_code for r in held] == [200] * 6
        assert get(c1, f"instances/{c_instance.instance_id}/wait", state="running", timeout=1).status_code == 408
        assert get(a1, f"instances/{c_instance.instance_id}/wait", state="running", timeout=1).status_code == 404


# --- long_poll_slot itself ------------------------------------------------------------------------


@pytest.fixture
def principals(db):
    def make(tenant_id: str, count: int = 1) -> list[Principal]:
        user = UserFactory(username=f"u@{tenant_id}.example")
        tenant = TenantFactory(id=tenant_id)
        MembershipFactory(user=user, tenant=tenant)
        return [Principal(tenant=tenant, role="owner", user=user, token=ApiTokenFactory(tenant=tenant, created_by=user)) for _ in range(count)]

    return make


@pytest.fixture
def caps(settings):
    settings.LONG_POLL_MAX_PER_PRINCIPAL = 2
    settings.LONG_POLL_MAX_PER_TENANT = 3
    yield settings
    longpoll.set_server_threads(None)


def test_per_principal_and_per_tenant_caps(principals, caps):
    first, second = principals("caps-a", 2)
    (elsewhere,) = principals("caps-b")
    with ExitStack() as held:
        for _ in range(2):
            held.enter_context(longpoll.long_poll_slot(first, "wait"))
        with pytest.raises(TooManyRequests, match="this API token already holds 2"):
            held.enter_context(longpoll.long_poll_slot(first, "wait"))
        held.enter_context(longpoll.long_poll_slot(second, "wait"))
        with pytest.raises(TooManyRequests, match="tenant caps-a already holds 3"):
            held.enter_context(longpoll.long_poll_slot(second, "log follow"))
        held.enter_context(longpoll.long_poll_slot(elsewhere, "wait"))  # another tenant is unaffected
    # All released: the same principal may take its two again.
    with longpoll.long_poll_slot(first, "wait"), longpoll.long_poll_slot(first, "wait"):
        pass


def test_a_console_user_is_a_principal_of_its_own(principals, caps):
    (token_principal,) = principals("caps-c")
    user_principal = Principal(tenant=token_principal.tenant, role="owner", user=token_principal.user)
    with longpoll.long_poll_slot(token_principal, "wait"), longpoll.long_poll_slot(token_principal, "wait"):
        with longpoll.long_poll_slot(user_principal, "wait"):
            with pytest.raises(TooManyRequests, match="you \\(this console user\\)"):
                caps.LONG_POLL_MAX_PER_PRINCIPAL = 1
                with longpoll.long_poll_slot(user_principal, "wait"):
                    pass


def test_the_process_keeps_its_reserve(principals, caps):
    caps.LONG_POLL_RESERVED_THREADS = 4
    longpoll.set_server_threads(6)  # 2 for long polls
    (a,) = principals("proc-a")
    (b,) = principals("proc-b")
    with longpoll.long_poll_slot(a, "wait"), longpoll.long_poll_slot(b, "wait"):
        with pytest.raises(TooManyRequests, match="this server is holding as many long polls and streams as it allows \\(2\\)"):
            with longpoll.long_poll_slot(b, "wait"):
                pass
    with longpoll.long_poll_slot(a, "wait"), longpoll.long_poll_slot(b, "wait"):
        pass  # released
    longpoll.set_server_threads(4)
    with pytest.raises(TooManyRequests):
        with longpoll.long_poll_slot(a, "wait"):
            pass


def test_a_slot_is_released_when_its_request_fails(principals, caps):
    (a,) = principals("fail-a")
    for _ in range(3):
        with pytest.raises(RuntimeError):
            with longpoll.long_poll_slot(a, "wait"):
                raise RuntimeError("the wait failed")
    with longpoll.long_poll_slot(a, "wait"), longpoll.long_poll_slot(a, "wait"):
        pass


def test_racing_threads_never_pass_the_cap_together(principals, caps, transactional_db):
    (a,) = principals("race-a")
    admitted, refused = [], []
    start, release = threading.Barrier(20), threading.Event()

    def attempt():
        start.wait()
        try:
            with longpoll.long_poll_slot(a, "wait"):
                admitted.append(1)
                release.wait(10)
        except TooManyRequests:
            refused.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(admitted) + len(refused) < 20 and len(refused) < 18 and time.monotonic() < deadline:
        time.sleep(0.02)
    release.set()
    for thread in threads:
        thread.join(10)
    assert (len(admitted), len(refused)) == (2, 18)


def test_a_killed_processs_slots_end_with_their_lease(principals, caps):
    """A process killed mid-wait never releases its slot: the lease ends it. A live holder renews
    its lease while it waits, and keeps the slot."""
    caps.LONG_POLL_LEASE_SECONDS = 1
    caps.LONG_POLL_MAX_PER_PRINCIPAL = 1
    (a,) = principals("lease-a")
    (b,) = principals("lease-b")
    dead = longpoll.long_poll_slot(a, "wait")
    dead.__enter__()  # never left while its process "lives": it was killed
    renewing = longpoll.long_poll_slot(b, "wait")
    slot = renewing.__enter__()
    with pytest.raises(TooManyRequests):
        with longpoll.long_poll_slot(a, "wait"):
            pass
    for _ in range(6):
        time.sleep(0.25)
        slot.renew()
    with longpoll.long_poll_slot(a, "wait"):  # the dead holder's lease has ended
        pass
    with pytest.raises(TooManyRequests):
        with longpoll.long_poll_slot(b, "wait"):  # the live one kept its slot
            pass
    renewing.__exit__(None, None, None)
    dead.__exit__(None, None, None)  # (this process's own count)


def test_without_redis_only_the_process_cap_applies(principals, caps, monkeypatch):
    import redis

    class Down:
        def register_script(self, source):
            def run(**kwargs):
                raise redis.ConnectionError("Redis is down")

            return run

    monkeypatch.setattr(longpoll, "get_redis", lambda: Down())
    caps.LONG_POLL_RESERVED_THREADS = 1
    longpoll.set_server_threads(4)
    (a,) = principals("down-a")
    with longpoll.long_poll_slot(a, "wait"), longpoll.long_poll_slot(a, "wait"), longpoll.long_poll_slot(a, "wait"):
        with pytest.raises(TooManyRequests, match="this server"):
            with longpoll.long_poll_slot(a, "wait"):
                pass


# --- the wait endpoint ----------------------------------------------------------------------------


def test_a_wait_beyond_the_cap_is_429_with_retry_after(api, token, tenant, caps):
    InstanceFactory(tenant=tenant, instance_id="capped-1", state="starting")
    caps.LONG_POLL_MAX_PER_PRINCIPAL = 1
    principal = Principal(tenant=tenant, role="owner", token=token)
    with longpoll.long_poll_slot(principal, "wait"):
        response = api.get("instances/capped-1/wait", state="running", timeout=5)
        assert_error(response, 429, contains="already holds 1 open long polls")
        assert response["Retry-After"] == str(longpoll.RETRY_AFTER_SECONDS)
        # A wait that can answer at once takes no slot.
        assert api.get("instances/capped-1/wait", state="starting", timeout=5).status_code == 200
    assert api.get("instances/capped-1/wait", state="running", timeout=1).status_code == 408


def test_another_token_of_the_tenant_may_still_wait(api, token, tenant, owner, caps):
    InstanceFactory(tenant=tenant, instance_id="capped-2", state="starting")
    caps.LONG_POLL_MAX_PER_PRINCIPAL = 1
    with longpoll.long_poll_slot(Principal(tenant=tenant, role="owner", token=token), "wait"):
        other = Api(ApiTokenFactory(tenant=tenant, created_by=owner).plaintext)
        assert other.get("instances/capped-2/wait", state="running", timeout=1).status_code == 408
