"""`services.operation_accept` is the one home of "accept a lifecycle operation", driven by
`lifecycle.RULES`: every kind from every state, as a request and as a staff retry, is accepted,
answered "already", or refused with a domain error — never a bug (IllegalTransition) — and no
other code records an operation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from instances import lifecycle, services
from instances.choices import InstanceState as S
from instances.choices import OperationKind as K
from instances.models import Operation
from orchestrio.errors import DomainError, PlanLimitReached
from orchestrio.models import ActivityEvent
from orchestrio.tenancy import Actor

from ..helpers import assert_error

ROOT = Path(__file__).resolve().parents[2]
SETTABLE = [state for state in S.values if state != S.DESTROYED]
STAFF = Actor.system("test-staff")


@pytest.mark.parametrize("retry", [False, True], ids=["request", "retry"])
@pytest.mark.parametrize("kind", list(lifecycle.RULES))
def test_every_kind_from_every_state_is_accepted_or_a_domain_error(make_instance, tenant, kind, retry):
    # One instance per state, ten of them in states that count as running: room for them all.
    tenant.plan_id = "team"
    tenant.save(update_fields=["plan"])
    rule = lifecycle.RULES[kind]
    allowed = rule.from_states | (rule.retry_from if retry else frozenset())
    for index, state in enumerate(SETTABLE):
        instance = make_instance(instance_id=f"acc-{kind[:4]}-{int(retry)}-{index}", state=state)
        try:
            accepted = services.operation_accept(instance=instance, kind=kind, actor=STAFF, retry=retry)
        except DomainError:
            assert state not in allowed or state in rule.done_states, (kind, state)
            continue
        if state in rule.done_states:
            assert accepted.operation is None
            continue
        assert state in allowed, (kind, state)
        assert accepted.operation.kind == kind and accepted.operation.status == "queued"
        assert accepted.instance.state == rule.entered(retry=retry)
        assert ActivityEvent.objects.filter(object_id=instance.instance_id, action=f"instance.{kind}.retry" if retry else f"instance.{kind}").exists()


def test_retrying_a_failed_create_reprovisions_from_error(make_instance):
    instance = make_instance(instance_id="acc-create", state=S.ERROR)
    failed = Operation.objects.create(instance=instance, tenant_id=instance.tenant_id, kind=K.CREATE, status="failed")
    operation = services.instance_retry_operation(operation=failed, actor=STAFF)
    instance.refresh_from_db()
    assert operation.kind == K.CREATE and instance.state == S.PROVISIONING


def test_retry_of_a_resize_takes_the_current_state_not_the_failed_ones(make_instance):
    instance = make_instance(instance_id="acc-resize", state=S.STOPPED)
    failed = Operation.objects.create(
        instance=instance, tenant_id=instance.tenant_id, kind=K.RESIZE, status="failed", params={"instance_type": "t3.large", "previous_state": S.RUNNING}
    )
    operation = services.instance_retry_operation(operation=failed, actor=STAFF)
    assert operation.params == {"instance_type": "t3.large", "previous_state": S.STOPPED}


def test_start_needs_room_for_one_more_running_instance(make_instance, tenant):
    from orchestrio.models import SubscriptionPlan

    make_instance(instance_id="acc-run", state=S.RUNNING)
    stopped = make_instance(instance_id="acc-stopped", state=S.STOPPED)
    SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(max_running_instances=1)
    with pytest.raises(PlanLimitReached) as caught:
        services.operation_accept(instance=stopped, kind=K.START, actor=STAFF)
    assert caught.value.extra == {"limit": "running_instances", "plan": tenant.plan_id}
    assert not Operation.objects.filter(instance=stopped).exists()


def test_only_destroy_may_be_forced_past_a_running_operation(make_instance):
    instance = make_instance(instance_id="acc-force", state=S.RUNNING)
    stop = services.operation_accept(instance=instance, kind=K.STOP, actor=STAFF).operation
    with pytest.raises(DomainError) as caught:
        services.operation_accept(instance=instance, kind=K.START, actor=STAFF, force=True)
    assert caught.value.status_code == 409
    accepted = services.operation_accept(instance=instance, kind=K.DESTROY, actor=STAFF, force=True)
    stop.refresh_from_db()
    assert stop.status == "failed" and stop.error_code == "superseded"
    assert accepted.instance.state == S.DESTROYING


@pytest.fixture
def staff(client, db):
    user = get_user_model().objects.create_superuser("ops@orchestrio.example", "ops@orchestrio.example", "staff-password-1")
    client.force_login(user)
    return client


@pytest.mark.parametrize("kind", [K.STOP, K.SUSPEND, K.RESUME, K.RESTART, K.RESIZE])
def test_admin_retry_of_an_operation_that_cannot_restart_from_error_is_a_message(staff, make_instance, kind):
    """The failed operation put the instance in `error`, from which only start, create and destroy
    lead anywhere: the admin says so instead of answering 500."""
    instance = make_instance(instance_id=f"acc-adm-{kind}", state=S.ERROR)
    Operation.objects.create(instance=instance, tenant_id=instance.tenant_id, kind=kind, status="failed", params={"instance_type": "t3.large"})
    response = staff.post("/admin/instances/instance/", {"action": "retry_failed_operation", "_selected_action": [instance.pk]}, follow=True)
    assert response.status_code == 200
    assert any(f"cannot {lifecycle.RULES[kind].verb}" in str(m) for m in response.context["messages"])
    assert Operation.objects.filter(instance=instance).count() == 1


def test_api_answers_400_where_the_rule_refuses(api, make_instance):
    make_instance(instance_id="acc-api", state=S.STOPPED)
    body = assert_error(api.post("instances/acc-api/stop"), 400)
    assert "stop needs an instance that is running" in body["detail"]


def test_no_code_but_operation_accept_records_an_operation():
    """A second "accept" path would create Operation rows (or call the private helper) itself."""
    offenders = []
    for path in (path for app in sorted(ROOT.iterdir()) if app.is_dir() and not app.name.startswith(".") for path in app.rglob("*.py")):
        if any(part in {".venv", "tests", "migrations", "bench"} for part in path.relative_to(ROOT).parts):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
                target = ast.unparse(call.func)
                if target in {"Operation.objects.create", "Operation.objects.bulk_create", "_operation_create"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} {function.name} → {target}")
    assert all(" operation_accept → " in o or " _operation_create → Operation.objects.create" in o for o in offenders), offenders
    assert any(" operation_accept → _operation_create" in o for o in offenders)
