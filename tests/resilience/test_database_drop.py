"""PostgreSQL goes away under a running server: every API request answers 503 JSON with
Retry-After (never a 500 page), the console a 503 page, and once the database is back the next
requests succeed without a restart."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from django.db import connection

from instances.lifecycle import channel
from instances.models import Instance

from ..factories import InstanceFactory
from ..processes import TcpProxy, child_env, database_url, server_process

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def db_proxy():
    settings = connection.settings_dict
    proxy = TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    yield proxy
    proxy.close()


def _assert_503_json(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "database unavailable; retry shortly"}
    assert int(response.headers["Retry-After"]) > 0


def test_database_dropped_mid_request_is_a_503_json_and_recovers(db_proxy, redis_server, client_for):
    url = urlsplit(database_url())
    via_proxy = url._replace(netloc=f"{url.username}@127.0.0.1:{db_proxy.port}").geturl()
    with server_process(child_env(redis_server.url, DATABASE_URL=via_proxy)) as base:
        client = client_for(base, "db-drop")
        instance = InstanceFactory(tenant_id="db-drop", instance_id="waiter-01", state="starting")
        assert client.get("instances").status_code == 200  # the server now holds a connection
        browser = httpx.Client(base_url=base, timeout=10)
        csrf = browser.get("/login").cookies["csrftoken"]

        # Mid-request: a long-poll is waiting (its first read done) when the database goes away.
        results = {}
        waiter = threading.Thread(target=lambda: results.setdefault("wait", client.get("instances/waiter-01/wait", params={"state": "running", "timeout": 8})))
        waiter.start()
        time.sleep(1.0)
        db_proxy.cut()
        Instance.objects.filter(pk=instance.pk).update(state="running")
        redis.Redis.from_url(redis_server.url).publish(channel(instance.pk), "running")  # wakes it to re-read
        waiter.join(timeout=30)
        _assert_503_json(results["wait"])

        # Every kind of request while it is away: 503 JSON, nothing half-written.
        _assert_503_json(client.get("instances"))
        _assert_503_json(client.post("instances", json={"instance_id": "during-outage"}))
        console = browser.post("/login", data={"username": "someone@example.com", "password": "x", "csrfmiddlewaretoken": csrf})
        assert console.status_code == 503 and "temporarily unavailable" in console.text.lower()
        assert int(console.headers["Retry-After"]) > 0

        db_proxy.restore()
        assert client.get("instances").status_code == 200
        assert client.get("instances/waiter-01").json()["state"] == "running"
        assert not Instance.objects.filter(instance_id="during-outage").exists()
