"""Deployments: a named blueprint with config and encrypted secrets, running on an instance it
provisions, changed only by new immutable revisions.

Each revision is applied by a job in steps — provision (wait for the instance), configure (push
config and secrets to the agent, whose reload hook restarts what needs restarting), health check,
done — each recorded with its status and times, and the deployment's log. A revision whose health
check fails marks the deployment failed and, if an earlier revision was healthy, is rolled back
automatically (as a new revision that says why).

The provision step holds no worker while the instance comes up (up to
DEPLOY_PROVISION_TIMEOUT_SECONDS, 900 s, on a tenant's slow instance): the job records that the
revision waits (`Deployment.instance_deadline`) and returns. The instances app's
`instance_running` hook enqueues the job again once the instance runs; the reconciler resumes a
revision whose enqueue was lost and fails one whose instance failed or whose deadline passed.
"""

from __future__ import annotations

import json
import logging
import re
import secrets as pysecrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from gateway.models import GatewayPolicy
from instances import hooks, hostnames
from instances.agent_client import AgentError, AgentTimeout, AgentUnreachable, agent_client_for
from instances.choices import InstanceState, LogLevel, OperationKind
from instances.health import probe_until
from instances.models import Instance, gateway_url
from instances.services import config_check_size, instance_create, merge_patch, operation_accept
from orchestrio import crypto
from orchestrio.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed
from orchestrio.limits import limit_check
from orchestrio.models import Tenant
from orchestrio.queue import enqueue_on_commit, lease, lease_alive
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor, Principal

from .choices import DEPLOYMENT_BUSY_STATUSES, DeploymentEnvironment, DeploymentStatus, StepStatus
from .models import AUTOMATIC_ROLLBACK_REASON, ROLLBACK_REASON, Deployment, DeploymentLogLine, DeploymentRevision, DeploymentStep

logger = logging.getLogger(__name__)

# A deployment's instance id is "<name>-<4 hex digits>": a name is a hostname label short enough
# to leave room for the suffix (instances.hostnames).
NAME_MAX_LENGTH = 50
NAME_MESSAGE = "name is 3–50 lowercase letters, digits and '-', starting and ending with a letter or digit"
SECRET_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
MAX_SECRET_BYTES = 8 * 1024


def _issue(field: str, message: str, *extra) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", field, *extra], "msg": message, "type": "value_error"}])


def _check_config(config) -> dict:
    if not isinstance(config, dict):
        raise _issue("config", "config must be an object")
    config_check_size(config=config, loc=["body", "config"])
    return config


def _check_secrets(values) -> dict:
    if not isinstance(values, dict):
        raise _issue("secrets", "secrets must be an object of strings")
    for key, value in values.items():
        if not SECRET_KEY_RE.match(key):
            raise _issue("secrets", "secret names are letters, digits, '_', '.', '-' (starting with a letter or '_')", key)
        if not isinstance(value, str) or len(value.encode()) > MAX_SECRET_BYTES:
            raise _issue("secrets", f"secret values are strings of at most {MAX_SECRET_BYTES // 1024} KiB", key)
    return values


def revision_secrets(*, revision: DeploymentRevision) -> dict:
    return json.loads(crypto.decrypt(revision.secrets_encrypted)) if revision.secrets_encrypted else {}


def deployment_log(*, deployment: Deployment, message: str, level: str = LogLevel.INFO) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Deployment._meta.db_table} SET log_seq = log_seq + 1 WHERE id = %s RETURNING log_seq", [deployment.pk])
        seq = cursor.fetchone()[0]
    DeploymentLogLine.objects.create(deployment_id=deployment.pk, seq=seq, level=level, message=message)


def _new_revision(deployment: Deployment, *, config: dict, secrets_encrypted: str, secret_keys: list, reason: str, actor: Actor) -> DeploymentRevision:
    number = (deployment.revisions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    revision = DeploymentRevision.objects.create(
        deployment=deployment, number=number, config=config, secrets_encrypted=secrets_encrypted,
        secret_keys=sorted(secret_keys), reason=reason[:255], created_by=actor.label[:254],
    )  # fmt: skip
    for position, name in enumerate(DeploymentStep.STEPS):
        DeploymentStep.objects.create(deployment=deployment, revision=revision, name=name, position=position)
    deployment.target_revision = number
    deployment.save(update_fields=["target_revision", "status", "error", "updated_at"])
    enqueue_on_commit("deployments.jobs.run_deployment", deployment.pk, number, job_id=_job_id(deployment.pk, number))
    return revision


def webhook_url(*, deployment: Deployment) -> str | None:
    if deployment.instance is None:
        return None
    return f"{gateway_url()}/gateway/{deployment.instance.instance_id}/{deployment.name}"


# --- use cases ---------------------------------------------------------------------------------


@transaction.atomic
def deployment_create(
    *,
    principal: Principal,
    name: str,
    blueprint_name: str = "OpenClaw",
    environment: str = DeploymentEnvironment.PRODUCTION,
    region: str | None = None,
    plan_id: str = "openclaw-basic",
    config: dict | None = None,
    secrets: dict | None = None,
) -> Deployment:
    actor = principal.actor
    if principal.instance_scope is not None:
        raise Forbidden("an instance-scoped token cannot create deployments")
    if not hostnames.is_label(name, max_length=NAME_MAX_LENGTH):
        raise _issue("name", NAME_MESSAGE)
    if environment not in DeploymentEnvironment.values:
        raise _issue("environment", f"environment is one of {', '.join(DeploymentEnvironment.values)}")
    config = _check_config(config or {})
    secrets = _check_secrets(secrets or {})
    tenant = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=principal.tenant.pk)
    if Deployment.objects.filter(tenant=tenant, name=name, deleted_at__isnull=True).exists():
        raise Conflict(f"a deployment named {name!r} exists in this tenant")
    limit_check(tenant=tenant, limit="deployments", used=Deployment.objects.filter(tenant=tenant, deleted_at__isnull=True).count)

    instance_id = f"{name}-{pysecrets.token_hex(2)}"
    # The instance starts with an empty config: the revision's config arrives in the configure step.
    instance = instance_create(
        principal=principal, instance_id=instance_id, blueprint_name=blueprint_name, plan_id=plan_id, region=region,
        labels={"deployment": name, "environment": environment},
    )
    deployment = Deployment(
        tenant=tenant, name=name, environment=environment, blueprint=instance.blueprint, region=instance.region,
        plan=instance.plan, instance=instance, created_by=actor.label[:254], status=DeploymentStatus.PROVISIONING,
    )  # fmt: skip
    try:
        with transaction.atomic():
            deployment.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"a deployment named {name!r} exists in this tenant") from exc
    _new_revision(deployment, config=config, secrets_encrypted=crypto.encrypt(json.dumps(secrets)), secret_keys=list(secrets), reason="created", actor=actor)
    # The deployment's webhook: the gateway, for this tenant's API keys (edit the policy to open it wider).
    GatewayPolicy.objects.create(instance=instance, tenant=tenant, slug=name, provider="api-key")
    deployment_log(deployment=deployment, message=f"deployment {name} ({environment}) created by {actor.label} on instance {instance_id}; revision 1")
    activity_record(
        actor=actor, action="deployment.create", tenant=tenant, object_type="deployment", object_id=deployment.pk,
        data={"name": name, "environment": environment, "instance_id": instance_id, "config_keys": sorted(config), "secret_keys": sorted(secrets)},
    )  # fmt: skip
    return deployment


def _lock_live(deployment: Deployment) -> Deployment:
    locked = Deployment.objects.select_for_update(of=("self",)).select_related("tenant__plan", "instance").get(pk=deployment.pk)
    if locked.deleted_at is not None:
        raise NotFound("no such deployment in this tenant")
    if locked.status in DEPLOYMENT_BUSY_STATUSES:
        raise Conflict(f"deployment {locked.name} is {locked.status} (revision {locked.target_revision}); wait for it to finish")
    return locked


def _latest(deployment: Deployment) -> DeploymentRevision:
    return deployment.revisions.order_by("-number").first()


