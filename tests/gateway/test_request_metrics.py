"""Request metrics (gateway/traffic.py, gateway/histogram.py, gateway/selectors.py): the histogram
against known distributions, counting under concurrency, the flush's batches and retention, the
API, and the percentiles of a real instance that sleeps a known time."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from gateway import histogram, traffic
from gateway.models import RequestMetrics, RequestMetricsTotal
from gateway.selectors import request_metrics
from instances.models import Instance

from ..helpers import assert_error, assert_validation_error

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> float:
    return (T0 + timedelta(minutes=minutes)).timestamp()


# --- the histogram ------------------------------------------------------------------------------


def test_buckets_are_log_spaced_and_bounds_are_inclusive():
    assert histogram.bucket_for(0) == histogram.bucket_for(1) == 0
    assert histogram.bucket_for(1.0001) == 1
    assert histogram.bucket_for(2) == 4 and histogram.bucket_for(2.0001) == 5
    assert histogram.bucket_for(60_000) == 64 and histogram.bucket_for(70_000) == histogram.OVERFLOW
    for index in range(1, histogram.BOUNDED):
        assert histogram.bucket_for(histogram.UPPER[index]) == index
        assert histogram.UPPER[index] / histogram.UPPER[index - 1] == pytest.approx(2**0.25)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_percentiles_of_known_distributions_are_within_one_bucket(q):
    rng = random.Random(7)
    for sample in (
        [rng.uniform(1, 1000) for _ in range(5000)],
        [rng.lognormvariate(3, 1) for _ in range(5000)],  # a latency-like long tail around 20 ms
        [5.0] * 900 + [250.0] * 100,
    ):
        hist = histogram.empty()
        for value in sample:
            hist[histogram.bucket_for(value)] += 1
        exact = sorted(sample)[max(0, int(q * len(sample) + 0.999999) - 1)]
        estimate = histogram.percentile(hist, q)
        assert exact / 2**0.25 <= estimate <= exact * 2**0.25, (q, exact, estimate)


def test_merge_adds_counts_and_empty_has_no_percentile():
    a, b = histogram.empty(), histogram.empty()
    a[3], b[3], b[10] = 2, 1, 5
    merged = histogram.merge(a, b)
    assert merged[3] == 3 and merged[10] == 5 and sum(merged) == 8
    assert histogram.merge(None, [1, 2]) == [1, 2] + [0] * (histogram.SIZE - 2)
    assert histogram.percentile(histogram.empty(), 0.5) is None


# --- counting and flushing ----------------------------------------------------------------------


def test_concurrent_requests_are_all_counted_while_flushes_run(running):
    latencies = [3.0, 40.0, 700.0]

    def hammer(n: int):
        for i in range(250):
            traffic.record(running.pk, ms=latencies[i % 3], upstream_error=(i % 10 == 0), gateway_error=(n == 0 and i % 50 == 0))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    flushed = 0
    while any(t.is_alive() for t in threads):  # flushes while increments still arrive
        flushed += traffic.flush()["flushed"]
    for thread in threads:
        thread.join()
    flushed += traffic.flush()["flushed"]
    assert flushed == 2000
    total = RequestMetricsTotal.objects.get(instance=running)
    assert total.count == 2000 and sum(total.histogram) == 2000
    assert total.errors_gateway == 5 and total.errors_upstream == 8 * 25 - 5  # a gateway error is not also an upstream one
    assert [total.histogram[histogram.bucket_for(latency)] for latency in latencies] == [8 * 84, 8 * 83, 8 * 83]
    minutes = RequestMetrics.objects.filter(instance=running, resolution=60)
    assert sum(m.count for m in minutes) == 2000 and sum(sum(m.histogram) for m in minutes) == 2000
    assert sum(h.count for h in RequestMetrics.objects.filter(instance=running, resolution=3600)) == 2000


def test_a_batch_is_never_counted_twice(running, monkeypatch):
    traffic.record(running.pk, ms=10)
    client = traffic.get_redis()
    real_delete = client.delete
    calls = {"n": 0}

    def flaky_delete(self, *keys):
        calls["n"] += 1
        if calls["n"] == 1:
            raise traffic.redis.ConnectionError("lost Redis after the commit")
        return real_delete(*keys)

    monkeypatch.setattr(client.__class__, "delete", flaky_delete)
    batch = traffic.BATCH_PREFIX + "x1"
    client.rename(traffic.PENDING, batch)
    with pytest.raises(traffic.redis.ConnectionError):
        traffic._apply_batch(client, batch)
    monkeypatch.undo()
    traffic.flush()  # finds the leftover batch, sees it folded in, deletes it
    assert RequestMetricsTotal.objects.get(instance=running).count == 1
    assert not list(client.scan_iter(match=traffic.BATCH_PREFIX + "*"))


def test_minutes_fold_into_hours_and_retention_keeps_24h_of_minutes_and_30d_of_hours(running):
    for minutes in (0, 0.5, 1, 61):
        traffic.record(running.pk, ms=10, at=at(minutes))
    traffic.flush(now=T0 + timedelta(hours=2))
    rows = {(r.resolution, r.start): r.count for r in RequestMetrics.objects.filter(instance=running)}
    assert rows == {
        (60, T0): 2, (60, T0 + timedelta(minutes=1)): 1, (60, T0 + timedelta(minutes=61)): 1,
        (3600, T0): 3, (3600, T0 + timedelta(hours=1)): 1,
    }  # fmt: skip
    traffic.record(running.pk, ms=10, at=at(1))  # a later batch adds to the same rows
    traffic.flush(now=T0 + timedelta(hours=2))
    assert RequestMetrics.objects.get(instance=running, resolution=60, start=T0 + timedelta(minutes=1)).count == 2
    traffic.prune(now=T0 + timedelta(hours=24, minutes=30))
    assert {(r.resolution, r.start) for r in RequestMetrics.objects.filter(instance=running)} == {
        (60, T0 + timedelta(minutes=61)), (3600, T0), (3600, T0 + timedelta(hours=1))
    }  # fmt: skip
    traffic.prune(now=T0 + timedelta(days=30, minutes=30))
    assert {(r.resolution, r.start) for r in RequestMetrics.objects.filter(instance=running)} == {(3600, T0 + timedelta(hours=1))}


def test_counts_of_a_deleted_instance_are_dropped(running):
    traffic.record(running.pk + 1000, ms=10)
    traffic.record(running.pk, ms=10)
    assert traffic.flush()["flushed"] == 1


def test_redis_down_drops_the_count_not_the_request(running, monkeypatch):
    class Down:
        def pipeline(self, **kwargs):
            raise traffic.redis.ConnectionError("down")

    monkeypatch.setattr(traffic, "get_redis", lambda: Down())
    traffic.record(running.pk, ms=10)  # no exception


# --- reading: selector, app_health, API ---------------------------------------------------------


def _requests(instance, n: int, *, minute: float, ms: float = 10, upstream_errors: int = 0, gateway_errors: int = 0):
    for i in range(n):
        traffic.record(instance.pk, ms=ms, at=at(minute), upstream_error=i < upstream_errors, gateway_error=upstream_errors <= i < upstream_errors + gateway_errors)


def test_points_totals_and_unflushed_counts(running):
    _requests(running, 10, minute=-30, ms=20)
    traffic.flush(now=T0)
    _requests(running, 10, minute=-1, ms=200, upstream_errors=1)  # not flushed: still counted
    found = request_metrics(running, window="1h", now=T0)
    assert [p["start"] for p in found["points"]] == [T0 - timedelta(minutes=30), T0 - timedelta(minutes=1)]
    assert found["totals"]["count"] == 20 and found["totals"]["errors"] == 1 and found["totals"]["error_rate"] == 0.05
    assert 20 / 2**0.25 <= found["points"][0]["p50_ms"] <= 20 * 2**0.25
    assert 200 / 2**0.25 <= found["totals"]["p95_ms"] <= 200 * 2**0.25
    assert request_metrics(running, window="1h", now=T0 + timedelta(minutes=45))["totals"]["count"] == 10
    assert request_metrics(running, window="30d", now=T0)["points"][0]["start"] == T0 - timedelta(hours=1)


@pytest.mark.parametrize(
    ("upstream_errors", "gateway_errors", "expected"),
    [(0, 0, "healthy"), (5, 0, "healthy"), (3, 3, "degraded"), (30, 21, "unhealthy")],
)
def test_app_health_from_the_last_five_minutes(running, upstream_errors, gateway_errors, expected):
    _requests(running, 100, minute=-2, upstream_errors=upstream_errors, gateway_errors=gateway_errors)
    _requests(running, 100, minute=-20, upstream_errors=100)  # too old to count
    traffic.flush(now=T0)
    found = request_metrics(running, window="1h", now=T0)
    assert (found["app_health"], found["app_health_source"], found["recent_count"]) == (expected, "traffic", 100)


def test_app_health_without_traffic_is_the_health_check(running):
    Instance.objects.filter(pk=running.pk).update(health_status="unhealthy")
    running.refresh_from_db()
    found = request_metrics(running, window="1h", now=T0)
    assert (found["app_health"], found["app_health_source"]) == ("unhealthy", "health_check")
    assert found["points"] == [] and found["totals"]["p50_ms"] is None


def test_api_validates_the_window_and_hides_other_tenants(api, other_api, running):
    traffic.record(running.pk, ms=12)
    body = api.get("instances/web-01/request-metrics?window=24h").json()
    assert body["window"] == "24h" and body["resolution_seconds"] == 60 and body["totals"]["count"] == 1
    assert set(body["points"][0]) == {"start", "count", "errors", "errors_upstream", "errors_gateway", "error_rate", "p50_ms", "p95_ms", "p99_ms"}
    assert api.get("instances/web-01/request-metrics").json()["window"] == "1h"
    assert_validation_error(api.get("instances/web-01/request-metrics?window=7d"), ("query", "window"))
    assert_error(other_api.get("instances/web-01/request-metrics"), 404)
    assert_error(api.get("instances/nope/request-metrics"), 404)


# --- a real instance that sleeps a known time ---------------------------------------------------


@pytest.mark.slow
def test_percentiles_of_a_real_instance_that_sleeps(api):
    from .upstream import start_site

    start_site(api, "slow-01", {"/fast": {"body": "ok", "sleep_ms": 20}, "/slow": {"body": "ok", "sleep_ms": 150}, "/boom": {"status": 503}})
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api.token}"}
    statuses, seen_ms = [], []
    for path in ["/tunnel/slow-01/fast"] * 24 + ["/tunnel/slow-01/slow"] * 4 + ["/tunnel/slow-01/boom"] * 2:
        started = time.perf_counter()
        response = client.get(path, **auth)
        b"".join(response.streaming_content)  # the close path (where it is counted) runs when the body is sent
        seen_ms.append((time.perf_counter() - started) * 1000)
        statuses.append(response.status_code)
    assert statuses == [200] * 28 + [503] * 2
    traffic.flush()
    body = api.get("instances/slow-01/request-metrics").json()
    totals = body["totals"]
    assert (totals["count"], totals["errors_upstream"], totals["errors_gateway"]) == (30, 2, 0)
    # Each latency lies between the instance's sleep (a floor) and what the caller saw (the whole
    # request, so a ceiling whatever the machine's load): the percentiles of 24 at 20 ms, 4 at
    # 150 ms and 2 fast 503s, within the histogram's 2^(1/4) of those bounds.
    seen_ms.sort()
    for key, q, floor in (("p50_ms", 0.5, 20), ("p95_ms", 0.95, 150), ("p99_ms", 0.99, 150)):
        ceiling = seen_ms[math.ceil(q * 30) - 1]
        assert floor / 2**0.25 <= totals[key] <= ceiling * 2**0.25, (key, totals, seen_ms)
    assert body["app_health"] == "degraded" and body["recent_error_rate"] == round(2 / 30, 4)


# --- Prometheus ---------------------------------------------------------------------------------


def test_prometheus_series_per_instance_with_recent_traffic_only(client, settings, running, make_instance):
    from ..orchestrio.test_metrics import scrape, value

    settings.METRICS_ENABLED, settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = True, None, []
    idle = make_instance(instance_id="idle-01", state="running")
    for ms in (0.5, 3, 3, 300):
        traffic.record(running.pk, ms=ms, upstream_error=ms == 300)
    traffic.record(idle.pk, ms=10, at=at(0))  # long ago: no series
    traffic.flush()
    families = scrape(client)
    labels = {"instance": "web-01", "tenant": running.tenant_id}
    assert value(families, "orchestrio_instance_requests", "orchestrio_instance_requests_total", **labels) == 4
    assert value(families, "orchestrio_instance_request_errors", "orchestrio_instance_request_errors_total", source="upstream", **labels) == 1
    bucket = "orchestrio_instance_request_duration_seconds_bucket"
    assert value(families, "orchestrio_instance_request_duration_seconds", bucket, le="0.001", **labels) == 1
    assert value(families, "orchestrio_instance_request_duration_seconds", bucket, le="0.004", **labels) == 3
    assert value(families, "orchestrio_instance_request_duration_seconds", bucket, le="0.256", **labels) == 3
    assert value(families, "orchestrio_instance_request_duration_seconds", bucket, le="+Inf", **labels) == 4
    assert value(families, "orchestrio_instance_requests", "orchestrio_instance_requests_total", instance="idle-01") is None
    settings.METRICS_INSTANCE_SERIES_LIMIT = 0
    assert value(scrape(client), "orchestrio_instance_requests", "orchestrio_instance_requests_total", **labels) is None


# --- the console's Traffic tab ------------------------------------------------------------------


def test_traffic_tab_and_its_live_fragment_in_constant_queries(client, owner, running, other_api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(owner)
    page = client.get("/instances/web-01/traffic")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-status="unknown"' in html and 'href="/instances/web-01/traffic"' in html and "traffic-chart-data" in html
    assert "style=" not in html

    def figures(window: str = "1h") -> tuple[str, int]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/instances/web-01/traffic/live?window={window}")
        assert response.status_code == 200
        return response.content.decode(), len(captured)

    _, quiet = figures()
    for minute in range(40):  # 40 minutes of traffic, the last ones failing
        traffic.record(running.pk, ms=30, at=time.time() - minute * 60, upstream_error=minute < 3)
    traffic.flush()
    traffic.record(running.pk, ms=30, upstream_error=True)  # unflushed: shown too
    busy, queries = figures()
    assert queries == quiet
    assert 'data-status="unhealthy"' in busy and '<td data-field="count">41</td>' in busy
    assert json.loads(busy.split('id="traffic-chart-data" type="application/json">')[1].split("</script>")[0])["requests"][-1] >= 1
    assert figures("30d")[1] == quiet and figures("bogus")[1] == quiet  # an unknown window is the default one
    assert client.get("/instances/nope/traffic/live").status_code == 404
    other = other_api.user
    client.force_login(other)
    assert client.get("/instances/web-01/traffic").status_code == 404
