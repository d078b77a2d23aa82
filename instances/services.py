"""State changes for instances, their operations and blueprints.

Every lifecycle request follows one pattern: lock the instance row (`SELECT … FOR UPDATE`), refuse
if another operation is unfinished (409, with that operation) or the state does not allow it
(400), record the operation and the transitional state, write the audit log, and enqueue the job
when the transaction commits. Two requests racing for one instance: the second waits for the
lock, then sees the first one's operation and gets 409.

Jobs report back through `operation_begin`, `instance_advance`, `instance_record_machine`,
`operation_succeed` and `operation_fail`; each re-checks the operation under a lock, so a job
that a reconciler already gave up on cannot overwrite the outcome.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import Counter, defaultdict
from datetime import timedelta
from datetime import timezone as dt_timezone
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from orchestrio import crypto
from orchestrio.errors import Conflict, DomainError, Forbidden, InvalidState, NotFound, UpstreamError, UpstreamTimeout, ValidationFailed
from orchestrio.hooks import tenant_event, tenant_events
from orchestrio.limits import limit_check
from orchestrio.models import Tenant
from orchestrio.queue import enqueue_on_commit
from orchestrio.services import activity_record, activity_record_many
from orchestrio.tenancy import Actor, Principal

from . import hooks, lifecycle
from .agent_client import AgentError, AgentTimeout, AgentUnreachable, agent_client_for, stats_many
from .choices import (
    ALLOCATION_STRATEGIES,
    FLEET_PROVIDER_APIS,
    MAX_MACHINE_TYPES,
    SUPPORTED_PROVIDER_APIS,
    UNFINISHED_OPERATION_STATUSES,
    ErrorCode,
    HealthStatus,
    InstanceState,
    LogLevel,
    OperationKind,
    OperationReason,
    OperationStatus,
    StatResolution,
)
from .health import probe_one
from .hostnames import instance_id_problem
from .models import Blueprint, Instance, InstancePlan, InstanceStatSample, LogLine, Operation, Region
from .providers.sandbox import refuse_command_reason
from .selectors import RUNNING_STATES, STAT_FIGURES, blueprint_visible, counted_instances, stat_hours, stats_targets

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_MAX_SECONDS = 30 * 86400
INSTANCE_UPDATE_FIELDS = ("idle_timeout_seconds",)
IDLE_ACTOR = Actor.system("idle-sweep")
WAKE_ACTOR = Actor.system("wake-on-request")
LABEL_KEY_RE = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")
MAX_LABELS = 32
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")


# --- log lines ---------------------------------------------------------------------------------


def log_append(
    *, instance: Instance, stage: str, message: str, level: str = LogLevel.INFO, operation: Operation | None = None
) -> LogLine:
    """Append a lifecycle log line with the instance's next `seq` (allocated atomically)."""
    return log_append_many(lines=[LogLine(instance_id=instance.pk, operation=operation, stage=stage, level=level, message=message)])[0]


def log_append_many(*, lines: list[LogLine]) -> list[LogLine]:
    """Insert unsaved lines (instance_id, stage, level, message, operation) in one bulk insert, each
    with its instance's next `seq`, in list order: every instance's block of numbers is allocated
    atomically (`UPDATE … RETURNING`, one statement per batch of instances taking as many)."""
    counts = Counter(line.instance_id for line in lines)
    taking: dict[int, list[int]] = defaultdict(list)
    for pk, count in counts.items():
        taking[count].append(pk)
    last: dict[int, int] = {}
    with connection.cursor() as cursor:
        for count, pks in taking.items():
            size = connection.ops.bulk_batch_size(["id"], pks)
            for batch in (pks[i : i + size] for i in range(0, len(pks), size)):
                cursor.execute(
                    f"UPDATE {Instance._meta.db_table} SET log_seq = log_seq + %s WHERE id IN ({', '.join(['%s'] * len(batch))}) RETURNING id, log_seq",
                    [count, *batch],
                )
                last.update(cursor.fetchall())
    following = {pk: seq - counts[pk] + 1 for pk, seq in last.items()}
    for line in lines:
        line.seq = following[line.instance_id]
        following[line.instance_id] += 1
        line.stage = line.stage[:32]
    return LogLine.objects.bulk_create(lines)


# --- helpers -----------------------------------------------------------------------------------


def _lock(instance: Instance) -> Instance:
    locked = (
        Instance.objects.select_for_update(of=("self",))
        .select_related("blueprint", "plan", "region", "tenant__plan")
        .filter(pk=instance.pk)
        .first()
    )
    if locked is None:
        raise NotFound(f"no instance {instance.instance_id!r} in this tenant")
    return locked


def _unfinished(instance: Instance) -> Operation | None:
    return instance.operations.filter(status__in=UNFINISHED_OPERATION_STATUSES).order_by("-created_at").first()


def _refuse_if_busy(instance: Instance, verb: str) -> None:
    running = _unfinished(instance)
    if running is not None:
        raise Conflict(
            f"cannot {verb} {instance.instance_id}: a {running.kind} operation is {running.status}; wait for it to finish",
            operation=running.summary(),
        )


def _operation_create(instance: Instance, kind: str, actor: Actor, params: dict | None = None, reason: str = "", held_by: str = "") -> Operation:
    try:
        with transaction.atomic():
            operation = Operation.objects.create(
                instance=instance,
                tenant_id=instance.tenant_id,
                kind=kind,
                reason=reason,
                params=params or {},
                requested_by=actor.label[:254],
                requested_by_type=actor.type,
            )
    except IntegrityError as exc:  # the partial unique index: a second unfinished operation
        raise Conflict(f"another operation is already running on {instance.instance_id}") from exc
    if held_by:  # another job (a fleet batch's) runs it when it has its machine: `operation_release`
        operation.rq_job_id = held_by
        operation.save(update_fields=["rq_job_id"])
        return operation
    operation.rq_job_id = f"op-{operation.pk}-1"
    operation.save(update_fields=["rq_job_id"])
    enqueue_on_commit("instances.jobs.run_operation", operation.pk, job_id=operation.rq_job_id)
    return operation


def _check_instance_type(value: str | None, *, field: str) -> None:
    """An EC2-style instance type (family.size); empty: the plan's."""
    if value and not INSTANCE_TYPE_RE.match(value):
        raise ValidationFailed(f"{field} must look like t3.small", field=field)


def new_agent_key() -> str:
    return "oak_" + secrets.token_urlsafe(32)


def _validate_labels(labels: Any) -> dict[str, str]:
    if labels in (None, {}):
        return {}
    if not isinstance(labels, dict):
        raise ValidationFailed("labels must be an object of strings", field="labels")
    if len(labels) > MAX_LABELS:
        raise ValidationFailed(f"at most {MAX_LABELS} labels", field="labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise ValidationFailed(
                [{"loc": ["body", "labels", str(key)], "msg": "label keys are 1–63 lowercase letters, digits, '-', '_' or '.'", "type": "value_error"}]
            )
        if not isinstance(value, str) or len(value) > 255:
            raise ValidationFailed(
                [{"loc": ["body", "labels", key], "msg": "label values are strings of at most 255 characters", "type": "value_error"}]
            )
    return dict(labels)


