"""`orchestrio.limits` is the one home of plan limits: every limit reads a real plan field, every
402 carries the one body (API.md: detail, limit, plan) in the one wording, and no other code
raises PlanLimitReached itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from orchestrio.models import SubscriptionPlan
from orchestrio.errors import PlanLimitReached
from orchestrio.limits import LIMITS, limit_check, limit_reached

from ..factories import InstanceFactory

ROOT = Path(__file__).resolve().parents[2]


def test_every_limit_names_a_field_of_the_plan():
    fields = {field.name for field in SubscriptionPlan._meta.get_fields()}
    for name, rule in LIMITS.items():
        assert rule.field in fields, name
        # A flag is a feature; a number is counted, unless the limit says it is a feature whose
        # number is not a count (0: not included, e.g. the days add-on backups are kept).
        is_flag = SubscriptionPlan._meta.get_field(rule.field).get_internal_type() == "BooleanField"
        assert rule.counted == (not is_flag and not rule.feature), name
        assert not (is_flag and rule.feature), name


def test_counted_limit_counts_only_when_the_plan_sets_a_number():
    plan = SubscriptionPlan(id="p", name="p", max_tokens=None)

    def explode():
        raise AssertionError("counted although unlimited")

    limit_check(plan=plan, limit="tokens", used=explode)
    plan.max_tokens = 2
    limit_check(plan=plan, limit="tokens", used=lambda: 1)
    with pytest.raises(PlanLimitReached) as caught:
        limit_check(plan=plan, limit="tokens", used=lambda: 2)
    assert caught.value.body() == {
        "detail": "the p plan allows 2 active API tokens and they are used; revoke one, or upgrade",
        "limit": "tokens",
        "plan": "p",
    }


def test_feature_limit():
    plan = SubscriptionPlan(id="p", name="p", feature_custom_domains=False)
    with pytest.raises(PlanLimitReached) as caught:
        limit_check(plan=plan, limit="custom_domains")
    assert caught.value.body() == {"detail": "the p plan does not include custom domains; upgrade to use them", "limit": "custom_domains", "plan": "p"}
    plan.feature_custom_domains = True
    limit_check(plan=plan, limit="custom_domains")


def test_every_402_of_the_api_is_the_one_body(api, tenant):
    """Each caller of every limit answers exactly what limit_reached words for its plan."""

    def plan(**fields):
        SubscriptionPlan.objects.filter(pk=tenant.plan_id).update(**fields)
        return SubscriptionPlan.objects.get(pk=tenant.plan_id)

    cases = [
        (lambda: plan(max_instances=0), lambda: api.post("instances", {"instance_id": "one-1"}), "instances"),
        (lambda: plan(max_instances=None, max_running_instances=0), lambda: api.post("instances", {"instance_id": "one-2"}), "running_instances"),
        (lambda: plan(max_running_instances=None, max_tokens=0), lambda: api.post("api-tokens", {"name": "x"}), "tokens"),
        (lambda: plan(max_deployments=0), lambda: api.post("deployments", {"name": "one-dep"}), "deployments"),
        (lambda: plan(executions_per_month=0), lambda: api.post("instances/one-run/tasks", {"operation_code": "x", "script_path": "/opt/orchestrio/scripts/backup.sh"}), "executions"),
        (lambda: plan(feature_custom_domains=False), lambda: api.post("instances/one-run/custom-domain", {"domain": "a.example.com"}), "custom_domains"),
        (lambda: plan(feature_oidc_gateway=False), lambda: api.post("instances/one-run/gateway-policies", {"provider": "github-oidc", "audience": "a"}), "oidc_gateway"),
    ]
    InstanceFactory(tenant=tenant, instance_id="one-run", state="running")
    for set_plan, request, limit in cases:
        expected = limit_reached(plan=set_plan(), limit=limit).body()
        response = request()
        assert response.status_code == 402, (limit, response.content)
        assert response.json() == expected


def test_no_code_but_orchestrio_limits_raises_plan_limit_reached():
    offenders = []
    for path in (path for app in sorted(ROOT.iterdir()) if app.is_dir() and not app.name.startswith(".") for path in app.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {".venv", "tests", "bench"} or "migrations" in relative.parts or relative == Path("orchestrio/limits.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("PlanLimitReached"):
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []
