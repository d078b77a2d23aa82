from __future__ import annotations

import pytest
from rq import Worker

from orchestrio.redis import get_redis


@pytest.fixture
def registered_worker():
    import django_rq

    worker = Worker([django_rq.get_queue("default")], connection=get_redis())
    worker.register_birth()
    yield worker
    worker.register_death()


def test_healthy_when_everything_answers(client, db, registered_worker):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("status", "checks")} == {
        "status": "healthy",
        "checks": {"api": "ok", "database": "ok", "redis": "ok", "workers": "ok"},
    }
    # Whether local instances are sandboxed is said, and never fails the health check.
    assert set(body["sandbox"]) == {"enabled", "mode", "reason"}


def test_health_says_when_the_sandbox_is_off(client, db, registered_worker, monkeypatch):
    from instances.providers import sandbox

    monkeypatch.setattr(sandbox, "support", lambda: sandbox.Support(False, "off", "bubblewrap is not installed"))
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["sandbox"] == {"enabled": False, "mode": "off", "reason": "bubblewrap is not installed"}


def test_degraded_without_workers(client, db):
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["workers"] == "no workers running"
    assert body["checks"]["database"] == "ok"


def test_degraded_when_redis_is_unreachable(client, db, settings):
    # A port nothing listens on: the check must report it, not crash.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"].startswith("unavailable")
    assert body["checks"]["workers"].startswith("unknown")
    assert body["checks"]["database"] == "ok"


def test_degraded_when_the_database_fails(client, db, monkeypatch):
    from orchestrio import health

    class DownDatabase:
        def cursor(self):
            from django.db import OperationalError

            raise OperationalError("connection refused")

    monkeypatch.setattr(health, "connection", DownDatabase())
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable: OperationalError"


def test_health_is_public_and_not_rate_limited(client, db, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "public": "1/m", "read": "1/m"}
    for _ in range(5):
        response = client.get("/health")
        assert response.status_code in (200, 503)
        assert "X-RateLimit-Limit" not in response
