"""Scale to zero (docs/lifecycle.md, "Sleep and wake"): the idle sweep that puts instances with no
traffic to sleep, and the wake a request to a sleeping instance starts and waits for.

Last traffic is what the proxy already writes to Redis with each request's counts
(`traffic.LAST_SEEN`, same pipeline: no database write per request), or, when Redis lost it, the
flushed `RequestMetricsTotal.last_request_at`; an instance that started running (or woke) since
then counts from that moment. The state changes themselves are the instances app's
(`instance_sleep_if_idle`, `instance_wake_on_request`: operations like any other, under the
one-unfinished-operation rule, so concurrent requests share one wake).

A request held for a wake holds a long-lived slot (orchestrio/longpoll.py: per caller, per tenant
and per process, beside the threads kept for everything else) and no database connection while it
waits on the instance's state channel, at most INSTANCE_WAKE_WAIT_SECONDS: then 504.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from instances.choices import InstanceState as S
from instances.models import Instance
from instances.services import instance_sleep_if_idle, instance_wake_on_request
from instances.waiting import wait_for_state
from orchestrio.errors import Conflict, UpstreamTimeout
from orchestrio.longpoll import long_lived_slot
from orchestrio.queue import singleton

from . import traffic

logger = logging.getLogger(__name__)

# States a request waits through: it ends running (served), or asleep again (woken by it).
ASLEEP_OR_ON_THE_WAY = frozenset({S.ASLEEP, S.SLEEPING, S.WAKING})
ALL_STATES = frozenset(S.values)


def idle_sweep(*, now=None) -> dict:
    """Put to sleep every running instance with an idle timeout that had no traffic for that long
    (the periodic job; one sweep at a time). Each is re-checked under its row lock by
    `instance_sleep_if_idle`, so a wake or a person's operation meanwhile is not overridden."""
    with singleton("idle-sweep", ttl=max(settings.IDLE_SWEEP_SECONDS * 4, 60)) as mine:
        if not mine:
            return {"skipped": "another sweep is running"}
        now = now or timezone.now()
        rows = list(
            Instance.objects.filter(state=S.RUNNING, destroyed_at__isnull=True)
            .annotate(timeout=Coalesce("idle_timeout_seconds", "blueprint__idle_timeout_seconds"))
            .filter(timeout__gt=0)
            .values("pk", "instance_id", "timeout", "state_changed_at", flushed=F("request_metrics_total__last_request_at"))
        )
        seen = traffic.last_seen([row["pk"] for row in rows])
        summary = {"candidates": len(rows), "slept": []}
        for row in rows:
            last_traffic = max(filter(None, (seen.get(row["pk"]), row["flushed"])), default=None)
            since = max(filter(None, (last_traffic, row["state_changed_at"])))
            if (now - since).total_seconds() < row["timeout"]:
                continue
            instance = Instance(pk=row["pk"], instance_id=row["instance_id"])
            if instance_sleep_if_idle(instance=instance, last_traffic=last_traffic, now=now) is not None:
                summary["slept"].append(row["instance_id"])
        if summary["slept"]:
            logger.info("idle sweep: put to sleep %s", ", ".join(summary["slept"]))
        return summary


def wake_for_request(route, caller) -> None:
    """Hold a request to an asleep (or sleeping, or waking) instance until it runs: start the wake
    unless one is under way, wait for it, return. 504 after INSTANCE_WAKE_WAIT_SECONDS; 409 when
    it settles in another state (a person suspended or stopped it meanwhile, or the wake failed)."""
    wait = settings.INSTANCE_WAKE_WAIT_SECONDS
    deadline = time.monotonic() + wait
    state = route.state
    slot_caller = f"gateway:{caller.ratelimit_key}"
    with long_lived_slot(tenant_id=route.tenant_id, caller_key=slot_caller, caller_label="this caller", kind="request to a sleeping instance") as slot:
        while True:
            if state == S.RUNNING:
                return
            if state not in ASLEEP_OR_ON_THE_WAY:
                raise Conflict(not_running_detail(route.instance_id, state))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(
                    f"{route.instance_id} was asleep and is waking up, but was not ready within {wait}s; the wake goes on: retry shortly"
                )
            if state == S.ASLEEP:
                # One wake for every request: the first accepts it, the others find it unfinished.
                instance_wake_on_request(instance=Instance(pk=route.pk, instance_id=route.instance_id))
            state, _ = wait_for_state(route.pk, ALL_STATES - {state}, remaining, heartbeat=slot.renew)


def not_running_detail(instance_id: str, state: str) -> str:
    """The 409 a request gets for an instance that traffic does not wake."""
    if state in (S.SUSPENDED, S.SUSPENDING):
        return (
            f"{instance_id} is {state}: it was suspended by a person (or support), and traffic does not wake it; "
            "resume it to serve requests again"
        )
    return f"{instance_id} is {state}, not running"