@transaction.atomic
def deployment_update(*, deployment: Deployment, actor: Actor, config_patch=None, secrets_patch=None) -> DeploymentRevision:
    """A new revision from JSON merge patches of the config and the secrets (null removes a key)."""
    if config_patch is None and secrets_patch is None:
        raise ValidationFailed("give config and/or secrets to change")
    if config_patch is not None and not isinstance(config_patch, dict):
        raise _issue("config", "config must be an object (a JSON merge patch)")
    if secrets_patch is not None and not isinstance(secrets_patch, dict):
        raise _issue("secrets", "secrets must be an object (a JSON merge patch)")
    locked = _lock_live(deployment)
    base = _latest(locked)
    config = _check_config(merge_patch(target=base.config, patch=config_patch) if config_patch is not None else base.config)
    old_secrets = revision_secrets(revision=base)
    secrets = old_secrets
    if secrets_patch is not None:
        secrets = {k: v for k, v in {**old_secrets, **secrets_patch}.items() if v is not None}
        _check_secrets(secrets)
    if config == base.config and secrets == old_secrets:
        raise InvalidState(f"this changes nothing: revision {base.number} already has this config and these secrets")
    locked.status, locked.error = DeploymentStatus.UPDATING, ""
    revision = _new_revision(locked, config=config, secrets_encrypted=crypto.encrypt(json.dumps(secrets)), secret_keys=list(secrets), reason=f"updated by {actor.label}", actor=actor)
    changed = {
        "config_keys": sorted(k for k in set(config) | set(base.config) if config.get(k) != base.config.get(k)),
        "secret_keys": sorted(k for k in set(secrets) | set(old_secrets) if secrets.get(k) != old_secrets.get(k)),
    }
    deployment_log(deployment=locked, message=f"revision {revision.number} by {actor.label}: config {changed['config_keys'] or 'unchanged'}, secrets {changed['secret_keys'] or 'unchanged'}")
    activity_record(actor=actor, action="deployment.update", tenant=locked.tenant_id, object_type="deployment", object_id=locked.pk, data={"revision": revision.number, **changed})
    return revision


@transaction.atomic
def deployment_rollback(*, deployment: Deployment, actor: Actor, revision_number: int) -> DeploymentRevision:
    locked = _lock_live(deployment)
    limit_check(tenant=locked.tenant, limit="deployment_rollback")
    source = locked.revisions.filter(number=revision_number).first()
    if source is None:
        raise _issue("revision", f"deployment {locked.name} has no revision {revision_number}")
    if revision_number == locked.current_revision and _latest(locked).number == revision_number:
        raise InvalidState(f"revision {revision_number} is already in force")
    locked.status, locked.error = DeploymentStatus.ROLLING_BACK, ""
    revision = _new_revision(
        locked, config=source.config, secrets_encrypted=crypto.rotate(source.secrets_encrypted) if source.secrets_encrypted else "",
        secret_keys=source.secret_keys, reason=f"{ROLLBACK_REASON} {revision_number} by {actor.label}", actor=actor,
    )  # fmt: skip
    deployment_log(deployment=locked, message=f"revision {revision.number}: rollback to revision {revision_number} by {actor.label}")
    activity_record(actor=actor, action="deployment.rollback", tenant=locked.tenant_id, object_type="deployment", object_id=locked.pk, data={"to": revision_number, "revision": revision.number})
    return revision


@transaction.atomic
def deployment_delete(*, deployment: Deployment, actor: Actor, confirm: str | None) -> Deployment:
    locked = Deployment.objects.select_for_update(of=("self",)).select_related("instance").get(pk=deployment.pk)
    if locked.deleted_at is not None:
        raise NotFound("no such deployment in this tenant")
    if locked.environment == DeploymentEnvironment.PRODUCTION and confirm != locked.name:
        raise InvalidState(f"{locked.name} is a production deployment: repeat its name to delete it (?confirm={locked.name})")
    locked.status, locked.deleted_at, locked.target_revision, locked.instance_deadline = DeploymentStatus.DELETED, timezone.now(), None, None
    locked.save(update_fields=["status", "deleted_at", "target_revision", "instance_deadline", "updated_at"])
    if locked.instance is not None and locked.instance.destroyed_at is None:
        operation_accept(instance=locked.instance, kind=OperationKind.DESTROY, actor=actor, force=True)
    deployment_log(deployment=locked, message=f"deleted by {actor.label}; its instance is being destroyed")
    activity_record(actor=actor, action="deployment.delete", tenant=locked.tenant_id, object_type="deployment", object_id=locked.pk, data={"name": locked.name})
    return locked


# --- the job -----------------------------------------------------------------------------------


def _step(revision: DeploymentRevision, name: str, status: str, message: str = "") -> None:
    """Record a step's status. A step started again (a resumed or re-run job) keeps its first
    start: the provision step's deadline counts from it."""
    now = timezone.now()
    steps = DeploymentStep.objects.filter(revision=revision, name=name)
    fields = {"status": status, "message": message}
    if status == StepStatus.RUNNING:
        steps.filter(started_at__isnull=True).update(started_at=now)
    elif status in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED):
        fields["finished_at"] = now
    steps.update(**fields)


class StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


def _current(deployment_pk: str, number: int) -> bool:
    return Deployment.objects.filter(pk=deployment_pk, target_revision=number, deleted_at__isnull=True).exists()


def _provision_failure(instance: Instance | None, deadline) -> str | None:
    """Why the provision step fails now, or None while the instance may still come up to run."""
    if instance is None:
        return "the deployment's instance is gone"
    if instance.state in (InstanceState.ERROR, InstanceState.DESTROYED, InstanceState.DESTROYING):
        return f"instance {instance.instance_id} is {instance.state}: {instance.error_message or 'see its log'}"
    if timezone.now() >= deadline:
        return f"instance {instance.instance_id} was still {instance.state} after {settings.DEPLOY_PROVISION_TIMEOUT_SECONDS}s"
    return None


def _provision(deployment: Deployment, revision: DeploymentRevision) -> Instance | None:
    """The provision step: the instance once it runs. Until then no worker waits for it (a
    tenant's instance may take up to DEPLOY_PROVISION_TIMEOUT_SECONDS): the revision is recorded
    as waiting and None returned; `deployment_instance_running` resumes it.

    The instance row is locked while its state is read, so that the operation making it run
    either commits first (and this sees it running) or after the wait is recorded (and its
    `instance_running` hook sees the wait)."""
    started = DeploymentStep.objects.filter(revision=revision, name="provision").values_list("started_at", flat=True).first()
    deadline = (started or timezone.now()) + timedelta(seconds=settings.DEPLOY_PROVISION_TIMEOUT_SECONDS)
    with transaction.atomic():
        locked = Deployment.objects.select_for_update(of=("self",)).get(pk=deployment.pk)
        if locked.target_revision != revision.number or locked.deleted_at is not None:
            raise StepFailed("provision", "superseded")
        instance = Instance.objects.select_for_update(of=("self",)).select_related("blueprint").filter(pk=locked.instance_id).first()
        if instance is not None and instance.state == InstanceState.RUNNING:
            if locked.instance_deadline is not None:
                locked.instance_deadline = None
                locked.save(update_fields=["instance_deadline", "updated_at"])
            return instance
        failure = _provision_failure(instance, deadline)
        if failure:
            raise StepFailed("provision", failure)
        first = locked.instance_deadline is None
        locked.instance_deadline = deadline
        locked.save(update_fields=["instance_deadline", "updated_at"])
        message = f"waiting for instance {instance.instance_id} ({instance.state}) to run, until {deadline:%H:%M:%S}Z; no worker waits on it"
        _step(revision, "provision", StepStatus.RUNNING, message)
        if first:
            deployment_log(deployment=locked, message=f"revision {revision.number}: {message}")
    return None


def _configure(instance: Instance, revision: DeploymentRevision) -> str:
    client = agent_client_for(instance, timeout=90)
    try:
        config_result = client.put_config(revision.config)
        secrets_result = client.put_secrets(hooks.instance_environment(instance, replace={"deployment": revision_secrets(revision=revision)}))
    except (AgentError, AgentUnreachable, AgentTimeout) as exc:
        raise StepFailed("configure", f"the instance agent did not take the revision: {exc}") from exc
    Instance.objects.filter(pk=instance.pk).update(config=revision.config, updated_at=timezone.now())
    reloads = [r["reload"] for r in (config_result, secrets_result) if r.get("reload", {}).get("ran")]
    failed = [r for r in reloads if r.get("exit_code") != 0]
    if failed:
        raise StepFailed("configure", f"the instance's reload hook failed (exit {failed[0].get('exit_code')}): {failed[0].get('output') or failed[0].get('error', '')}".strip())
    hook = f"reload hook ran {len(reloads)}×" if reloads else "no reload hook installed"
    return f"config {config_result.get('digest', '')[:12]} and {len(revision.secret_keys)} secret(s) applied; {hook}"


def deployment_environment(*, instance: Instance) -> dict[str, str]:
    """The deployment's part of its instance's environment (instances.hooks.on_environment): the
    secrets of the revision in force."""
    deployment = Deployment.objects.filter(instance=instance, deleted_at__isnull=True, current_revision__gt=0).first()
    revision = deployment.revisions.filter(number=deployment.current_revision).first() if deployment is not None else None
    return revision_secrets(revision=revision) if revision is not None else {}


def deployment_reapply_secrets(instance: Instance) -> str | None:
    """After the instance of a deployment (re)starts: push its revision's secrets again. They
    live only in the instance's memory (a tmpfs), so a stop/start loses them."""
    deployment = Deployment.objects.filter(instance=instance, deleted_at__isnull=True, current_revision__gt=0).first()
    if deployment is None:
        return None
    revision = deployment.revisions.filter(number=deployment.current_revision).first()
    if revision is None or not revision.secret_keys:
        return None
    fresh = Instance.objects.select_related("blueprint").get(pk=instance.pk)
    try:
        agent_client_for(fresh, timeout=30).put_secrets(hooks.instance_environment(fresh))
    except (AgentError, AgentUnreachable, AgentTimeout) as exc:
        return f"deployment {deployment.name}: its secrets could not be restored ({exc})"
    return f"deployment {deployment.name}: {len(revision.secret_keys)} secret(s) of revision {revision.number} restored"


def _health_check(instance: Instance) -> str:
    needed = settings.DEPLOY_HEALTH_SUCCESSES
    path = instance.blueprint.health_path
    result = probe_until(
        instance, deadline=time.monotonic() + settings.DEPLOY_HEALTH_TIMEOUT_SECONDS, interval=settings.DEPLOY_POLL_SECONDS, timeout=3, successes=needed
    )
    if result.ok:
        return f"{path} answered 2xx {needed} times in a row"
    last = result.detail + (f": {result.body[:200]}" if result.body else "")
    raise StepFailed("health_check", f"{path} did not stay healthy within {settings.DEPLOY_HEALTH_TIMEOUT_SECONDS}s (last: {last})")


