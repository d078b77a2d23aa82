"""`/metrics`: off by default, guarded by a token and an address list, and reporting requests,
queues, operations, tasks, instances and the periodic jobs in the Prometheus text format."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from instances.jobs import health_sweep, reconcile
from instances.models import Operation
from orchestrio.queue import enqueue

from ..factories import InstanceFactory
from ..helpers import assert_error, call_job


@pytest.fixture
def metrics_on(settings, db):
    settings.METRICS_ENABLED = True
    settings.METRICS_TOKEN = None
    settings.METRICS_ALLOWED_IPS = []
    return settings


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def value(families: dict, family: str, sample: str | None = None, **labels) -> float | None:
    """The value of the one sample of `family` named `sample` (default: the family's name) with
    exactly these labels (beyond any others it carries), or None when there is none."""
    if family not in families:
        return None
    found = [
        s.value
        for s in families[family].samples
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_off_by_default_is_a_json_404(client, db, settings):
    assert settings.METRICS_ENABLED is False
    assert_error(client.get("/metrics"), 404)


def test_token_is_required_when_set(client, metrics_on):
    metrics_on.METRICS_TOKEN = "scrape-secret"
    response = client.get("/metrics")
    assert_error(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"
    assert_error(client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secreT"), 401)
    assert_error(client.get("/metrics", HTTP_AUTHORIZATION="scrape-secret"), 401)
    assert "orchestrio_redis_up" in scrape(client, HTTP_AUTHORIZATION="Bearer scrape-secret")


def test_only_listed_addresses_may_scrape(client, metrics_on):
    metrics_on.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert_error(client.get("/metrics"), 403)  # the test client is 127.0.0.1
    metrics_on.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "127.0.0.1"]
    scrape(client)


def test_reachable_by_ip_over_plain_http_with_direct_ip_denied(client, metrics_on):
    metrics_on.DENY_DIRECT_IP = True
    metrics_on.SECURE_SSL_REDIRECT = True  # as in production (SECURE_REDIRECT_EXEMPT is the real one)
    scrape(client, HTTP_HOST="127.0.0.1")
    assert client.get("/api/v1/plans", HTTP_HOST="127.0.0.1").status_code == 403


def test_requests_are_counted_by_url_pattern_not_path(client, api, metrics_on):
    before = scrape(client)
    for _ in range(3):
        assert api.get("instances").status_code == 200
    assert api.get("instances/no-such-one").status_code == 404
    after = scrape(client)

    name = "orchestrio_http_request_duration_seconds"
    labels = {"method": "GET", "route": "api:instance-list", "status": "2xx"}
    assert (value(after, name, name + "_count", **labels) or 0) - (value(before, name, name + "_count", **labels) or 0) == 3
    assert value(after, name, name + "_bucket", le="+Inf", **labels) == value(after, name, name + "_count", **labels)
    assert value(after, name, name + "_count", method="GET", route="api:instance-detail", status="4xx") >= 1
    routes = {s.labels["route"] for s in after[name].samples}
    assert "metrics" in routes  # scrapes count too, under their pattern's name
    assert not [route for route in routes if route.startswith("/") or "no-such-one" in route]


def test_queue_depth_reflects_enqueued_jobs(client, metrics_on):
    # The queues' series are django-rq's (RQCollector): rq_jobs by queue and status.
    assert value(scrape(client), "rq_jobs", queue="default", status="queued") == 0
    for _ in range(2):
        enqueue("orchestrio.jobs.purge_idempotency_keys")
    enqueue("orchestrio.jobs.purge_idempotency_keys", queue="periodic")
    families = scrape(client)
    assert value(families, "orchestrio_redis_up") == 1
    assert value(families, "rq_jobs", queue="default", status="queued") == 2
    assert value(families, "rq_jobs", queue="periodic", status="queued") == 1
    assert value(families, "rq_jobs", queue="default", status="failed") == 0
    assert "rq_workers" in families


def test_redis_down_still_answers_with_the_database_figures(client, metrics_on, monkeypatch):
    import django_rq.settings

    dead = "redis://127.0.0.1:1/0"  # nothing listens there
    metrics_on.REDIS_URL = dead
    monkeypatch.setattr(django_rq.settings, "QUEUES", {name: {"URL": dead} for name in metrics_on.RQ_QUEUES})
    families = scrape(client)
    assert value(families, "orchestrio_redis_up") == 0
    assert "rq_jobs" not in families
    assert value(families, "orchestrio_database_up") == 1
    assert value(families, "orchestrio_instances", state="running") == 0


def test_database_down_still_answers_with_the_redis_figures(client, metrics_on, monkeypatch):
    from django.db import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(Operation.objects, "order_by", refuse)
    families = scrape(client)
    assert value(families, "orchestrio_database_up") == 0
    assert "orchestrio_operations" not in families
    assert value(families, "rq_jobs", queue="default", status="queued") == 0


def test_operations_tasks_and_instances_reflect_the_database(client, metrics_on):
    running = InstanceFactory.create_batch(2, state="running", health_status="healthy")
    stopped = InstanceFactory(state="stopped", tenant=running[0].tenant)
    for instance, kind, status in [
        (running[0], "create", "succeeded"),
        (running[1], "create", "succeeded"),
        (stopped, "stop", "failed"),
        (stopped, "start", "queued"),
    ]:
        Operation.objects.create(instance=instance, tenant=instance.tenant, kind=kind, status=status, requested_by="test", requested_by_type="token")

    families = scrape(client)
    assert value(families, "orchestrio_database_up") == 1
    assert value(families, "orchestrio_operations", kind="create", status="succeeded") == 2
    assert value(families, "orchestrio_operations", kind="stop", status="failed") == 1
    assert value(families, "orchestrio_operations", kind="start", status="queued") == 1
    assert value(families, "orchestrio_operations", kind="destroy", status="running") == 0
    assert value(families, "orchestrio_instances", state="running") == 2
    assert value(families, "orchestrio_instances", state="stopped") == 1
    assert value(families, "orchestrio_running_instances_health", health="healthy") == 2
    assert value(families, "orchestrio_tasks", status="running") == 0


def test_health_sweep_duration_appears_after_a_sweep(client, metrics_on):
    families = scrape(client)
    assert "orchestrio_health_sweep_duration_seconds" not in families
    summary = call_job(health_sweep)
    families = scrape(client)
    assert value(families, "orchestrio_health_sweep_duration_seconds") == summary["seconds"]
    assert value(families, "orchestrio_health_sweep_instances") == 0
    assert value(families, "orchestrio_health_sweep_last_success_timestamp_seconds") > 0


def test_reconciler_corrections_and_last_success(client, metrics_on):
    InstanceFactory(state="running")  # no machine behind it: the reconciler marks it lost
    call_job(reconcile)
    families = scrape(client)
    name = "orchestrio_reconciler_corrections"
    assert value(families, name, name + "_total", kind="machines_lost") == 1
    assert value(families, name, name + "_total", kind="requeued") == 0
    assert value(families, "orchestrio_reconciler_errors", "orchestrio_reconciler_errors_total") == 0
    assert value(families, "orchestrio_reconciler_last_success_timestamp_seconds") > 0