# --- create ------------------------------------------------------------------------------------


@transaction.atomic
def instance_create(
    *,
    principal: Principal,
    instance_id: str,
    blueprint_name: str = "OpenClaw",
    plan_id: str = "openclaw-basic",
    region: str | None = None,
    labels: dict | None = None,
    config: dict | None = None,
    idempotency_key: str | None = None,
    actor: Actor | None = None,
    idle_timeout_seconds: int | None = None,
    held_by: str = "",
    managed_by: str = "",
) -> Instance:
    """`held_by`: the create waits, queued, for that job (a fleet batch's) to release it.
    `managed_by`: a capability creates it for the tenant (its function instance): not counted
    toward max_instances, one per capability and tenant (Conflict for a second)."""
    actor = actor or principal.actor
    if principal.instance_scope is not None:
        raise Forbidden("an instance-scoped token cannot create instances")
    problem = instance_id_problem(instance_id)
    if problem is not None:
        raise ValidationFailed(problem, field="instance_id")
    labels = _validate_labels(labels)
    _check_idle_timeout(idle_timeout_seconds)
    region_id = region or settings.DEFAULT_REGION

    blueprint = blueprint_visible(tenant=principal.tenant).filter(name=blueprint_name).first()
    if blueprint is None:
        raise ValidationFailed(f"no blueprint named {blueprint_name!r}", field="blueprint_name")
    if blueprint.provider_api not in SUPPORTED_PROVIDER_APIS:
        raise ValidationFailed(f"blueprint {blueprint_name!r} uses {blueprint.provider_api}, which is not supported yet", field="blueprint_name")
    plan = InstancePlan.objects.filter(pk=plan_id, available=True).first()
    if plan is None:
        raise ValidationFailed(f"no available instance plan {plan_id!r}", field="plan_id")
    region_row = Region.objects.filter(pk=region_id).first()
    if region_row is None:
        raise ValidationFailed(f"no region {region_id!r}", field="region")
    if not region_row.available:
        raise ValidationFailed(
            f"region {region_id!r} is not available on this installation (provider {region_row.provider} is not enabled)",
            field="region",
        )
    if region_row.provider == "local":
        _refuse_command(blueprint.command, field="blueprint_name")
    if blueprint.provider_api in FLEET_PROVIDER_APIS and region_row.provider != "aws":
        raise ValidationFailed(
            f"blueprint {blueprint_name!r} launches with {blueprint.provider_api}, which is AWS's: pick an AWS region, not {region_id!r}",
            field="region",
        )

    # Lock the tenant: concurrent creates of one tenant count against the limit one at a time.
    tenant = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=principal.tenant.pk)
    if Instance.objects.filter(instance_id=instance_id, destroyed_at__isnull=True).exists():
        raise Conflict(f"instance_id {instance_id!r} is taken; instance ids are global because they name hostnames")
    if not managed_by:
        limit_check(tenant=tenant, limit="instances", used=counted_instances(tenant=tenant).count)

    instance = Instance(
        instance_id=instance_id,
        tenant=tenant,
        blueprint=blueprint,
        plan=plan,
        region=region_row,
        provider=region_row.provider,
        instance_type=blueprint.instance_type or plan.instance_type,
        labels=labels,
        idle_timeout_seconds=idle_timeout_seconds,
        managed_by=managed_by,
        config=config or {},
        agent_key_encrypted=crypto.encrypt(new_agent_key()),
        idempotency_key=idempotency_key,
        idempotency_principal=principal.key if idempotency_key else "",
        state=InstanceState.PENDING,
    )
    try:
        with transaction.atomic():
            instance.save(force_insert=True)
    except IntegrityError as exc:
        if managed_by:
            raise Conflict(f"{tenant.pk} has a {managed_by} instance already") from exc
        raise Conflict(f"instance_id {instance_id!r} is taken") from exc
    lifecycle.record_state_change(instance, "", InstanceState.PENDING, instance.created_at)
    operation_accept(
        instance=instance,
        kind=OperationKind.CREATE,
        actor=actor,
        note=f"{blueprint.name} on {plan.pk} ({instance.instance_type}) in {region_row.pk}",
        audit={"blueprint": blueprint.name, "plan": plan.pk, "region": region_row.pk},
        held_by=held_by,
    )
    lifecycle.publish_state(instance)
    return instance


# --- lifecycle requests ------------------------------------------------------------------------


class Accepted(NamedTuple):
    instance: Instance  # the locked row, in the state the operation entered
    operation: Operation | None  # None: the rule's `done_states` — asked again, nothing new started


@transaction.atomic
def operation_accept(
    *,
    instance: Instance,
    kind: str,
    actor: Actor,
    params: dict | None = None,
    retry: bool = False,
    force: bool = False,
    audit: dict | None = None,
    note: str = "",
    reason: str = "",
    held_by: str = "",
) -> Accepted:
    """Accept a lifecycle operation, as `lifecycle.RULES[kind]` says: lock the row, answer
    "already" in the rule's done states, refuse when another operation is unfinished (409; staff
    `force` supersedes it where the rule allows), refuse a state the rule (or, for a staff
    `retry`, its retry states) does not start from (400), check the plan has room (402), then
    record the operation, enter the transitional state, log, audit and enqueue on commit.

    `audit` adds to the audit row's data; `note` replaces the log line's default wording;
    `reason` (choices.OperationReason) says why when no person asked (a sleep after idle)."""
    rule = lifecycle.RULES[kind]
    locked = _lock(instance)
    if locked.state in rule.done_states:
        return Accepted(locked, None)
    if locked.destroyed_at is not None or locked.state == InstanceState.DESTROYED:
        raise NotFound(f"no instance {instance.instance_id!r} in this tenant")
    running = _unfinished(locked)
    if running is not None:
        if not (force and rule.forceable):
            raise Conflict(
                f"cannot {rule.verb} {locked.instance_id}: a {running.kind} operation is {running.status}; wait for it to finish",
                operation=running.summary(),
            )
        _finish_operation(running, OperationStatus.FAILED, code=ErrorCode.SUPERSEDED, message=f"superseded by a forced {rule.verb} ({actor.label})")
    allowed = rule.from_states | (rule.retry_from if retry else frozenset())
    entered = rule.entered(retry=retry)
    if locked.state not in allowed or not (locked.state == entered or lifecycle.can_transition(locked.state, entered)):
        raise InvalidState(
            f"cannot {rule.verb} {locked.instance_id}: it is {locked.state}; {rule.verb} needs an instance that is "
            + " or ".join(sorted(allowed))
        )
    if rule.needs_room:
        running_now = Instance.objects.filter(tenant_id=locked.tenant_id, destroyed_at__isnull=True, state__in=RUNNING_STATES).exclude(pk=locked.pk)
        limit_check(tenant=locked.tenant, limit=rule.needs_room, used=running_now.count)
    params = {k: v for k, v in (params or {}).items() if k != "previous_state"}
    if rule.keeps_previous_state:
        params["previous_state"] = locked.state
    operation = _operation_create(locked, kind, actor, params, reason, held_by)
    lifecycle.transition(locked, entered)
    if kind == OperationKind.DESTROY:
        hooks.instance_destroying(locked)  # e.g. its custom domain stops being served from now on
    verb = f"{rule.verb} retried" if retry else f"{rule.verb} accepted"
    why = f", reason {reason}" if reason else ""
    log_append(instance=locked, stage="accepted", message=f"{verb}{': ' + note if note else ''} (requested by {actor.label}{why})", operation=operation)
    data = {"operation": operation.pk, **{k: v for k, v in params.items() if k != "previous_state"}, **(audit or {})}
    if reason:
        data["reason"] = reason
    if rule.forceable:
        data["forced"] = force
    activity_record(
        actor=actor,
        action=f"instance.{kind}.retry" if retry else f"instance.{kind}",
        tenant=locked.tenant_id,
        object_type="instance",
        object_id=locked.instance_id,
        data=data,
    )
    return Accepted(locked, operation)


