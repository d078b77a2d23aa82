"""The instance state machine: the one place that knows which states exist, which edges between
them are legal, and which operation may start from which state. Nothing else assigns
`Instance.state`; services and jobs call `transition()`.

    pending → provisioning → running
    running → stopping → stopped → starting → running
    running → suspending → suspended → resuming → running
    running → sleeping → asleep → waking → running     (scale to zero: woken by traffic)
    running|stopped → resizing → (the state it started from)
    any → destroying → destroyed
    a failed step → error (with error_message); error → starting (retry), provisioning (a staff
    retry of a failed create) or destroying
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .choices import InstanceState as S
from .choices import OperationKind as K
from orchestrio.redis import get_redis

logger = logging.getLogger(__name__)

TRANSITIONAL_STATES = frozenset(
    {S.PENDING, S.PROVISIONING, S.STOPPING, S.STARTING, S.SUSPENDING, S.RESUMING, S.SLEEPING, S.WAKING, S.RESIZING, S.DESTROYING}
)
TERMINAL_STATES = frozenset({S.DESTROYED})

# Legal edges. Any transitional state may also fail to `error`.
EDGES: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.DESTROYING}),
    S.PROVISIONING: frozenset({S.RUNNING}),
    S.RUNNING: frozenset({S.STOPPING, S.SUSPENDING, S.SLEEPING, S.RESIZING, S.DESTROYING}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset({S.STARTING, S.RESIZING, S.DESTROYING}),
    S.STARTING: frozenset({S.RUNNING}),
    S.SUSPENDING: frozenset({S.SUSPENDED}),
    S.SUSPENDED: frozenset({S.RESUMING, S.DESTROYING}),
    S.RESUMING: frozenset({S.RUNNING}),
    S.SLEEPING: frozenset({S.ASLEEP}),
    S.ASLEEP: frozenset({S.WAKING, S.SUSPENDING, S.DESTROYING}),
    S.WAKING: frozenset({S.RUNNING}),
    S.RESIZING: frozenset({S.RUNNING, S.STOPPED}),
    S.DESTROYING: frozenset({S.DESTROYED}),
    S.DESTROYED: frozenset(),
    S.ERROR: frozenset({S.STARTING, S.PROVISIONING, S.DESTROYING}),
}
for _state in TRANSITIONAL_STATES:
    EDGES[_state] = EDGES[_state] | {S.ERROR}
# Any live state may be destroyed (API.md: "any → destroying").
for _state in set(S.values) - {S.DESTROYING, S.DESTROYED}:
    EDGES[_state] = EDGES[_state] | {S.DESTROYING}
# A running machine that vanishes or a stopped one found dead is marked `error` by the reconciler.
EDGES[S.RUNNING] = EDGES[S.RUNNING] | {S.ERROR}
EDGES[S.STOPPED] = EDGES[S.STOPPED] | {S.ERROR}
EDGES[S.SUSPENDED] = EDGES[S.SUSPENDED] | {S.ERROR}
EDGES[S.ASLEEP] = EDGES[S.ASLEEP] | {S.ERROR}


@dataclass(frozen=True)
class OperationRule:
    """What accepting one kind of operation means; `services.operation_accept` does what it says."""

    kind: str
    from_states: frozenset[str]
    via: str  # the transitional state the instance enters when the operation is accepted
    verb: str  # for messages: "stop", "start"…
    retry_from: frozenset[str] = frozenset()  # extra states a staff retry of a failed one starts from
    retry_via: str | None = None  # the state a retry enters (default: `via`)
    done_states: frozenset[str] = frozenset()  # asking again here is answered "already", not refused
    forceable: bool = False  # staff may supersede a running operation instead of getting 409
    needs_room: str | None = None  # the plan limit (orchestrio.limits) that must have room
    keeps_previous_state: bool = False  # params["previous_state"]: where the job returns to

    def describe_from(self) -> str:
        return " or ".join(sorted(self.from_states))

    def entered(self, *, retry: bool) -> str:
        return (self.retry_via or self.via) if retry else self.via


_LIVE = frozenset(set(S.values) - {S.DESTROYING, S.DESTROYED})

RULES: dict[str, OperationRule] = {
    # A create is accepted once, on the new row (pending); a failed one is re-provisioned from error.
    K.CREATE: OperationRule(
        K.CREATE, frozenset({S.PENDING}), S.PENDING, "create",
        retry_from=frozenset({S.ERROR}), retry_via=S.PROVISIONING, needs_room="running_instances",
    ),
    K.STOP: OperationRule(K.STOP, frozenset({S.RUNNING}), S.STOPPING, "stop"),
    K.START: OperationRule(K.START, frozenset({S.STOPPED, S.ERROR}), S.STARTING, "start", needs_room="running_instances"),
    K.RESTART: OperationRule(K.RESTART, frozenset({S.RUNNING}), S.STOPPING, "restart"),
    # An asleep instance may be suspended too: from then on traffic no longer wakes it.
    K.SUSPEND: OperationRule(K.SUSPEND, frozenset({S.RUNNING, S.ASLEEP}), S.SUSPENDING, "suspend"),
    K.RESUME: OperationRule(K.RESUME, frozenset({S.SUSPENDED}), S.RESUMING, "resume", needs_room="running_instances"),
    # Sleep is a suspend that traffic undoes: the idle sweep's (reason "idle") or a person's; wake
    # is the resume a request to it starts (reason "request") or a person's.
    K.SLEEP: OperationRule(K.SLEEP, frozenset({S.RUNNING}), S.SLEEPING, "sleep"),
    K.WAKE: OperationRule(K.WAKE, frozenset({S.ASLEEP}), S.WAKING, "wake", needs_room="running_instances"),
    K.RESIZE: OperationRule(K.RESIZE, frozenset({S.RUNNING, S.STOPPED}), S.RESIZING, "resize", keeps_previous_state=True),
    K.DESTROY: OperationRule(
        K.DESTROY, _LIVE, S.DESTROYING, "destroy",
        done_states=frozenset({S.DESTROYING, S.DESTROYED}), forceable=True,
    ),
}  # fmt: skip


class IllegalTransition(RuntimeError):
    """A bug: code tried an edge the state machine does not have."""


def can_transition(from_state: str, to_state: str) -> bool:
    return to_state in EDGES.get(from_state, frozenset())


def transition(instance, to_state: str, *, error_message: str | None = None) -> None:
    """Move `instance` (a row the caller has locked or owns in this job) to `to_state` and save.

    Publishes the change to waiters once the transaction commits.
    """
    from_state = instance.state
    if from_state == to_state:
        return
    if not can_transition(from_state, to_state):
        raise IllegalTransition(f"{instance.instance_id}: {from_state} → {to_state} is not a legal transition")
    now = timezone.now()
    instance.state = to_state
    instance.state_changed_at = now
    fields = ["state", "state_changed_at", "updated_at"]
    if to_state == S.ERROR:
        instance.error_message = error_message or "the last operation failed"
        fields.append("error_message")
    elif instance.error_message and to_state in (S.RUNNING, S.STOPPED, S.SUSPENDED, S.ASLEEP):
        instance.error_message = ""
        fields.append("error_message")
    if to_state == S.DESTROYED:
        instance.destroyed_at = now
        fields.append("destroyed_at")
    if to_state != S.RUNNING and instance.health_status != "unknown":
        instance.health_status = "unknown"
        instance.health_failures = 0
        fields += ["health_status", "health_failures"]
    instance.save(update_fields=fields)
    record_state_change(instance, from_state, to_state, now)
    publish_state(instance)


def record_state_change(instance, from_state: str, to_state: str, when) -> None:
    from .models import StateChange

    StateChange.objects.create(instance=instance, tenant_id=instance.tenant_id, from_state=from_state, to_state=to_state, created_at=when)


def channel(instance_pk: int) -> str:
    return f"orchestrio:instance-state:{instance_pk}"


def publish_state(instance) -> None:
    """Tell long-polling `wait` requests about the new state (after commit; best effort)."""
    pk, state = instance.pk, instance.state

    def _publish() -> None:
        try:
            get_redis().publish(channel(pk), json.dumps({"state": state}))
        except Exception as exc:  # noqa: BLE001 - waiters fall back to polling
            logger.warning("could not publish state of instance %s: %s", pk, exc)

    transaction.on_commit(_publish, robust=True)
