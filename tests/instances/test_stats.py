"""Stats (issue 18, item 2): the agent's counters of the instance's processes, sampled into a
minute series (a day), rolled into an hour series (30 days), read through
`GET /api/v1/instances/{id}/stats?window=`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from instances import services
from instances.models import InstanceStatSample
from instances.services import stat_point

from ..helpers import assert_validation_error, instance_http, local_instance, run_in_instance, run_jobs

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _raw(at: float, **figures) -> dict:
    return {"sampled_at": at, "started_at": 1000.0, "cpu_seconds": 0.0, "net_rx_bytes": 0, "net_tx_bytes": 0,
            "disk_read_bytes": 0, "disk_write_bytes": 0, "rss_bytes": 1 << 20, "uptime_seconds": at - 1000, "restarts": 0, **figures}  # fmt: skip


# --- rates from two samples --------------------------------------------------------------------


def test_rates_come_from_two_samples_of_the_same_agent_run():
    first = stat_point(previous=None, raw=_raw(1010.0))
    assert first["cpu_percent"] is None and first["net_rx_bytes_per_second"] is None  # nothing to compare with
    assert first["rss_bytes"] == 1 << 20 and first["uptime_seconds"] == 10
    second = stat_point(previous=first["raw"], raw=_raw(1070.0, cpu_seconds=30.0, net_rx_bytes=6000, disk_write_bytes=600))
    assert second["cpu_percent"] == 50.0 and second["net_rx_bytes_per_second"] == 100.0 and second["disk_write_bytes_per_second"] == 10.0
    assert second["net_tx_bytes_per_second"] == 0.0
    # The agent started again (another started_at) or a counter went back: no rate, not a negative one.
    restarted = stat_point(previous=second["raw"], raw=_raw(1130.0, started_at=1100.0, cpu_seconds=1.0))
    assert restarted["cpu_percent"] is None
    went_back = stat_point(previous=second["raw"], raw=_raw(1130.0, cpu_seconds=40.0, net_rx_bytes=10))
    assert went_back["cpu_percent"] == pytest.approx(16.67) and went_back["net_rx_bytes_per_second"] is None


def test_what_an_agent_says_that_is_not_a_figure_is_unknown():
    point = stat_point(previous={"sampled_at": "x"}, raw={"sampled_at": "soon", "rss_bytes": -5, "memory_limit_bytes": 1e300, "restarts": True, "cpu_seconds": float("nan")})
    assert {point[name] for name in ("cpu_percent", "rss_bytes", "memory_limit_bytes", "restarts", "uptime_seconds")} == {None}


# --- downsampling and retention, on a fixed clock ----------------------------------------------


def _minute(instance, at: datetime, **figures) -> InstanceStatSample:
    return InstanceStatSample.objects.create(instance=instance, resolution="minute", bucket=at, **figures)


def test_minutes_older_than_a_day_become_hours_and_hours_older_than_30_days_go(running):
    for n in range(90):  # 12:00 to 13:29
        _minute(running, T0 + timedelta(minutes=n), cpu_percent=float(n % 60 < 30) * 50, rss_bytes=1000 + n, restarts=n // 60, uptime_seconds=n * 60)
    _minute(running, T0 + timedelta(hours=24, minutes=5), cpu_percent=1.0)  # a recent one
    InstanceStatSample.objects.create(instance=running, resolution="hour", bucket=T0 - timedelta(days=29), cpu_percent=9)
    kept_hour = InstanceStatSample.objects.create(instance=running, resolution="hour", bucket=T0 - timedelta(days=28), cpu_percent=8)

    # At 13:10 the next day, 12:00–12:59 is over a day old; 13:00–13:09 is too but its hour is not.
    summary = services.instance_stats_downsample(now=T0 + timedelta(hours=25, minutes=10))
    assert summary == {"hours_written": 1, "minutes_rolled": 60, "hours_expired": 1}
    hour = InstanceStatSample.objects.get(instance=running, resolution="hour", bucket=T0)
    assert hour.samples == 60 and hour.cpu_percent == 25.0 and hour.rss_bytes == round(1000 + 29.5) and hour.restarts == 0 and hour.uptime_seconds == 59 * 60
    assert InstanceStatSample.objects.filter(resolution="minute").count() == 31
    assert set(InstanceStatSample.objects.filter(resolution="hour").values_list("pk", flat=True)) == {hour.pk, kept_hour.pk}

    assert services.instance_stats_downsample(now=T0 + timedelta(hours=25, minutes=11))["hours_written"] == 0  # nothing twice
    summary = services.instance_stats_downsample(now=T0 + timedelta(hours=26))
    assert summary["hours_written"] == 1 and summary["minutes_rolled"] == 30


# --- the API -----------------------------------------------------------------------------------


def test_the_api_reads_a_window_and_checks_it(api, other_api, running, make_instance, django_assert_max_num_queries):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    for n in range(90):
        _minute(running, now - timedelta(minutes=n), cpu_percent=float(n), rss_bytes=5000, memory_limit_bytes=1 << 30, samples=1)
    InstanceStatSample.objects.create(instance=running, resolution="hour", bucket=now - timedelta(days=3), cpu_percent=7.0, samples=60)
    _minute(make_instance(instance_id="elsewhere", state="running"), now, cpu_percent=99.0)

    with django_assert_max_num_queries(12):
        body = api.get("instances/web-01/stats").json()
    assert body["instance_id"] == "web-01" and body["window"] == "1h" and body["resolution"] == "minute"
    assert len(body["points"]) == 60 and body["points"][0]["cpu_percent"] == 59.0 and body["points"][-1]["t"].endswith("Z")
    assert body["current"]["cpu_percent"] == 0.0 and body["current"]["rss_bytes"] == 5000 and body["current"]["memory_limit_bytes"] == 1 << 30
    assert len(api.get("instances/web-01/stats", window="24h").json()["points"]) == 90
    month = api.get("instances/web-01/stats", window="30d").json()
    assert month["resolution"] == "hour" and month["points"][0]["cpu_percent"] == 7.0 and month["points"][0]["samples"] == 60
    assert sum(p["samples"] for p in month["points"][1:]) == 90  # the last day's minutes, by the hour
    assert_validation_error(api.get("instances/web-01/stats", window="7d"), ("query", "window"))
    assert other_api.get("instances/web-01/stats").status_code == 404
    fresh = make_instance(instance_id="fresh-01", state="stopped")
    assert api.get(f"instances/{fresh.instance_id}/stats").json() == {"instance_id": "fresh-01", "window": "1h", "resolution": "minute", "points": [], "current": None}


# --- a real instance ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_instance_s_cpu_rises_under_a_busy_task(api, live):
    live("stats-01")
    with instance_http("stats-01", gateway_key=False) as client:
        from instances.agent_client import KEY_HEADER
        from orchestrio.crypto import decrypt

        assert client.get("/stats").status_code == 401  # keyed, like every management route
        raw = client.get("/stats", headers={KEY_HEADER: decrypt(local_instance("stats-01").agent_key_encrypted)}).json()
    assert raw["cpu_seconds"] > 0 and raw["rss_bytes"] > 1 << 20 and raw["processes"] >= 1 and raw["starts"] == 1
    assert raw["net_rx_bytes"] >= 0 and raw["uptime_seconds"] > 0
    pk = local_instance("stats-01").pk

    first = services.instance_stats_sample(now=T0, instance_pks=[pk])
    assert first["sampled"] == 1 and first["failed"] == {}
    # A shell loop that keeps a CPU busy for 2 s, run as the instance's task (a child of its agent).
    task = run_in_instance(api, "stats-01", 'end=$(($(date +%s) + 2)); while [ "$(date +%s)" -lt "$end" ]; do :; done\necho done\n', name="busy.sh")
    assert task["status"] == "succeeded", task
    services.instance_stats_sample(now=T0 + timedelta(minutes=1), instance_pks=[pk])

    points = {p.bucket: p for p in InstanceStatSample.objects.filter(instance_id=pk, resolution="minute")}
    assert points[T0].cpu_percent is None  # the first sample has nothing to compare with
    busy = points[T0 + timedelta(minutes=1)]
    assert busy.cpu_percent > 25, busy.cpu_percent  # the task's CPU counts in the instance's tree
    assert busy.rss_bytes > 1 << 20 and busy.restarts == 0 and busy.uptime_seconds > 0
    assert busy.disk_write_bytes_per_second is not None or busy.raw.get("disk_write_bytes") is None

    # Stopped: not sampled, its points still read.
    api.post("instances/stats-01/stop")
    run_jobs()
    assert services.instance_stats_sample(now=T0 + timedelta(minutes=2), instance_pks=[pk])["instances"] == 0
    assert api.get("instances/stats-01/stats").json()["current"]["cpu_percent"] == busy.cpu_percent