def run_deployment(*, deployment_pk: str, number: int) -> str:
    """Apply revision `number`. Only the provision step may wait long, and it hands the wait off
    (`_provision`). The later steps run in place because they are bounded: health_check by
    DEPLOY_HEALTH_TIMEOUT_SECONDS (60 s), configure by the product's reload hook, which the agent
    stops at 60 s (the agent client gives up on each of its two calls at 90 s, should an instance
    hold a call open itself). About a minute for an instance that misbehaves, at worst a few;
    a second or two for one that works."""
    with lease(f"deployment:{deployment_pk}", settings.OPERATION_LEASE_SECONDS):
        deployment = Deployment.objects.filter(pk=deployment_pk).first()
        revision = DeploymentRevision.objects.filter(deployment_id=deployment_pk, number=number).first()
        if deployment is None or revision is None or not _current(deployment_pk, number) or revision.status != "pending":
            return "superseded"
        step = "provision"
        try:
            _step(revision, "provision", StepStatus.RUNNING)
            instance = _provision(deployment, revision)
            if instance is None:
                return "waiting for the instance"
            _step(revision, "provision", StepStatus.SUCCEEDED, f"instance {instance.instance_id} is running")
            step = "configure"
            _step(revision, "configure", StepStatus.RUNNING)
            message = _configure(instance, revision)
            _step(revision, "configure", StepStatus.SUCCEEDED, message)
            deployment_log(deployment=deployment, message=f"revision {number}: {message}")
            step = "health_check"
            _step(revision, "health_check", StepStatus.RUNNING)
            message = _health_check(instance)
            _step(revision, "health_check", StepStatus.SUCCEEDED, message)
        except StepFailed as exc:
            if exc.message == "superseded":
                return "superseded"
            _fail(deployment, revision, step, exc.message)
            return "failed"
        _finish(deployment, revision)
        return "applied"


@transaction.atomic
def _finish(deployment: Deployment, revision: DeploymentRevision) -> None:
    locked = Deployment.objects.select_for_update(of=("self",)).get(pk=deployment.pk)
    if locked.target_revision != revision.number or locked.deleted_at is not None:
        return
    now = timezone.now()
    DeploymentRevision.objects.filter(pk=revision.pk).update(status="applied", applied_at=now, healthy=True, error="")
    _step(revision, "done", StepStatus.SUCCEEDED, f"revision {revision.number} is in force")
    locked.status, locked.current_revision, locked.target_revision, locked.error, locked.instance_deadline = DeploymentStatus.ACTIVE, revision.number, None, "", None
    locked.save(update_fields=["status", "current_revision", "target_revision", "error", "instance_deadline", "updated_at"])
    deployment_log(deployment=locked, message=f"revision {revision.number} is in force and healthy")


@transaction.atomic
def _fail(deployment: Deployment, revision: DeploymentRevision, step: str, message: str) -> None:
    locked = Deployment.objects.select_for_update(of=("self",)).get(pk=deployment.pk)
    if locked.target_revision != revision.number or locked.deleted_at is not None:
        return
    DeploymentRevision.objects.filter(pk=revision.pk).update(status="failed", healthy=False, error=message)
    _step(revision, step, StepStatus.FAILED, message)
    for later in DeploymentStep.STEPS[DeploymentStep.STEPS.index(step) + 1 :]:
        _step(revision, later, StepStatus.SKIPPED)
    reason = f"revision {revision.number} failed at {step}: {message}"
    locked.status, locked.error, locked.target_revision, locked.instance_deadline = DeploymentStatus.FAILED, reason, None, None
    locked.save(update_fields=["status", "error", "target_revision", "instance_deadline", "updated_at"])
    deployment_log(deployment=locked, message=reason, level=LogLevel.ERROR)
    activity_record(actor=Actor.system("deployments"), action="deployment.failed", tenant=locked.tenant_id, object_type="deployment", object_id=locked.pk, data={"revision": revision.number, "step": step, "reason": message[:300]})
    # Automatic rollback to the last healthy revision, unless this run was itself one.
    healthy = locked.revisions.filter(healthy=True, number__lt=revision.number).order_by("-number").first()
    if healthy is not None and not revision.reason.startswith(AUTOMATIC_ROLLBACK_REASON):
        locked.status = DeploymentStatus.ROLLING_BACK
        rollback = _new_revision(
            locked, config=healthy.config, secrets_encrypted=healthy.secrets_encrypted, secret_keys=healthy.secret_keys,
            reason=f"{AUTOMATIC_ROLLBACK_REASON} to revision {healthy.number}: {reason}", actor=Actor.system("deployments"),
        )  # fmt: skip
        deployment_log(deployment=locked, message=f"rolling back automatically to revision {healthy.number} (as revision {rollback.number})", level=LogLevel.WARNING)


def _job_id(deployment_pk: str, number: int) -> str:
    return f"{deployment_pk}-r{number}-{pysecrets.token_hex(3)}"