def instance_resize(
    *, instance: Instance, actor: Actor, plan_id: str | None = None, new_instance_type: str | None = None
) -> Operation:
    if bool(plan_id) == bool(new_instance_type):
        raise ValidationFailed("give exactly one of plan_id or new_instance_type")
    params: dict[str, Any] = {}
    if plan_id:
        plan = InstancePlan.objects.filter(pk=plan_id, available=True).first()
        if plan is None:
            raise ValidationFailed(f"no available instance plan {plan_id!r}", field="plan_id")
        params = {"plan_id": plan.pk, "instance_type": plan.instance_type}
    else:
        _check_instance_type(new_instance_type, field="new_instance_type")
        params = {"instance_type": new_instance_type}
    if params["instance_type"] == instance.instance_type and params.get("plan_id", instance.plan_id) == instance.plan_id:
        raise InvalidState(f"{instance.instance_id} is already {instance.instance_type}")
    return operation_accept(instance=instance, kind=OperationKind.RESIZE, actor=actor, params=params).operation


def instance_cleanup(*, principal: Principal) -> dict[str, int]:
    """Destroy every instance of the tenant that is in `error`."""
    cleaned = errors = 0
    for instance in Instance.objects.filter(tenant=principal.tenant, destroyed_at__isnull=True, state=InstanceState.ERROR):
        try:
            operation_accept(instance=instance, kind=OperationKind.DESTROY, actor=principal.actor)
            cleaned += 1
        except (Conflict, NotFound):
            errors += 1
    return {"cleaned": cleaned, "errors": errors}


def tenant_instances_suspend(*, tenant: Tenant, actor: Actor) -> dict[str, list[str]]:
    """Support staff: suspend every running instance of a tenant (abuse, an unpaid bill), each
    through `operation_accept` (its own transaction, lock and audit row). An instance that is not
    running, or is busy with another operation, is left as it is and named in `skipped` with why."""
    suspended: list[str] = []
    skipped: list[str] = []
    for instance in Instance.objects.filter(tenant=tenant, destroyed_at__isnull=True).order_by("instance_id"):
        # An asleep instance too: suspended by a person, traffic no longer wakes it.
        if instance.state not in (InstanceState.RUNNING, InstanceState.ASLEEP):
            skipped.append(f"{instance.instance_id} is {instance.state}")
            continue
        try:
            accepted = operation_accept(instance=instance, kind=OperationKind.SUSPEND, actor=actor)
        except (Conflict, InvalidState, NotFound) as exc:
            skipped.append(f"{instance.instance_id}: {exc.detail}")
        else:
            if accepted.operation is not None:
                suspended.append(instance.instance_id)
    return {"suspended": suspended, "skipped": skipped}


# --- sleep and wake (docs/lifecycle.md, "Sleep and wake") ----------------------------------------


def idle_timeout_problem(*, value: Any) -> str | None:
    """What is wrong with an idle timeout (None: nothing). Null or 0 never sleeps; otherwise
    INSTANCE_IDLE_TIMEOUT_MIN_SECONDS (the idle sweep's resolution) to 30 days."""
    if value is None:
        return None
    low, high = settings.INSTANCE_IDLE_TIMEOUT_MIN_SECONDS, IDLE_TIMEOUT_MAX_SECONDS
    if isinstance(value, bool) or not isinstance(value, int) or (value != 0 and not low <= value <= high):
        return f"idle_timeout_seconds is 0 or null (never sleep), or a whole number of seconds from {low} to {high} (30 days)"
    return None


def _check_idle_timeout(value: Any) -> None:
    problem = idle_timeout_problem(value=value)
    if problem:
        raise ValidationFailed(problem, field="idle_timeout_seconds")


@transaction.atomic
def instance_update(*, instance: Instance, actor: Actor, fields: dict[str, Any]) -> Instance:
    """Change an instance's own settings (today: `idle_timeout_seconds`, null = the blueprint's,
    0 = never). Audited with the fields that changed."""
    if "idle_timeout_seconds" in fields:
        _check_idle_timeout(fields["idle_timeout_seconds"])
    locked = _lock(instance)
    changed = {}
    for key in INSTANCE_UPDATE_FIELDS:
        if key in fields and getattr(locked, key) != fields[key]:
            changed[key] = fields[key]
            setattr(locked, key, fields[key])
    if changed:
        locked.save(update_fields=[*changed, "updated_at"])
        activity_record(actor=actor, action="instance.update", tenant=locked.tenant_id, object_type="instance", object_id=locked.instance_id, data=changed)
    return locked


def instance_wake_on_request(*, instance: Instance) -> Operation | None:
    """A request reached an asleep instance: accept a wake (reason `request`). None when none was
    started here: another operation is already unfinished (the wake of a concurrent request, or a
    sleep still under way: the caller waits for it) or the instance is no longer asleep."""
    try:
        return operation_accept(instance=instance, kind=OperationKind.WAKE, actor=WAKE_ACTOR, reason=OperationReason.REQUEST).operation
    except (Conflict, InvalidState):
        return None


def instance_sleep_if_idle(*, instance: Instance, last_traffic, now) -> Operation | None:
    """The idle sweep: put a running instance to sleep (reason `idle`) when nothing reached it
    since `last_traffic` for its idle timeout. Re-checked under the row lock (its state, timeout
    and the time it started running); None when it is not idle, or busy."""
    with transaction.atomic():
        locked = _lock(instance)
        timeout = locked.effective_idle_timeout_seconds
        if locked.state != InstanceState.RUNNING or not timeout or _unfinished(locked) is not None:
            return None
        since = max(filter(None, (last_traffic, locked.state_changed_at)))
        if (now - since).total_seconds() < timeout:
            return None
        idle_for = int((now - since).total_seconds())
        return operation_accept(
            instance=locked, kind=OperationKind.SLEEP, actor=IDLE_ACTOR, reason=OperationReason.IDLE,
            note=f"no traffic for {idle_for}s (idle timeout {timeout}s)", audit={"idle_seconds": idle_for, "idle_timeout_seconds": timeout},
        ).operation  # fmt: skip


def instance_retry_operation(*, operation: Operation, actor: Actor) -> Operation:
    """Staff action: run a failed operation again, with its parameters (the instance is usually in
    `error`; which states a retry starts from is the rule's)."""
    if operation.status != OperationStatus.FAILED:
        raise InvalidState("only failed operations can be retried")
    return operation_accept(instance=operation.instance, kind=operation.kind, actor=actor, params=operation.params, retry=True).operation


# --- config and agent key ----------------------------------------------------------------------


def merge_patch(*, target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7396)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(target=result.get(key), patch=value)
    return result


def config_check_size(*, config: Any, loc: list[str]) -> None:
    """An instance's or a deployment's config is at most CONFIG_MAX_BYTES as JSON (a merge patch
    can grow it past what one body carries)."""
    import json

    if len(json.dumps(config)) > settings.CONFIG_MAX_BYTES:
        raise ValidationFailed([{"loc": loc, "msg": f"the config must be at most {settings.CONFIG_MAX_BYTES // 1024} KiB as JSON", "type": "value_error"}])


@transaction.atomic
def instance_config_update(*, instance: Instance, patch: dict, actor: Actor, managed: bool = False) -> Instance:
    """`managed`: the caller is the app that owns the keys it sets (hooks.managed_config_key)."""
    if not isinstance(patch, dict):
        raise ValidationFailed("the body must be a JSON object (a JSON merge patch)")
    for key in patch if not managed else ():
        if hooks.managed_config_key(key):
            raise ValidationFailed(f"{key!r} is set with {hooks.managed_config_key(key)}, which validates it", field=key)
    locked = _lock(instance)
    merged = merge_patch(target=locked.config or {}, patch=patch)
    config_check_size(config=merged, loc=["body"])
    locked.config = merged
    locked.save(update_fields=["config", "updated_at"])
    activity_record(
        actor=actor,
        action="instance.config.update",
        tenant=locked.tenant_id,
        object_type="instance",
        object_id=locked.instance_id,
        data={"changed_keys": sorted(patch.keys())},
    )
    return locked


def instance_config_apply(*, instance: Instance, actor: Actor) -> dict:
    """Push the stored config to the running instance's agent."""
    if instance.state != InstanceState.RUNNING:
        raise InvalidState(f"cannot apply config: {instance.instance_id} is {instance.state}, not running")
    client = agent_client_for(instance)
    try:
        result = client.put_config(instance.config or {})
    except AgentTimeout as exc:
        raise UpstreamTimeout(str(exc)) from exc
    except (AgentUnreachable, AgentError) as exc:
        raise UpstreamError(f"the instance agent refused the config: {exc}") from exc
    log_append(instance=instance, stage="config", message=f"config applied to the agent (digest {result.get('digest', '?')[:12]}) by {actor.label}")
    activity_record(actor=actor, action="instance.config.apply", tenant=instance.tenant_id, object_type="instance", object_id=instance.instance_id, data={"digest": result.get("digest")})
    return result


