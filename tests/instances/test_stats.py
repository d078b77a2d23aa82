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
def test_a_real_instance_s_cpu_rises_under_a_busy_task(api, live, client, owner):
    live("stats-01")
    with instance_http("stats-01", gateway_key=False) as direct:
        from instances.agent_client import KEY_HEADER
        from orchestrio.crypto import decrypt

        assert direct.get("/stats").status_code == 401  # keyed, like every management route
        raw = direct.get("/stats", headers={KEY_HEADER: decrypt(local_instance("stats-01").agent_key_encrypted)}).json()
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

    # The Monitoring tab: its figures, and its app log read from the agent (the traffic it served).
    with instance_http("stats-01") as agent:
        assert agent.get("/hello-monitoring").status_code == 200
    client.force_login(owner)
    page = client.get("/instances/stats-01/monitoring?stream=stderr&q=hello-monitoring").content.decode()
    from django.template.defaultfilters import floatformat

    assert f'data-field="cpu">{floatformat(busy.cpu_percent, 1)} %' in page and "GET /hello-monitoring" in page and 'class="stream-stderr"' in page
    stdout = client.get("/instances/stats-01/monitoring?stream=stdout&q=hello-monitoring").content.decode()
    assert "did not give" not in page and "GET /hello-monitoring" not in stdout and "No output matches." in stdout

    # Stopped: not sampled, its points still read.
    api.post("instances/stats-01/stop")
    run_jobs()
    assert services.instance_stats_sample(now=T0 + timedelta(minutes=2), instance_pks=[pk])["instances"] == 0
    assert api.get("instances/stats-01/stats").json()["current"]["cpu_percent"] == busy.cpu_percent


# --- the console's Monitoring tab --------------------------------------------------------------


@pytest.fixture
def console(client, owner):
    client.force_login(owner)
    return client


def test_the_monitoring_tab_shows_the_figures_charts_data_and_log_state(console, make_instance):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    stopped = make_instance(instance_id="mon-01", state="stopped")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    _minute(stopped, now - timedelta(minutes=2), cpu_percent=12.5, rss_bytes=50 << 20, memory_limit_bytes=1 << 30, uptime_seconds=7500, restarts=1)

    def measured(url):
        console.get(url)
        with CaptureQueriesContext(connection) as captured:
            response = console.get(url)
        return len(captured), response

    few, _ = measured("/instances/mon-01/monitoring/live")
    page_few, response = measured("/instances/mon-01/monitoring")
    page = response.content.decode()
    assert response.status_code == 200 and 'aria-current="page">Monitoring</a>' in page
    assert 'data-live="/instances/mon-01/monitoring/live"' in page and 'id="stats-chart-data"' in page
    assert 'data-status="stopped"' in page and 'data-status="unknown"' in page  # the state's and the health's badges
    assert "12.5 %" in page and "50.0\xa0MB resident of a 1.0\xa0GB limit" in page and "2 h 5 min" in page and "<time" in page
    assert "mon-01 is stopped: its output is kept on the instance" in page
    for n in range(3, 60):
        _minute(stopped, now - timedelta(minutes=n), cpu_percent=1.0, rss_bytes=1 << 20)
    many, fragment = measured("/instances/mon-01/monitoring/live")
    assert many == few and fragment.status_code == 200  # whatever the window holds
    assert measured("/instances/mon-01/monitoring")[0] == page_few
    body = fragment.content.decode()
    assert "<html" not in body and 'data-live-part="figures"' in body and 'data-live-part="applog"' in body
    assert body.count("<tr>") == 1 + 30  # the table's head and latest points; the charts have them all
    assert '"cpu_percent": [' in body and body.count("1.0,") >= 50

    bad = console.get("/instances/mon-01/monitoring?window=7d&q=" + "x" * 201)
    assert bad.status_code == 400 and 'data-testid="monitoring-errors"' in bad.content.decode() and "data-live=\"/instances/mon-01/monitoring/live" not in bad.content.decode()
    assert console.get("/instances/theirs/monitoring").status_code == 404
    # A running instance whose agent does not answer: said in words, and tried again.
    make_instance(instance_id="mon-02", state="running", ip_address="127.0.0.1", port=9)
    running = console.get("/instances/mon-02/monitoring?window=30d").content.decode()
    assert "did not give its output just now" in running and "No stats yet" in running


def test_the_periodic_job_samples_every_running_instance_once_at_a_time(running, make_instance):
    from instances import jobs
    from orchestrio.queue import singleton

    make_instance(instance_id="asleep-01", state="stopped")
    summary = jobs.sample_stats()  # web-01's agent is not there: it misses this minute, said why
    assert summary["instances"] == 1 and summary["sampled"] == 0 and list(summary["failed"]) == ["web-01"]
    with singleton("stats-sample", ttl=60):
        assert jobs.sample_stats() == {"skipped": "another sampling is running"}