@transaction.atomic
def _resume(deployment_pk: str, why: str) -> bool:
    """Enqueue the job of a revision that waits for its instance, once: the wait is cleared as
    the job is enqueued (a lost enqueue is then a busy deployment with no live job, which
    `reconcile_deployments` applies again)."""
    locked = Deployment.objects.select_for_update(of=("self",)).filter(pk=deployment_pk).first()
    if locked is None or locked.instance_deadline is None or locked.target_revision is None or locked.deleted_at is not None:
        return False
    number = locked.target_revision
    locked.instance_deadline = None
    locked.save(update_fields=["instance_deadline", "updated_at"])
    deployment_log(deployment=locked, message=f"{why}; resuming revision {number}")
    enqueue_on_commit("deployments.jobs.run_deployment", locked.pk, number, job_id=_job_id(locked.pk, number))
    return True


def deployment_instance_running(instance: Instance) -> str | None:
    """The `instance_running` hook: resume the revisions waiting for this instance."""
    waiting = Deployment.objects.filter(instance_id=instance.pk, instance_deadline__isnull=False, deleted_at__isnull=True).values_list("pk", "name")
    resumed = [name for pk, name in waiting if _resume(pk, f"instance {instance.instance_id} is running")]
    return f"deployment {', '.join(resumed)}: resumed" if resumed else None


@transaction.atomic
def _fail_waiting(deployment_pk: str, number: int, failure: str) -> bool:
    locked = Deployment.objects.select_for_update(of=("self",)).filter(pk=deployment_pk).first()
    if locked is None or locked.instance_deadline is None or locked.target_revision != number or locked.deleted_at is not None:
        return False  # resumed or finished meanwhile
    revision = locked.revisions.filter(number=number).first()
    if revision is None:
        return False
    _fail(locked, revision, "provision", failure)
    return True


@transaction.atomic
def _requeue_stale(deployment_pk: str, number: int) -> bool:
    locked = Deployment.objects.select_for_update(of=("self",)).filter(pk=deployment_pk).first()
    if locked is None or locked.target_revision != number or locked.instance_deadline is not None or locked.deleted_at is not None or locked.status not in DEPLOYMENT_BUSY_STATUSES:
        return False  # finished, or handed to its instance's hook meanwhile
    enqueue_on_commit("deployments.jobs.run_deployment", locked.pk, number, job_id=_job_id(locked.pk, number))
    deployment_log(deployment=locked, message=f"revision {number}: its job stopped; applying it again", level=LogLevel.WARNING)
    locked.save(update_fields=["updated_at"])
    return True


def reconcile_deployments(summary: dict) -> None:
    """A deployment whose job died (busy, with no lease) is applied again: the steps are
    idempotent. A revision waiting for its instance holds no job by design: it is resumed if its
    instance runs (the hook's enqueue was lost, or no hook ran), and failed at its deadline or
    when its instance failed."""
    summary.setdefault("deployments_requeued", 0)
    waiting = Deployment.objects.filter(instance_deadline__isnull=False, deleted_at__isnull=True, target_revision__isnull=False).select_related("instance")
    for deployment in waiting:
        instance = deployment.instance
        if instance is not None and instance.state == InstanceState.RUNNING:
            if _resume(deployment.pk, f"instance {instance.instance_id} is running (found by the reconciler)"):
                summary["deployments_requeued"] += 1
            continue
        failure = _provision_failure(instance, deployment.instance_deadline)
        if failure:
            _fail_waiting(deployment.pk, deployment.target_revision, failure)

    stale = timezone.now() - timedelta(seconds=max(settings.OPERATION_LEASE_SECONDS, 15))
    busy = Deployment.objects.filter(
        status__in=DEPLOYMENT_BUSY_STATUSES, target_revision__isnull=False, instance_deadline__isnull=True, deleted_at__isnull=True, updated_at__lt=stale
    )
    for deployment in busy:
        if lease_alive(f"deployment:{deployment.pk}") is not False:
            continue
        if _requeue_stale(deployment.pk, deployment.target_revision):
            summary["deployments_requeued"] += 1