def instance_app_logs(*, instance: Instance, after: int = 0, since=None, tail: int = 100, stream: str = "", q: str = "") -> dict:
    """The running instance's own stdout/stderr, read from its agent (every provider runs one):
    the last `tail` lines after sequence number `after`, at or after `since`, of one `stream` or
    both, containing `q`; with its starts and last exit code."""
    if instance.state != InstanceState.RUNNING:
        raise InvalidState(f"app logs are read from the running instance; {instance.instance_id} is {instance.state}")
    since_text = since.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if since else ""
    try:
        body = agent_client_for(instance).app_logs(after=after, since=since_text, tail=tail, stream=stream, q=q)
    except AgentTimeout as exc:
        raise UpstreamTimeout(str(exc)) from exc
    except (AgentUnreachable, AgentError) as exc:
        raise UpstreamError(f"the instance agent did not give its logs: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
        raise UpstreamError("the instance agent answered its logs in an unexpected shape")
    return body


def instance_rotate_agent_key(*, instance: Instance, actor: Actor) -> Instance:
    """Issue a new agent key and push it to the running agent, holding no row lock over the
    network: lock → record the new key as pending → commit → tell the agent → lock → put the
    pending key in force (or drop it when the agent refused) → commit.

    The agent arbitrates a rotation cut short (the process died after the agent took a key the
    row never put in force): the next rotation finds the old key refused, presents the pending
    one, and goes on from there."""
    new_key = new_agent_key()
    with transaction.atomic():
        locked = _lock(instance)
        _refuse_if_busy(locked, "rotate the agent key of")
        if locked.state != InstanceState.RUNNING:
            raise InvalidState(f"rotate the agent key while the instance is running (it is {locked.state}): the new key is pushed to its agent")
        earlier = locked.agent_key_pending_encrypted
        locked.agent_key_pending_encrypted = crypto.encrypt(new_key)
        locked.save(update_fields=["agent_key_pending_encrypted", "updated_at"])
    pending = locked.agent_key_pending_encrypted
    try:
        _agent_set_key(locked, new_key, earlier=earlier)
    except DomainError:
        with transaction.atomic():
            Instance.objects.filter(pk=locked.pk, agent_key_pending_encrypted=pending).update(agent_key_pending_encrypted="")
        raise
    with transaction.atomic():
        locked = _lock(instance)
        if locked.agent_key_pending_encrypted != pending:
            raise Conflict(f"another agent key rotation of {locked.instance_id} overtook this one; its key is in force")
        locked.agent_key_encrypted, locked.agent_key_pending_encrypted = pending, ""
        locked.agent_key_rotated_at = timezone.now()
        locked.save(update_fields=["agent_key_encrypted", "agent_key_pending_encrypted", "agent_key_rotated_at", "updated_at"])
        log_append(instance=locked, stage="agent-key", message=f"agent key rotated by {actor.label}")
        activity_record(actor=actor, action="instance.rotate_agent_key", tenant=locked.tenant_id, object_type="instance", object_id=locked.instance_id)
    return locked


def _agent_set_key(instance: Instance, new_key: str, *, earlier: str) -> None:
    """Send `new_key` to the agent with the key in force (or, when the agent refuses that one and
    an earlier rotation left a pending key, with that one). No lock is held here."""
    client = agent_client_for(instance)
    try:
        try:
            client.set_key(new_key)
        except AgentError as exc:
            if exc.status_code != 401 or not earlier:
                raise
            client.key = crypto.decrypt(earlier)
            client.set_key(new_key)
    except AgentTimeout as exc:
        raise UpstreamTimeout(f"the agent did not confirm the new key: {exc}") from exc
    except (AgentUnreachable, AgentError) as exc:
        raise UpstreamError(f"the agent did not accept the new key; the old key stays in force: {exc}") from exc


# --- called by jobs ----------------------------------------------------------------------------


def operation_lease_name(*, operation_id: int) -> str:
    """The lease a worker holds while it runs the operation (jobs.run_operation); the reconciler
    reads it to tell a live run from a dead worker's."""
    return f"operation:{operation_id}"


def operation_begin(*, operation: Operation) -> Operation | None:
    """Mark the operation running (counting the attempt). None when it already finished."""
    with transaction.atomic():
        op = Operation.objects.select_for_update(of=("self",)).filter(pk=operation.pk).first()
        if op is None or op.is_finished:
            return None
        op.status = OperationStatus.RUNNING
        op.attempts += 1
        if op.started_at is None:
            op.started_at = timezone.now()
        op.save(update_fields=["status", "attempts", "started_at"])
    return Operation.objects.select_related(
        "instance__blueprint", "instance__plan", "instance__region", "instance__tenant__plan"
    ).get(pk=op.pk)


def operation_is_current(*, operation: Operation) -> bool:
    return Operation.objects.filter(pk=operation.pk, status=OperationStatus.RUNNING).exists()


@transaction.atomic
def instance_advance(*, operation: Operation, to_state: str, stage: str, message: str) -> bool:
    """Move to an intermediate state of a running operation (restart: stopping → stopped → starting)."""
    op = Operation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
    if op.is_finished:
        return False
    instance = _lock(op.instance)
    if instance.state != to_state:
        lifecycle.transition(instance, to_state)
    log_append(instance=instance, stage=stage, message=message, operation=op)
    operation.instance = instance
    return True


@transaction.atomic
def instance_record_machine(*, operation: Operation, machine, message: str | None = None, instance_type: str | None = None, plan_id: str | None = None) -> Instance:
    """Remember what the provider reported (ids, address, provider facts)."""
    instance = _lock(operation.instance)
    fields = ["updated_at"]
    if machine.provider_instance_id and machine.provider_instance_id != instance.provider_instance_id:
        instance.provider_instance_id = machine.provider_instance_id
        fields.append("provider_instance_id")
    if machine.ip_address != instance.ip_address and machine.ip_address is not None:
        instance.ip_address = machine.ip_address
        fields.append("ip_address")
    if machine.port and machine.port != instance.port:
        instance.port = machine.port
        fields.append("port")
    if machine.socket_path and machine.socket_path != instance.socket_path:
        instance.socket_path = machine.socket_path
        fields.append("socket_path")
    if machine.provider_data:
        instance.provider_data = {**(instance.provider_data or {}), **machine.provider_data}
        fields.append("provider_data")
    if instance_type and instance_type != instance.instance_type:
        instance.instance_type = instance_type
        fields.append("instance_type")
    if plan_id and plan_id != instance.plan_id:
        instance.plan_id = plan_id
        fields.append("plan")
    instance.save(update_fields=fields)
    if message:
        log_append(instance=instance, stage="provider", message=message, operation=operation)
    operation.instance = instance
    return instance


def _finish_operation(op: Operation, status: str, *, code: str = "", message: str = "") -> None:
    op.status = status
    op.finished_at = timezone.now()
    op.error_code = code
    op.error_message = message
    op.ready_deadline = None
    op.save(update_fields=["status", "finished_at", "error_code", "error_message", "ready_deadline"])


@transaction.atomic
def operation_await_ready(*, operation: Operation, deadline, message: str, detail: str) -> bool:
    """The machine is up but not answering its health path yet: leave the operation running with
    no worker, for the readiness sweep to finish (as `message`) or fail at `deadline`."""
    op = Operation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
    if op.is_finished:
        return False
    op.ready_deadline = deadline
    op.params = {**(op.params or {}), "ready_message": message}
    op.save(update_fields=["ready_deadline", "params"])
    log_append(instance=op.instance, stage="health", message=f"waiting for {op.instance.blueprint.health_path} to answer (last: {detail}); checked every {settings.READINESS_SWEEP_SECONDS}s until {deadline:%H:%M:%S}Z", operation=op)
    return True


@transaction.atomic
def operation_succeed(*, operation: Operation, to_state: str, message: str) -> bool:
    op = Operation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
    if op.is_finished:
        logger.info("operation %s already finished (%s); not overwriting", op.pk, op.status)
        return False
    instance = _lock(op.instance)
    lifecycle.transition(instance, to_state)
    _finish_operation(op, OperationStatus.SUCCEEDED)
    log_append(instance=instance, stage="done", message=message, operation=op)
    if to_state == InstanceState.DESTROYED:
        hooks.instance_destroyed(instance)
        activity_record(actor=Actor.system(), action="instance.destroyed", tenant=instance.tenant_id, object_type="instance", object_id=instance.instance_id, data={"operation": op.pk})
    return True


@transaction.atomic
def operation_fail(*, operation: Operation, code: str, message: str, actor: Actor | None = None) -> bool:
    op = Operation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
    if op.is_finished:
        return False
    instance = _lock(op.instance)
    _finish_operation(op, OperationStatus.FAILED, code=code, message=message)
    if instance.state not in (InstanceState.DESTROYED, InstanceState.ERROR):
        lifecycle.transition(instance, InstanceState.ERROR, error_message=message)
        tenant_event(instance.tenant_id, "instance.error", {"instance_id": instance.instance_id, "operation": op.kind, "error_code": code, "error_message": message})
    elif instance.state == InstanceState.ERROR:
        instance.error_message = message
        instance.save(update_fields=["error_message", "updated_at"])
    log_append(instance=instance, stage="failed", message=f"{op.kind} failed ({code}): {message}", level=LogLevel.ERROR, operation=op)
    activity_record(
        actor=actor or Actor.system(),
        action="instance.operation_failed",
        tenant=instance.tenant_id,
        object_type="instance",
        object_id=instance.instance_id,
        data={"operation": op.pk, "kind": op.kind, "error_code": code, "error_message": message},
    )
    return True


def operation_requeue(*, operation: Operation, actor: Actor, reason: str) -> bool:
    """The reconciler re-enqueues an operation whose job is gone (jobs are idempotent)."""
    with transaction.atomic():
        op = Operation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
        if op.is_finished:
            return False
        op.rq_job_id = f"op-{op.pk}-{op.attempts + 1}-{secrets.token_hex(4)}"
        op.status = OperationStatus.QUEUED
        op.save(update_fields=["rq_job_id", "status"])
        log_append(instance=op.instance, stage="reconciler", message=f"{op.kind}: {reason}; running it again (attempt {op.attempts + 1})", level=LogLevel.WARNING, operation=op)
        activity_record(actor=actor, action="instance.operation_requeued", tenant=op.tenant_id, object_type="instance", object_id=op.instance.instance_id, data={"operation": op.pk, "reason": reason})
        enqueue_on_commit("instances.jobs.run_operation", op.pk, job_id=op.rq_job_id)
    return True


def operation_hold(*, operation: Operation, job_id: str) -> bool:
    """A running create whose machine another job launches (a fleet batch): back to queued under
    that job, which releases it (`operation_release`) once the machine is assigned. The reconciler
    sees the operation queued with a live job, as for any queued operation."""
    with transaction.atomic():
        op = Operation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
        if op.is_finished:
            return False
        op.status, op.rq_job_id = OperationStatus.QUEUED, job_id
        op.save(update_fields=["status", "rq_job_id"])
        log_append(instance=op.instance, stage="accepted", message=f"waiting for its machine from the batch ({job_id})", operation=op)
    return True


def operation_release(*, operation: Operation) -> bool:
    """Run a held operation now (the job that held it has done its part): its own job id, enqueued
    on commit. False when it was not held any more (finished, or already released)."""
    with transaction.atomic():
        op = Operation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
        if op.status != OperationStatus.QUEUED or op.rq_job_id.startswith("op-"):
            return False
        op.rq_job_id = f"op-{op.pk}-{op.attempts + 1}-{secrets.token_hex(4)}"
        op.save(update_fields=["rq_job_id"])
        enqueue_on_commit("instances.jobs.run_operation", op.pk, job_id=op.rq_job_id)
    return True


# --- health ------------------------------------------------------------------------------------


def instance_health_check(*, instance: Instance, audit_actor: Actor | None = None) -> dict:
    """Probe a running instance now (no lock is held while it answers) and record the result like
    the sweep does; the API's health body. A staff check names `audit_actor` and is audited."""
    if instance.state != InstanceState.RUNNING:
        raise InvalidState(f"{instance.instance_id} is {instance.state}; only a running instance can be probed")
    result = probe_one(instance)
    health_record(results=[{"pk": instance.pk, "ok": result["healthy"], "status": instance.health_status, "failures": instance.health_failures, "detail": result["error"] or ""}])
    if audit_actor is not None:
        activity_record(actor=audit_actor, action="instance.health_check", tenant=instance.tenant_id, object_type="instance", object_id=instance.instance_id, data={"healthy": result["healthy"]})
    return result

# Health changes are written in batches: one transaction each, holding its instances' row locks.
HEALTH_CHANGE_BATCH = 500


def health_record(*, results: list[dict]) -> dict[str, int]:
    """Record a sweep's probe results: bulk updates for the steady ones, a log line and an audit
    event for each instance whose health changed (in batches of HEALTH_CHANGE_BATCH). Each result:
    pk, ok, status (current), failures."""
    now = timezone.now()
    threshold = settings.HEALTH_FAILURE_THRESHOLD
    steady_ok, steady_fail, changes = [], [], []
    for r in results:
        if r["ok"]:
            if r["status"] == HealthStatus.HEALTHY:
                steady_ok.append(r["pk"])
            else:
                changes.append((r, HealthStatus.HEALTHY, 0))
        else:
            failures = r["failures"] + 1
            if failures >= threshold and r["status"] != HealthStatus.UNHEALTHY:
                changes.append((r, HealthStatus.UNHEALTHY, failures))
            else:
                steady_fail.append(r["pk"])
    running = Q(state=InstanceState.RUNNING, destroyed_at__isnull=True)
    if steady_ok:
        Instance.objects.filter(running, pk__in=steady_ok).update(last_health_check=now, health_failures=0)
    if steady_fail:
        from django.db.models import F

        Instance.objects.filter(running, pk__in=steady_fail).update(last_health_check=now, health_failures=F("health_failures") + 1)
    for start in range(0, len(changes), HEALTH_CHANGE_BATCH):
        _health_changes(changes[start : start + HEALTH_CHANGE_BATCH], now)
    return {"healthy": len(steady_ok) + sum(1 for c in changes if c[1] == HealthStatus.HEALTHY), "failing": len(steady_fail) + sum(1 for c in changes if c[1] == HealthStatus.UNHEALTHY), "changed": len(changes)}


@transaction.atomic
def _health_changes(changes: list[tuple[dict, str, int]], now) -> None:
    """Apply (result, new status, failures) changes: lock those instances still running (the others
    are skipped), update them (one UPDATE per new status and failure count: in practice two), and
    write each one's alert, log line and audit event in bulk."""
    locked = Instance.objects.select_for_update(of=("self",)).filter(
        pk__in=[result["pk"] for result, _, _ in changes], state=InstanceState.RUNNING, destroyed_at__isnull=True
    ).order_by("pk").values_list("pk", "instance_id", "tenant_id", "health_status")
    instances = {pk: (instance_id, tenant_id, previous) for pk, instance_id, tenant_id, previous in locked}
    actor = Actor.system("health-checker")
    changed, raised, lines, events = defaultdict(list), [], [], []
    for result, status, failures in changes:
        if result["pk"] not in instances:
            continue
        instance_id, tenant_id, previous = instances[result["pk"]]
        changed[status, failures].append(result["pk"])
        detail = result.get("detail") or ""
        if status == HealthStatus.UNHEALTHY:
            raised.append((tenant_id, "instance.health_down", {"instance_id": instance_id, "failures": failures, "detail": detail}))
        elif previous == HealthStatus.UNHEALTHY:
            raised.append((tenant_id, "instance.health_up", {"instance_id": instance_id}))
        level = LogLevel.INFO if status == HealthStatus.HEALTHY else LogLevel.WARNING
        lines.append(LogLine(instance_id=result["pk"], stage="health", level=level, message=f"health {previous} → {status}" + (f": {detail}" if detail else "")))
        events.append(
            {
                "actor": actor,
                "action": f"instance.health.{status}",
                "tenant": tenant_id,
                "object_type": "instance",
                "object_id": instance_id,
                "data": {"previous": previous, "failures": failures, "detail": detail[:200]},
            }
        )
    for (status, failures), pks in changed.items():
        Instance.objects.filter(pk__in=pks).update(health_status=status, health_failures=failures, last_health_check=now, updated_at=timezone.now())
    tenant_events(raised)
    log_append_many(lines=lines)
    activity_record_many(records=events)


# --- blueprints --------------------------------------------------------------------------------

BLUEPRINT_FIELDS = (
    "description", "provider_api", "image_id", "instance_type", "subnet_ids", "security_group_ids", "key_name",
    "iam_instance_profile", "user_data", "tags", "health_path", "agent_port", "command", "task_roots",
    "machine_types", "on_demand_percentage", "allocation_strategy", "idle_timeout_seconds",
)  # fmt: skip
MAX_MACHINE_WEIGHT = 1000
FLEET_FIELDS = ("machine_types", "on_demand_percentage", "allocation_strategy")


def blueprint_fleet_problem(*, provider_api: str, machine_types: Any, on_demand_percentage: Any, allocation_strategy: Any) -> tuple[str, str] | None:
    """What is wrong with a blueprint's fleet settings, as (field, message); None: nothing.
    `machine_types` is {instance type: weight} (1–20 types, weights > 0; empty: the instance's
    own type with weight 1), `on_demand_percentage` 0–100, `allocation_strategy` one of the
    blueprint API's own names (empty: its default)."""
    machine_types = machine_types or {}
    if provider_api not in FLEET_PROVIDER_APIS:
        if machine_types:
            return "machine_types", f"machine_types apply to EC2Fleet and SpotFleet blueprints only, not {provider_api}"
        if allocation_strategy:
            return "allocation_strategy", f"allocation_strategy applies to EC2Fleet and SpotFleet blueprints only, not {provider_api}"
        if on_demand_percentage not in (None, 100):
            return "on_demand_percentage", f"on_demand_percentage applies to EC2Fleet and SpotFleet blueprints only ({provider_api} launches on-demand)"
        return None
    if not isinstance(machine_types, dict):
        return "machine_types", "machine_types must be an object of instance type: weight, like {\"t3.micro\": 1, \"t3.small\": 2}"
    if len(machine_types) > MAX_MACHINE_TYPES:
        return "machine_types", f"machine_types has {len(machine_types)} instance types; a fleet takes 1 to {MAX_MACHINE_TYPES}"
    for name, weight in machine_types.items():
        if not isinstance(name, str) or not INSTANCE_TYPE_RE.match(name):
            return "machine_types", f"machine_types: {name!r} is not an instance type (they look like t3.small)"
        # Whole weights from 1: each instance asks its fleet for one unit of capacity, which one
        # machine of any type then fulfils (a weight below 1 would take several machines).
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight != int(weight) or not 1 <= weight <= MAX_MACHINE_WEIGHT:
            return "machine_types", f"machine_types: the weight of {name} must be a whole number from 1 to {MAX_MACHINE_WEIGHT}, not {weight!r}"
    if on_demand_percentage is not None and (isinstance(on_demand_percentage, bool) or not isinstance(on_demand_percentage, int) or not 0 <= on_demand_percentage <= 100):
        return "on_demand_percentage", "on_demand_percentage must be a whole number from 0 to 100"
    allowed = ALLOCATION_STRATEGIES[provider_api]
    if allocation_strategy and allocation_strategy not in allowed:
        return "allocation_strategy", f"{provider_api} allocation strategies are {', '.join(allowed)} (AWS's names for {provider_api}), not {allocation_strategy!r}"
    return None


def _check_fleet(fields: dict[str, Any], blueprint: Blueprint | None = None) -> None:
    """Fleet settings as they will be saved: the fields given over the blueprint's current ones."""
    current = {key: getattr(blueprint, key) for key in ("provider_api", *FLEET_FIELDS)} if blueprint is not None else {}
    merged = {"provider_api": "RunInstances", "machine_types": {}, "on_demand_percentage": 100, "allocation_strategy": "", **current}
    merged.update({key: value for key, value in fields.items() if key in merged})
    problem = blueprint_fleet_problem(**merged)
    if problem is not None:
        raise ValidationFailed(problem[1], field=problem[0])
    if fields.get("machine_types"):
        fields["machine_types"] = {name: int(weight) for name, weight in fields["machine_types"].items()}


def blueprint_command_problem(*, command) -> str | None:
    """Why a blueprint's `command` cannot run here (None: it can). A tenant's command runs only
    inside the local provider's sandbox; without one it would run with the control plane's
    access to this host."""
    if command and "local" in settings.ENABLED_PROVIDERS:
        return refuse_command_reason()
    return None


def _refuse_command(command, *, field: str) -> None:
    problem = blueprint_command_problem(command=command)
    if problem:
        raise ValidationFailed(problem, field=field)


@transaction.atomic
def blueprint_create(*, principal: Principal, name: str, actor: Actor | None = None, **fields: Any) -> Blueprint:
    if principal.instance_scope is not None:
        raise Forbidden("an instance-scoped token cannot manage blueprints")
    _check_instance_type(fields.get("instance_type"), field="instance_type")
    _refuse_command(fields.get("command"), field="command")
    _check_fleet(fields)
    _check_idle_timeout(fields.get("idle_timeout_seconds"))
    if blueprint_visible(tenant=principal.tenant).filter(name=name).exists():
        raise Conflict(f"a blueprint named {name!r} exists (built-in names are reserved)")
    blueprint = Blueprint(tenant=principal.tenant, name=name, **{k: v for k, v in fields.items() if k in BLUEPRINT_FIELDS})
    try:
        with transaction.atomic():
            blueprint.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"a blueprint named {name!r} exists") from exc
    activity_record(actor=actor or principal.actor, action="blueprint.create", tenant=principal.tenant, object_type="blueprint", object_id=name)
    return blueprint


