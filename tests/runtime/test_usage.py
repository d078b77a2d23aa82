"""Per-instance usage in agent terms (issue 21, item 4): the agent counts, the metering job reads
its cumulative counters and adds what grew, and the usage API shows tokens, cost, requests and
unique end users per day; no exchange is lost or counted twice, however reads and chats interleave."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.utils import timezone

from orchestrio.schedule import periodic_jobs
from runtime import services
from runtime.models import AgentUsage, LanguageModel

from ..factories import InstanceFactory
from ..helpers import call_job, local_instance


def tokens(text: str) -> int:
    return -(-len(text) // 4)


@pytest.mark.slow
def test_usage_matches_the_exchanges_with_no_lost_counts_under_concurrency(api, other_api, live):
    live("use-1")
    api.put("instances/use-1/model-policy", {"allowed_models": ["openclaw-fast", "openclaw-large"]})
    instance = local_instance("use-1")
    exchanges, errors, lock = [], [], threading.Lock()

    def chatter(n: int) -> None:
        for k in range(5):
            message = f"message {n}-{k} " + "z" * (n * 7 + k)
            try:
                exchange = services.chat_send(instance=instance, message=message, user=f"user-{n % 3}", model=["openclaw-fast", "openclaw-large"][k % 2])
            except Exception as exc:  # collected: a thread's assertion would be lost
                errors.append(exc)
                continue
            with lock:
                exchanges.append((message, exchange))

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    collected = 0
    while any(thread.is_alive() for thread in threads):
        collected += call_job(services.usage_collect, instances=[instance])["requests"]  # reads while chats go on
    for thread in threads:
        thread.join()
    collected += call_job(services.usage_collect, instances=[instance])["requests"]
    assert call_job(services.usage_collect, instances=[instance])["requests"] == 0  # nothing new: nothing added
    assert not errors and len(exchanges) == 30 and collected == 30

    rows = AgentUsage.objects.filter(instance=instance)
    by_model = {row.model: row for row in rows}
    for model in ("openclaw-fast", "openclaw-large"):
        mine = [(m, e) for m, e in exchanges if e["model"] == model]
        assert by_model[model].requests == len(mine)
        assert by_model[model].tokens_in == sum(tokens(m) for m, _ in mine) == sum(e["tokens_in"] for _, e in mine)
        assert by_model[model].tokens_out == sum(tokens(e["reply"]) for _, e in mine)
    assert by_model[""].end_users == 3

    prices = {m.id: m for m in LanguageModel.objects.all()}
    cost = sum((prices[e["model"]].price_in_per_1k * e["tokens_in"] + prices[e["model"]].price_out_per_1k * e["tokens_out"]) / 1000 for _, e in exchanges)
    usage = api.get("instances/use-1/usage", days=7).json()
    today = usage["daily"][-1]
    assert today["date"] == timezone.now().date().isoformat()
    assert today["requests"] == 30 and today["end_users"] == 3
    assert today["tokens_in"] == sum(e["tokens_in"] for _, e in exchanges) and today["tokens_out"] == sum(e["tokens_out"] for _, e in exchanges)
    assert Decimal(today["cost_usd"]) == cost.quantize(Decimal("0.000001")) > 0
    assert usage["totals"]["requests"] == 30 and Decimal(usage["totals"]["cost_usd"]) == Decimal(today["cost_usd"])
    assert all(day["requests"] == 0 for day in usage["daily"][:-1]) and "executions" in today and "instance_hours" in today

    api.client.force_login(api.user)  # the Chat tab's usage table (and charts) say the same
    page = api.client.get("/instances/use-1/chat").content.decode()
    assert f"<td>{today['tokens_in']} / {today['tokens_out']}</td><td>30</td><td>3</td><td>{today['cost_usd']}</td>" in page
    assert 'data-chart="tokens"' in page and 'data-chart="cost_usd"' in page

    current = api.get("usage/current").json()
    assert current["agent"]["requests"] == 30 and current["agent"]["tokens_in"] == today["tokens_in"] and current["agent"]["cost_usd"] == today["cost_usd"]
    assert other_api.get("usage/current").json()["agent"]["requests"] == 0
    assert other_api.get("instances/use-1/usage").status_code == 404


def test_a_stale_read_adds_nothing_and_a_new_epoch_starts_over(tenant):
    instance = InstanceFactory(tenant=tenant, instance_id="use-2", state="running")
    day = date(2026, 11, 30).isoformat()

    def report(epoch, requests, users):
        return {"epoch": epoch, "days": {day: {"user_count": users, "models": {"default": {"requests": requests, "tokens_in": requests * 2, "tokens_out": requests * 3}}}}}

    assert services.usage_apply(instance=instance, report=report("e1", 5, 2)) == 5
    assert services.usage_apply(instance=instance, report=report("e1", 9, 3)) == 4
    assert services.usage_apply(instance=instance, report=report("e1", 7, 2)) == 0  # read before the last one, applied after
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert services.usage_apply(instance=instance, report=report("e1", 9, 3)) == 0
    assert len(captured) == 1  # nothing grew: one read, no lock, no write
    row = AgentUsage.objects.get(instance=instance, model="default")
    assert (row.requests, row.tokens_in, row.tokens_out) == (9, 18, 27)
    # The agent's state began anew (a new machine): its counters count from zero again.
    assert services.usage_apply(instance=instance, report=report("e2", 2, 1)) == 2
    row.refresh_from_db()
    assert row.requests == 11 and AgentUsage.objects.get(instance=instance, model="").end_users == 4
    # What the agent says is data from the instance: odd values are skipped, not a 500.
    assert services.usage_apply(instance=instance, report={"epoch": "e2", "days": {"not-a-day": {}, day: {"models": {"default": {"requests": -4}}, "user_count": "x"}}}) == 0
    assert services.usage_apply(instance=instance, report={"days": "nope"}) == 0


def test_the_metering_job_is_scheduled_and_skips_unreachable_agents(tenant):
    assert "runtime.jobs.collect_agent_usage" in [job.func for job in periodic_jobs()]
    InstanceFactory(tenant=tenant, instance_id="use-3", state="running", ip_address="127.0.0.1", port=1)
    from runtime.jobs import collect_agent_usage

    assert call_job(collect_agent_usage) == {"instances": 0, "requests": 0, "unreachable": 1}
