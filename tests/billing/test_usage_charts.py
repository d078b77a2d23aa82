"""The Billing page's usage charts (static/console/charts.js draws them with the vendored uPlot):
their data, passed through json_script, is the selector's daily series for the tenant, and the
table beside them (what screen readers and no-JS readers get) shows the same numbers."""

from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.metering import flush_usage, record_execution
from billing.models import UsageCounter
from billing.selectors import usage_daily
from instances.models import StateChange
from tasks.models import Task

from ..factories import InstanceFactory, TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, tenant, owner):
    client.force_login(owner)
    return client


def _midnight(days_ago: int) -> datetime:
    today = timezone.now().astimezone(dt_timezone.utc).date()
    return datetime.combine(today - timedelta(days=days_ago), time.min, tzinfo=dt_timezone.utc)


def _task(instance, n: int, created_at: datetime) -> Task:
    return Task.objects.create(
        task_id=f"tsk_chart{instance.pk}x{n}", instance=instance, tenant=instance.tenant, operation_code="backup",
        script_path="/opt/orchestrio/scripts/backup.sh", requested_by="test", requested_by_type="user", status="succeeded", created_at=created_at,
    )  # fmt: skip


def _chart(client) -> tuple[dict, str]:
    html = client.get("/billing/").content.decode()
    data = re.search(r'<script id="usage-chart-data" type="application/json">(.*?)</script>', html, re.S)
    assert data, "the chart's data is a json_script block"
    return json.loads(data.group(1)), html


def test_the_chart_data_is_the_selectors_series(console, tenant):
    a = InstanceFactory(instance_id="chart-a", tenant=tenant, state="stopped")
    b = InstanceFactory(instance_id="chart-b", tenant=tenant, state="stopped")
    # a ran 06:00–09:00 two days ago, b 10:00–11:30 the same day: 4.5 instance-hours that day.
    for instance, start, stop in ((a, 6, 9), (b, 10, 11.5)):
        StateChange.objects.create(instance=instance, tenant=tenant, from_state="stopped", to_state="running", created_at=_midnight(2) + timedelta(hours=start))
        StateChange.objects.create(instance=instance, tenant=tenant, from_state="running", to_state="stopped", created_at=_midnight(2) + timedelta(hours=stop))
    _task(a, 1, _midnight(5) + timedelta(hours=1))
    _task(b, 2, _midnight(5) + timedelta(hours=2))
    UsageCounter.objects.create(tenant=tenant, instance=a, day=_midnight(5).date(), kind="executions", count=4)
    record_execution(tenant.pk, b.pk, 2)
    flush_usage()
    record_execution(tenant.pk, None, 1)  # a tunnel request not flushed yet still counts, today
    other = InstanceFactory(instance_id="chart-other", tenant=TenantFactory(id="other-co"), state="stopped")
    StateChange.objects.create(instance=other, tenant=other.tenant, from_state="stopped", to_state="running", created_at=_midnight(2))
    _task(other, 3, _midnight(5))

    from runtime.models import AgentUsage

    AgentUsage.objects.create(tenant=tenant, instance=a, day=_midnight(1).date(), model="openclaw-fast", requests=3, tokens_in=2000, tokens_out=1000)
    AgentUsage.objects.create(tenant=other.tenant, instance=other, day=_midnight(1).date(), model="openclaw-fast", requests=3, tokens_in=9000, tokens_out=9000)
    data, html = _chart(console)
    series = usage_daily(tenant_id=tenant.pk, days=30)
    assert data["t"] == [int(_midnight(29 - i).timestamp()) for i in range(30)]
    assert data["instance_hours"] == [d["instance_hours"] for d in series] and data["executions"] == [d["executions"] for d in series]
    assert data["instance_hours"][-3] == 4.5 and sum(data["instance_hours"]) == 4.5  # the other tenant's hours are not ours
    assert data["executions"][-6] == 2 + 4 and data["executions"][-1] == 2 + 1 and sum(data["executions"]) == 9
    # The table says the same, newest day first.
    rows = re.findall(r'<tr data-day="([\d-]+)"><th scope="row">[^<]+</th><td>([\d.]+)</td><td>(\d+)</td><td>(\d+) / (\d+)</td><td>\d+</td><td>\d+</td><td>([\d.]+)</td></tr>', html)
    assert len(rows) == 30 and rows[0][0] == series[-1]["date"].isoformat()
    assert [(float(h), int(e)) for _, h, e, *_ in reversed(rows)] == list(zip(data["instance_hours"], data["executions"]))
    # The agent runtime's tokens and their cost (at the catalogue's prices), per day too.
    assert [int(i) + int(o) for *_, i, o, _ in reversed(rows)] == data["tokens"] and data["tokens"][-2] == 3000
    assert data["cost_usd"][-2] == 0.0005 * 2 + 0.0015 * 1 and float(rows[1][5]) == data["cost_usd"][-2]
    assert 'data-chart="instance_hours"' in html and 'data-chart="executions"' in html and "vendor/uplot/uPlot.iife.min.js" in html


def _queries(client) -> int:
    client.get("/billing/")
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/billing/").status_code == 200
    return len(captured)


def test_the_billing_page_answers_in_constant_queries(console, tenant):
    instance = InstanceFactory(instance_id="chart-q0", tenant=tenant, state="stopped")
    StateChange.objects.create(instance=instance, tenant=tenant, from_state="stopped", to_state="running", created_at=_midnight(3))
    _task(instance, 0, _midnight(3))
    few = _queries(console)
    for n in range(1, 6):
        more = InstanceFactory(instance_id=f"chart-q{n}", tenant=tenant, state="stopped")
        StateChange.objects.create(instance=more, tenant=tenant, from_state="stopped", to_state="running", created_at=_midnight(n))
        _task(more, n, _midnight(n))
    assert _queries(console) == few