def _own_blueprint(principal: Principal, blueprint: Blueprint) -> None:
    if blueprint.is_builtin:
        raise Forbidden(f"{blueprint.name} is a built-in blueprint and is read-only; create your own instead")
    if principal.instance_scope is not None:
        raise Forbidden("an instance-scoped token cannot manage blueprints")


@transaction.atomic
def blueprint_update(*, principal: Principal, blueprint: Blueprint, fields: dict[str, Any]) -> Blueprint:
    _own_blueprint(principal, blueprint)
    _check_instance_type(fields.get("instance_type"), field="instance_type")
    if "command" in fields:
        _refuse_command(fields["command"], field="command")
    _check_idle_timeout(fields.get("idle_timeout_seconds"))
    blueprint = Blueprint.objects.select_for_update(of=("self",)).get(pk=blueprint.pk)
    _check_fleet(fields, blueprint)
    changed = []
    for key, value in fields.items():
        if key in BLUEPRINT_FIELDS and getattr(blueprint, key) != value:
            setattr(blueprint, key, value)
            changed.append(key)
    if changed:
        blueprint.save(update_fields=[*changed, "updated_at"])
        activity_record(actor=principal.actor, action="blueprint.update", tenant=principal.tenant, object_type="blueprint", object_id=blueprint.name, data={"fields": sorted(changed)})
    return blueprint


