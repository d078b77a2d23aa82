"""Plan limits: the one place that decides whether a tenant's plan has room, and the one 402 body
(API.md: `{"detail", "limit", "plan"}`) when it has not.

Callers name the limit and, for the counted ones, how many are used; the plan field, the wording
and the error are here. Counting is the caller's (it knows its rows), and it is passed as a
callable so that an unlimited plan costs no query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import PlanLimitReached


@dataclass(frozen=True)
class Limit:
    field: str  # the plan's field: a number (None: unlimited) or a feature flag
    noun: str  # what the plan allows, for the message
    hint: str = ""  # what the tenant can do short of upgrading (counted limits)
    feature: bool = False  # a feature whose field is a number (0: not included), not a flag

    @property
    def counted(self) -> bool:
        return not (self.feature or self.field.startswith("feature_"))


LIMITS: dict[str, Limit] = {
    "instances": Limit("max_instances", "instances (stopped and suspended ones count)", "destroy one"),
    "running_instances": Limit("max_running_instances", "running instances", "stop or suspend one"),
    "tokens": Limit("max_tokens", "active API tokens", "revoke one"),
    "deployments": Limit("max_deployments", "deployments", "delete one"),
    "executions": Limit("executions_per_month", "executions a month", "wait for the next period"),
    "custom_domains": Limit("feature_custom_domains", "custom domains"),
    "oidc_gateway": Limit("feature_oidc_gateway", "OIDC gateway policies"),
    "deployment_rollback": Limit("feature_deployment_rollback", "deployment rollback"),
    "addons_feature": Limit("feature_addons", "PostgreSQL and Redis add-ons"),
    "addons": Limit("max_addons", "add-ons", "destroy one"),
    "addon_backups_feature": Limit("addon_backup_retention_days", "add-on backups", feature=True),
    "addon_backups": Limit("addon_backups_per_day", "manual backups of an add-on a day (UTC)", "wait for tomorrow, turn on automatic backups"),
}


def limit_reached(*, plan, limit: str, needed: int = 1, used: int | None = None) -> PlanLimitReached:
    """The one 402 error for `limit` on `plan` (anything with `pk`, `name` and the limit's field);
    `needed` > 1 for a batch (a fleet request), with how many are `used`."""
    rule = LIMITS[limit]
    if rule.counted and needed > 1:
        allowed = getattr(plan, rule.field)
        left = max(allowed - (used or 0), 0)
        detail = f"the {plan.name} plan allows {allowed} {rule.noun}: this request needs {needed} and {left} are left; {rule.hint}, ask for fewer, or upgrade"
    elif rule.counted:
        detail = f"the {plan.name} plan allows {getattr(plan, rule.field)} {rule.noun} and they are used; {rule.hint}, or upgrade"
    else:
        detail = f"the {plan.name} plan does not include {rule.noun}; upgrade to use them"
    return PlanLimitReached(detail, limit=limit, plan=plan.pk)


def limit_check(*, tenant=None, limit: str, used: Callable[[], int] | None = None, plan=None, needed: int = 1) -> None:
    """Raise the 402 when `tenant`'s plan (or `plan`, when the caller read it without the tenant)
    has no room for `needed` more of `limit` (one, unless a batch asks for several). Counted
    limits need `used`, called only when the plan sets a number."""
    rule = LIMITS[limit]
    plan = plan if plan is not None else tenant.plan
    allowed = getattr(plan, rule.field)
    if not rule.counted:
        if not allowed:
            raise limit_reached(plan=plan, limit=limit)
        return
    if allowed is None:
        return
    if used is None:
        raise TypeError(f"limit_check({limit!r}) counts: pass used=")
    count = used()
    if count + needed > allowed:
        raise limit_reached(plan=plan, limit=limit, needed=needed, used=count)
