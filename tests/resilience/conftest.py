"""A whole deployment in processes: a private Redis the test can kill, the web tier, rqworkers
and the scheduler exactly as the Procfile runs them, all on the test database."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from ..factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from ..processes import ManagedProcess, RedisServer, child_env, free_port, gunicorn_process, scheduler_process, server_process, wait_http, worker_process

FAST = {
    # The reconciler every second; work with no live job is re-enqueued after a second.
    "RECONCILER_INTERVAL_SECONDS": "1",
    "RECONCILER_QUEUE_GRACE_SECONDS": "1",
    "OPERATION_LEASE_SECONDS": "2",
    "HEALTH_CHECK_INTERVAL_SECONDS": "3600",
    "INSTANCE_READY_TIMEOUT_SECONDS": "20",
    "LOCAL_STOP_GRACE_SECONDS": "1",
    "TASK_POLL_SECONDS": "0.1",
    **{f"RATE_LIMIT_{name}": "100000/m" for name in ("WRITE", "LIFECYCLE", "DOMAIN_READ", "READ", "PUBLIC", "AUTH_FAILURE", "GATEWAY")},
}


class Stack:
    def __init__(self, redis: RedisServer, env: dict[str, str]) -> None:
        self.redis = redis
        self.env = env
        self.workers: list[ManagedProcess] = []
        self.scheduler: ManagedProcess | None = None
        self.web: ManagedProcess | None = None
        self.base = ""
        self._serve = None

    def start(self, *, workers: int = 1, worker_env: dict[str, str] | None = None, gunicorn: bool = False) -> Stack:
        if gunicorn:
            port = free_port()
            self.web = gunicorn_process(self.env, port).start()
            self.base = f"http://127.0.0.1:{port}"
            wait_http(self.base, self.web)
        else:
            self._serve = server_process(self.env)
            self.base = self._serve.__enter__()
        for _ in range(workers):
            self.workers.append(worker_process({**self.env, **(worker_env or {})}).start())
        self.scheduler = scheduler_process(self.env).start()
        return self

    def supervise(self) -> None:
        """What systemd or a container runtime does: restart a worker that died."""
        for worker in self.workers:
            worker.ensure_running()
        if self.scheduler is not None:
            self.scheduler.ensure_running()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in [*self.workers, *([self.scheduler] if self.scheduler else [])])
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
            self.supervise()
            time.sleep(0.2)

    def close(self) -> None:
        processes = [proc for proc in [*self.workers, self.scheduler, self.web] if proc is not None]
        for proc in processes:  # all told to stop first: their shutdowns overlap, not add up
            proc.terminate()
        for proc in processes:
            proc.close()
        if self._serve is not None:
            self._serve.__exit__(None, None, None)


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def stack(redis_server, transactional_db):
    created = []

    def build(**extra_env: str) -> Stack:
        s = Stack(redis_server, child_env(redis_server.url, **{**FAST, **extra_env}))
        created.append(s)
        return s

    yield build
    for s in created:
        s.close()


@pytest.fixture
def client_for(transactional_db):
    """An httpx client with a fresh tenant's owner token, against a stack's base URL."""

    def make(base: str, tenant_id: str = "resilient") -> httpx.Client:
        user = UserFactory()
        tenant = TenantFactory(id=tenant_id)
        MembershipFactory(user=user, tenant=tenant, role="owner")
        token = ApiTokenFactory(tenant=tenant, created_by=user, role="owner")
        return httpx.Client(base_url=f"{base}/api/v1/", headers={"Authorization": f"Bearer {token.plaintext}"}, timeout=30)

    return make
