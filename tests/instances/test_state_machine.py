"""Every operation from every state: accepted (202) where API.md allows it, refused (400) where not."""

from __future__ import annotations

import pytest

from instances import lifecycle
from instances.choices import InstanceState as S
from instances.choices import OperationKind as K
from instances.models import Operation, StateChange

from ..helpers import assert_error

VERBS = {K.STOP: "stop", K.START: "start", K.RESTART: "restart", K.SUSPEND: "suspend", K.RESUME: "resume", K.SLEEP: "sleep", K.WAKE: "wake"}
ALLOWED = {
    K.STOP: {S.RUNNING},
    K.START: {S.STOPPED, S.ERROR},
    K.RESTART: {S.RUNNING},
    K.SUSPEND: {S.RUNNING, S.ASLEEP},  # a person suspending an asleep instance: traffic no longer wakes it
    K.RESUME: {S.SUSPENDED},
    K.SLEEP: {S.RUNNING},
    K.WAKE: {S.ASLEEP},
    K.RESIZE: {S.RUNNING, S.STOPPED},
}
ENTERS = {
    K.STOP: S.STOPPING, K.START: S.STARTING, K.RESTART: S.STOPPING, K.SUSPEND: S.SUSPENDING, K.RESUME: S.RESUMING,
    K.SLEEP: S.SLEEPING, K.WAKE: S.WAKING, K.RESIZE: S.RESIZING,
}  # fmt: skip
SETTABLE_STATES = [state for state in S.values if state != S.DESTROYED]


def test_api_md_transitions_are_exactly_the_edges():
    expected = {
        (S.PENDING, S.PROVISIONING), (S.PROVISIONING, S.RUNNING),
        (S.RUNNING, S.STOPPING), (S.STOPPING, S.STOPPED), (S.STOPPED, S.STARTING), (S.STARTING, S.RUNNING),
        (S.RUNNING, S.SUSPENDING), (S.SUSPENDING, S.SUSPENDED), (S.SUSPENDED, S.RESUMING), (S.RESUMING, S.RUNNING),
        (S.RUNNING, S.RESIZING), (S.STOPPED, S.RESIZING), (S.RESIZING, S.RUNNING), (S.RESIZING, S.STOPPED),
        (S.RUNNING, S.SLEEPING), (S.SLEEPING, S.ASLEEP), (S.ASLEEP, S.WAKING), (S.WAKING, S.RUNNING), (S.ASLEEP, S.SUSPENDING),
        (S.DESTROYING, S.DESTROYED),
    }  # fmt: skip
    for edge in expected:
        assert lifecycle.can_transition(*edge), edge
    # any (live, settled or pending) → destroying; any transitional → error
    for state in (S.PENDING, S.RUNNING, S.STOPPED, S.SUSPENDED, S.ASLEEP, S.ERROR):
        assert lifecycle.can_transition(state, S.DESTROYING)
    for state in lifecycle.TRANSITIONAL_STATES:
        assert lifecycle.can_transition(state, S.ERROR)
    # nothing leaves destroyed; nothing skips a transitional state
    assert not lifecycle.EDGES[S.DESTROYED]
    assert not lifecycle.can_transition(S.RUNNING, S.STOPPED)
    assert not lifecycle.can_transition(S.STOPPED, S.RUNNING)
    assert not lifecycle.can_transition(S.PENDING, S.RUNNING)
    assert not lifecycle.can_transition(S.SUSPENDED, S.RUNNING)
    assert not lifecycle.can_transition(S.ASLEEP, S.RUNNING)
    assert not lifecycle.can_transition(S.SUSPENDED, S.WAKING)  # traffic never wakes a person's suspend


def test_illegal_transition_is_refused(make_instance):
    instance = make_instance(state=S.STOPPED)
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.transition(instance, S.RUNNING)
    instance.refresh_from_db()
    assert instance.state == S.STOPPED


@pytest.mark.parametrize("kind", list(VERBS))
@pytest.mark.parametrize("state", SETTABLE_STATES)
def test_lifecycle_verb_from_every_state(api, make_instance, kind, state):
    instance = make_instance(instance_id="subject", state=state)
    response = api.post(f"instances/subject/{VERBS[kind]}")
    if state in ALLOWED[kind]:
        assert response.status_code == 202, response.content
        assert response.json()["state"] == ENTERS[kind]
        assert response.json()["operation"]["kind"] == kind
        op = Operation.objects.get(instance=instance)
        assert op.status == "queued" and op.requested_by == api.token[:12]
        assert StateChange.objects.filter(instance=instance, from_state=state, to_state=ENTERS[kind]).exists()
    else:
        body = assert_error(response, 400, contains=f"cannot {VERBS[kind]}")
        assert state in body["detail"]
        instance.refresh_from_db()
        assert instance.state == state
        assert not Operation.objects.filter(instance=instance).exists()


@pytest.mark.parametrize("state", SETTABLE_STATES)
def test_resize_from_every_state(api, make_instance, state):
    make_instance(instance_id="subject", state=state)
    response = api.put("instances/subject/resize", {"plan_id": "openclaw-pro"})
    if state in ALLOWED[K.RESIZE]:
        assert response.status_code == 202, response.content
        assert response.json()["state"] == S.RESIZING
        assert Operation.objects.get().params == {"plan_id": "openclaw-pro", "instance_type": "t3.large", "previous_state": state}
    else:
        assert_error(response, 400, contains="cannot resize")


@pytest.mark.parametrize("state", SETTABLE_STATES)
def test_destroy_from_every_state(api, make_instance, state):
    make_instance(instance_id="subject", state=state)
    response = api.delete("instances/subject")
    if state == S.DESTROYING:
        assert response.status_code == 200
        assert response.json() == {"instance_id": "subject", "state": "destroying", "already_deleted": True}
    else:
        assert response.status_code == 202, response.content
        assert response.json() == {"instance_id": "subject", "state": "destroying"}


def test_busy_instance_answers_409_with_the_operation(api, running):
    first = api.post("instances/web-01/stop")
    assert first.status_code == 202
    for verb in ("stop", "start", "restart", "suspend", "resume"):
        body = assert_error(api.post(f"instances/web-01/{verb}"), 409, contains="operation is queued")
        assert body["operation"]["id"] == first.json()["operation"]["id"]
        assert body["operation"]["kind"] == "stop"
    assert_error(api.put("instances/web-01/resize", {"plan_id": "openclaw-pro"}), 409)
    body = assert_error(api.delete("instances/web-01"), 409)
    assert body["operation"]["kind"] == "stop"


def test_only_services_assign_state():
    """Nothing outside the state machine assigns Instance.state (a grep, kept honest)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = []
    for path in list((root / "instances").rglob("*.py")) + list((root / "tasks").rglob("*.py")) + list((root / "gateway").rglob("*.py")) + list((root / "billing").rglob("*.py")):
        if path.name == "lifecycle.py" or "migrations" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\binstance\.state\s*=(?!=)|\blocked\.state\s*=(?!=)|\.update\(\s*state=", line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, offenders