@transaction.atomic
def blueprint_delete(*, principal: Principal, blueprint: Blueprint) -> None:
    _own_blueprint(principal, blueprint)
    in_use = Instance.objects.filter(blueprint=blueprint, destroyed_at__isnull=True).values_list("instance_id", flat=True)[:5]
    if in_use:
        raise Conflict(f"blueprint {blueprint.name!r} is used by live instances ({', '.join(in_use)}); destroy them first")
    if Instance.objects.filter(blueprint=blueprint).exists():
        # Destroyed instances keep their history: hide the blueprint rather than delete it.
        blueprint.deleted_at = timezone.now()
        blueprint.save(update_fields=["deleted_at", "updated_at"])
    else:
        blueprint.delete()
    activity_record(actor=principal.actor, action="blueprint.delete", tenant=principal.tenant, object_type="blueprint", object_id=blueprint.name)


# --- reconciler corrections --------------------------------------------------------------------


@transaction.atomic
def machine_orphan_record(*, machine, provider_name: str, provider_region: str, owner: Instance | None, action: str, actor: Actor) -> str:
    """Record a machine tagged as ours that no live instance owns (and what was done with it): in
    its former instance's lifecycle log, if that row is left, and in the audit log. Returns the
    message."""
    tenant_id = machine.tags.get("orchestrio:tenant_id")
    instance_id = machine.tags.get("orchestrio:instance_id", "?")
    message = (
        f"orphan machine {machine.provider_instance_id or machine.provider_data.get('dir', '?')} ({machine.state}) "
        f"tagged {instance_id} belongs to no live instance; {action}"
    )
    if owner is not None:
        log_append(instance=owner, stage="reconciler", message=message, level=LogLevel.WARNING)
    activity_record(
        actor=actor,
        action="reconciler.orphan",
        tenant=tenant_id if tenant_id and owner is not None else None,
        object_type="machine",
        object_id=machine.provider_instance_id or instance_id,
        data={"provider": provider_name, "region": provider_region, "instance_id": instance_id, "state": machine.state, "action": action},
    )
    return message


def instance_mark_machine_lost(*, instance: Instance, code: str, message: str, actor: Actor) -> bool:
    """The provider no longer has this instance's machine (or it stopped behind our back)."""
    locked = _lock(instance)
    if locked.destroyed_at is not None or locked.state in lifecycle.TRANSITIONAL_STATES or locked.state == InstanceState.ERROR:
        return False
    if _unfinished(locked) is not None:
        return False
    previous = locked.state
    lifecycle.transition(locked, InstanceState.ERROR, error_message=message)
    tenant_event(locked.tenant_id, "instance.error", {"instance_id": locked.instance_id, "error_code": code, "error_message": message})
    log_append(instance=locked, stage="reconciler", message=message, level=LogLevel.ERROR)
    activity_record(
        actor=actor, action="instance.machine_lost", tenant=locked.tenant_id, object_type="instance",
        object_id=locked.instance_id, data={"previous_state": previous, "error_code": code, "message": message},
    )  # fmt: skip
    return True


# --- stats (docs/observability.md "Stats") ------------------------------------------------------

STATS_MINUTES_KEPT = timedelta(hours=24)
STATS_HOURS_KEPT = timedelta(days=30)
# The agent's counters (instances/agent.py `Agent.stats`) and the rate each becomes.
STAT_RATES = {
    "net_rx_bytes": "net_rx_bytes_per_second", "net_tx_bytes": "net_tx_bytes_per_second",
    "disk_read_bytes": "disk_read_bytes_per_second", "disk_write_bytes": "disk_write_bytes_per_second",
}  # fmt: skip
STAT_COUNTERS = ("sampled_at", "started_at", "cpu_seconds", *STAT_RATES)
STAT_GAUGES = ("rss_bytes", "memory_limit_bytes", "uptime_seconds", "restarts")
STAT_MAX = 2**62  # what an instance says is data: anything else than a number in range is unknown


def _figure(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < STAT_MAX:
        return None  # also NaN, which compares false
    return value


def stat_point(*, previous: dict | None, raw: dict) -> dict:
    """A minute point's figures from the agent's counters `raw` and the previous sample's: rates
    over the time between them, when both come from the same run of the agent (else null)."""
    figures = {name: _figure(raw.get(name)) for name in STAT_GAUGES}
    for name in ("rss_bytes", "memory_limit_bytes", "restarts"):
        figures[name] = int(figures[name]) if figures[name] is not None else None
    previous = {name: _figure((previous or {}).get(name)) for name in STAT_COUNTERS}
    current = {name: _figure(raw.get(name)) for name in STAT_COUNTERS}
    elapsed = None
    if None not in (previous["sampled_at"], current["sampled_at"]) and previous["started_at"] == current["started_at"] is not None:
        elapsed = current["sampled_at"] - previous["sampled_at"]

    def rate(name):
        if not elapsed or elapsed <= 0 or current[name] is None or previous[name] is None or current[name] < previous[name]:
            return None  # no earlier sample of this run, or a counter that started again
        return (current[name] - previous[name]) / elapsed

    cpu = rate("cpu_seconds")
    figures["cpu_percent"] = round(cpu * 100, 2) if cpu is not None else None
    for counter, name in STAT_RATES.items():
        value = rate(counter)
        figures[name] = round(value, 1) if value is not None else None
    return {**figures, "raw": {name: value for name, value in current.items() if value is not None}}


def instance_stats_sample(*, now=None, instance_pks=None) -> dict:
    """Ask every running instance's agent for its counters (concurrently, outside any
    transaction), write this minute's point for each that answered (a second sample in the same
    minute replaces the first), then roll up and expire old points."""
    now = now or timezone.now()
    bucket = now.astimezone(dt_timezone.utc).replace(second=0, microsecond=0)
    targets = list(stats_targets(instance_pks=instance_pks))
    answers = stats_many(targets, timeout=settings.STATS_SAMPLE_TIMEOUT_SECONDS, concurrency=settings.STATS_SAMPLE_CONCURRENCY)
    points, failed = [], {}
    for instance in targets:
        raw = answers.get(instance.pk)
        if not isinstance(raw, dict):
            failed[instance.instance_id] = str(raw)[:200] if raw is not None else "no answer"
            continue
        figures = stat_point(previous=instance.previous_raw if isinstance(instance.previous_raw, dict) else None, raw=raw)
        points.append(InstanceStatSample(instance_id=instance.pk, resolution=StatResolution.MINUTE, bucket=bucket, samples=1, **figures))
    if points:
        InstanceStatSample.objects.bulk_create(
            points, update_conflicts=True, unique_fields=["instance", "resolution", "bucket"], update_fields=[*STAT_FIGURES, "raw"]
        )
    return {"instances": len(targets), "sampled": len(points), "failed": failed, **instance_stats_downsample(now=now)}


@transaction.atomic
def instance_stats_downsample(*, now=None) -> dict:
    """Minute points older than a day become hour points (whole hours only, so an hour is rolled
    once), and hour points older than 30 days go."""
    now = now or timezone.now()
    cutoff = (now - STATS_MINUTES_KEPT).astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)
    old = InstanceStatSample.objects.filter(resolution=StatResolution.MINUTE, bucket__lt=cutoff)
    hours = [
        InstanceStatSample(
            instance_id=row["instance_id"], resolution=StatResolution.HOUR, bucket=row["hour"], samples=row["n"],
            **{name: round(row[name]) if row[name] is not None and name in ("rss_bytes", "restarts") else row[name] for name in STAT_FIGURES},
        )
        for row in stat_hours(old)
    ]  # fmt: skip
    if hours:
        InstanceStatSample.objects.bulk_create(
            hours, update_conflicts=True, unique_fields=["instance", "resolution", "bucket"], update_fields=["samples", *STAT_FIGURES]
        )
    rolled, _ = old.delete() if hours else (0, None)
    expired, _ = InstanceStatSample.objects.filter(resolution=StatResolution.HOUR, bucket__lt=now - STATS_HOURS_KEPT).delete()
    return {"hours_written": len(hours), "minutes_rolled": rolled, "hours_expired": expired}
