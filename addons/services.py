"""State changes for add-ons. One unfinished operation per add-on (create, rotate, destroy): the
add-on's row is locked to accept one, and a partial unique index backs that up in the database.
The engine's work runs in the job (`addons.jobs.run_addon_operation`), never under a row lock.

Secrets: the tenant's password and the engine's administrator password are stored encrypted
(orchestrio.crypto); the connection URL is built from them only to be returned once (creation,
an audited reveal) or pushed to the attached instance, and never reaches a log, a record or the
audit log (whose rows carry the engine and the instance, nothing more)."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import string
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from instances import hooks as instance_hooks
from instances.agent_client import AgentError, AgentTimeout, AgentUnreachable, agent_client_for
from instances.choices import ErrorCode, InstanceState
from instances.models import Instance
from instances.providers import ProviderError
from instances.services import log_append
from orchestrio import crypto
from orchestrio.errors import Conflict, Forbidden, InvalidState, NotFound, PlanLimitReached, ServiceUnavailable, ValidationFailed
from orchestrio.limits import limit_check
from orchestrio.models import Tenant
from orchestrio.queue import enqueue_on_commit, job_is_alive, lease_alive
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor

from . import aws, engines, storage
from .choices import BUSY_STATUS, ENV_NAME, UNFINISHED_OPERATION_STATUSES, AddOnOperationKind, AddOnOperationStatus, AddOnPlan, AddOnStatus, BackupKind, BackupStatus, BackupStorage, Engine
from .models import AddOn, AddOnBackup, AddOnOperation

logger = logging.getLogger(__name__)

_ALPHABET = string.ascii_lowercase + string.digits
ENV_STATUSES = (AddOnStatus.AVAILABLE, AddOnStatus.BACKING_UP, AddOnStatus.RESTORING)
USERNAME = "app"
DATABASE = "app"


def new_addon_id() -> str:
    return "addon_" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def _new_password() -> str:
    # Letters and digits only: ElastiCache AUTH tokens refuse most punctuation (`_` included).
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def _engine(addon: AddOn):
    """The engine module that runs the add-on: addons.engines (local) or addons.aws."""
    return aws if addon.provider == "aws" else engines


def addon_connection_url(*, addon: AddOn, password: str | None = None) -> str | None:
    """The tenant's URL (with `password`, else the one in force): for the 201 and a reveal only.
    None on AWS until the database has its endpoint."""
    password = password if password is not None else crypto.decrypt(addon.password_encrypted)
    return _engine(addon).connection_url(engine=addon.engine, host=addon.host, port=addon.port, username=addon.username, password=password, database=addon.database)


def _target(addon: AddOn, *, password: str | None = None):
    password = password if password is not None else crypto.decrypt(addon.password_encrypted)
    if addon.provider == "aws":
        instance = addon.instance
        blueprint = instance.blueprint
        return aws.AwsTarget(
            addon_id=addon.addon_id, tenant_id=addon.tenant_id, instance_id=instance.instance_id, instance_pk=instance.pk, engine=addon.engine,
            version=addon.version, plan=addon.plan, region=instance.region.provider_region, username=addon.username, database=addon.database,
            password=password, subnet_ids=tuple(blueprint.subnet_ids or ()), security_group_ids=tuple(blueprint.security_group_ids or ()),
            tags=dict(blueprint.tags or {}), provider_data=dict(addon.provider_data or {}),
        )  # fmt: skip
    return engines.Target(
        addon_id=addon.addon_id, addon_pk=addon.pk, engine=addon.engine, port=addon.port, username=addon.username, database=addon.database,
        password=password,
        admin_password=crypto.decrypt(addon.admin_password_encrypted) if addon.admin_password_encrypted else "",
        instance_id=addon.instance.instance_id, instance_pk=addon.instance_id,
    )  # fmt: skip


def _unfinished(addon: AddOn) -> AddOnOperation | None:
    return AddOnOperation.objects.filter(addon=addon, status__in=UNFINISHED_OPERATION_STATUSES).first()


def _busy(addon: AddOn, operation: AddOnOperation) -> Conflict:
    return Conflict(f"add-on {addon.addon_id} has a {operation.kind} operation {operation.status}; one runs at a time", operation=operation.summary())


def _accept(addon: AddOn, *, kind: str, actor: Actor, backup: AddOnBackup | None = None) -> AddOnOperation:
    """Record the operation (the caller holds the add-on's row lock) and queue its job on commit."""
    operation = AddOnOperation(addon=addon, kind=kind, requested_by=actor.label[:254], backup=backup)
    try:
        with transaction.atomic():
            operation.save(force_insert=True)
    except IntegrityError as exc:  # a second accept raced past the lock (another database session)
        raise Conflict(f"add-on {addon.addon_id} has an operation running; one runs at a time") from exc
    operation.rq_job_id = f"addon-op-{operation.pk}-1"
    operation.save(update_fields=["rq_job_id"])
    # The add-on says what is under way from the moment it is accepted (a client that polls for
    # `available` after a restore must not see the state of before the job began).
    if addon.status != BUSY_STATUS[kind]:
        addon.status = BUSY_STATUS[kind]
        addon.save(update_fields=["status", "updated_at"])
    enqueue_on_commit("addons.jobs.run_addon_operation", operation.pk, job_id=operation.rq_job_id, timeout=_job_timeout(kind))
    return operation


def _job_timeout(kind: str) -> int | None:
    return settings.ADDONS_BACKUP_TIMEOUT_SECONDS + 120 if kind in (AddOnOperationKind.BACKUP, AddOnOperationKind.RESTORE) else None


def addon_operation_lease_name(*, pk: int) -> str:
    """The lease a worker holds while it runs the add-on operation (addons.jobs); the reconciler
    reads it to tell a live run from a dead worker's, as for instances' operations."""
    return f"addon-operation:{pk}"


def addon_create(*, instance: Instance, actor: Actor, engine: str, version: str | None = None, plan: str = AddOnPlan.HOBBY) -> tuple[AddOn, str | None]:
    """Accept a new add-on on `instance`, on its provider (local, or RDS/ElastiCache on AWS);
    returns it and its connection URL (shown once; None on AWS, where the endpoint comes later)."""
    on_aws = instance.provider == "aws"
    if on_aws:
        offered = aws.versions(engine)
        if version not in (None, "") and version not in offered:
            raise ValidationFailed(f"on AWS, {Engine(engine).label} {', '.join(offered)} are offered", field="version")
        installed = version or offered[0]
    else:
        try:
            installed = engines.installed_version(engine)  # a subprocess: before any lock
        except engines.EngineUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from exc
        if version not in (None, "", installed):
            raise ValidationFailed(f"this installation provides {Engine(engine).label} {installed} only", field="version")
    password, admin_password = _new_password(), _new_password()
    with transaction.atomic():
        locked = Instance.objects.select_for_update(of=("self",)).select_related("tenant__plan").get(pk=instance.pk)
        if locked.destroyed_at is not None or locked.state in (InstanceState.DESTROYING, InstanceState.DESTROYED):
            raise InvalidState(f"cannot add an add-on to {locked.instance_id}: it is {locked.state}")
        if locked.provider != ("aws" if on_aws else "local"):
            raise InvalidState(f"add-ons run on the local provider and on AWS; {locked.instance_id} is on {locked.provider} (docs/addons.md)")
        tenant_plan = locked.tenant.plan
        limit_check(plan=tenant_plan, limit="addons_feature")
        limit_check(plan=tenant_plan, limit="addons", used=lambda: AddOn.objects.filter(tenant_id=locked.tenant_id, deleted_at__isnull=True).count())
        if on_aws:  # where it listens is AWS's to say, once the database exists
            where = {"provider": "aws", "host": "", "port": None, "provider_data": {"region": locked.region.provider_region}}
        else:
            taken = set(AddOn.objects.filter(deleted_at__isnull=True, port__isnull=False).values_list("port", flat=True))
            where = {"provider": "local", "host": "127.0.0.1", "port": engines.free_port(taken)}
        addon = AddOn(
            addon_id=new_addon_id(), tenant_id=locked.tenant_id, instance=locked, engine=engine, version=installed, plan=plan,
            status=AddOnStatus.PROVISIONING, **where,
            username=USERNAME if engine == Engine.POSTGRES else "", database=DATABASE if engine == Engine.POSTGRES else "",
            password_encrypted=crypto.encrypt(password),
            # The local cluster's superuser is the control plane's; RDS has one user, the tenant's.
            admin_password_encrypted=crypto.encrypt(admin_password) if engine == Engine.POSTGRES and not on_aws else "",
        )  # fmt: skip
        try:
            with transaction.atomic():
                addon.save(force_insert=True)
        except IntegrityError as exc:
            raise Conflict("the port chosen for the add-on was just taken; try again") from exc
        _accept(addon, kind=AddOnOperationKind.CREATE, actor=actor)
        log_append(instance=locked, stage="addon", message=f"add-on {addon.addon_id} ({addon.get_engine_display()} {installed}, {plan}) requested by {actor.label}")
        activity_record(
            actor=actor, action="addon.create", tenant=locked.tenant_id, object_type="addon", object_id=addon.addon_id,
            data={"instance_id": locked.instance_id, "engine": engine, "version": installed, "plan": plan},
        )  # fmt: skip
    return addon, addon_connection_url(addon=addon, password=password)


def _lock(addon: AddOn) -> AddOn:
    locked = AddOn.objects.select_for_update(of=("self",)).select_related("instance").filter(pk=addon.pk).first()
    if locked is None or locked.deleted_at is not None:
        raise NotFound(f"no add-on {addon.addon_id!r} in this tenant")
    return locked


@transaction.atomic
def addon_rotate_credentials(*, addon: AddOn, actor: Actor) -> AddOn:
    """A new password for the tenant's role: set by the job, then in force (the old one refused)."""
    locked = _lock(addon)
    if (operation := _unfinished(locked)) is not None:
        raise _busy(locked, operation)
    if locked.status != AddOnStatus.AVAILABLE:
        raise InvalidState(f"cannot rotate the credentials of {locked.addon_id}: it is {locked.status}, not available")
    locked.pending_password_encrypted = crypto.encrypt(_new_password())
    locked.save(update_fields=["pending_password_encrypted", "updated_at"])
    _accept(locked, kind=AddOnOperationKind.ROTATE_CREDENTIALS, actor=actor)
    activity_record(actor=actor, action="addon.rotate_credentials", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"instance_id": locked.instance.instance_id})
    return locked


@transaction.atomic
def addon_destroy(*, addon: AddOn, actor: Actor, confirm: str | None, final_snapshot: bool = True) -> AddOn:
    """Destroy the add-on and its data: the caller repeats its id (`?confirm=`). On AWS a final
    snapshot is kept unless `final_snapshot` is False (the local engine keeps none)."""
    locked = _lock(addon)
    if confirm != locked.addon_id:
        raise InvalidState(f"destroying {locked.addon_id} deletes its data: repeat its id to confirm (?confirm={locked.addon_id})")
    if (operation := _unfinished(locked)) is not None:
        raise _busy(locked, operation)
    locked.status = AddOnStatus.DELETING
    fields = ["status", "updated_at"]
    if locked.provider == "aws":
        locked.provider_data = {**locked.provider_data, "final_snapshot": bool(final_snapshot)}
        fields.append("provider_data")
    locked.save(update_fields=fields)
    _accept(locked, kind=AddOnOperationKind.DESTROY, actor=actor)
    log_append(instance=locked.instance, stage="addon", message=f"add-on {locked.addon_id} is being destroyed, with its data, by {actor.label}")
    data = {"instance_id": locked.instance.instance_id, "engine": locked.engine, **({"final_snapshot": bool(final_snapshot)} if locked.provider == "aws" else {})}
    activity_record(actor=actor, action="addon.destroy", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data=data)
    return locked


@transaction.atomic
def addon_reveal(*, addon: AddOn, actor: Actor) -> str:
    """The connection URL, for an owner or admin who asked for it: audited (that it was shown,
    never what)."""
    locked = _lock(addon)
    if locked.status in (AddOnStatus.DELETING, AddOnStatus.DELETED):
        raise InvalidState(f"{locked.addon_id} is {locked.status}: it has no connection to reveal")
    url = addon_connection_url(addon=locked)
    if url is None:
        raise InvalidState(f"{locked.addon_id} has no endpoint on AWS yet: reveal its URL once it is available")
    activity_record(actor=actor, action="addon.reveal", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"instance_id": locked.instance.instance_id, "engine": locked.engine})
    return url


# --- the job's steps ---------------------------------------------------------------------------


def addon_operation_begin(*, pk: int) -> AddOnOperation | None:
    """Mark the operation running (counting the attempt); None when it has finished already (a
    job run twice does its work once)."""
    with transaction.atomic():
        operation = AddOnOperation.objects.select_for_update(of=("self",)).select_related("addon__instance__blueprint", "addon__instance__region", "backup").filter(pk=pk).first()
        if operation is None or operation.status not in UNFINISHED_OPERATION_STATUSES:
            return None
        operation.status = AddOnOperationStatus.RUNNING
        operation.attempts += 1
        operation.started_at = operation.started_at or timezone.now()
        operation.save(update_fields=["status", "attempts", "started_at"])
        addon = operation.addon
        if addon.status != BUSY_STATUS[operation.kind]:
            addon.status = BUSY_STATUS[operation.kind]
            addon.save(update_fields=["status", "updated_at"])
    return operation


def _scrub(text: str, addon: AddOn) -> str:
    """An engine's error message, without any of the add-on's passwords (defence in depth: the
    engine never puts one in a message)."""
    for field in ("password_encrypted", "pending_password_encrypted", "admin_password_encrypted"):
        value = getattr(addon, field)
        if value:
            text = text.replace(crypto.decrypt(value), "[secret]")
    return text[:2000]


def addon_operation_run(*, operation: AddOnOperation) -> None:
    """Do the engine's work for `operation` (idempotent steps) and record how it ended. An AWS
    step that has to wait for AWS hands the operation to the poll sweep (`_await_poll`)."""
    addon = operation.addon
    engine = _engine(addon)
    try:
        if operation.kind == AddOnOperationKind.CREATE:
            facts = engine.provision(_target(addon))
        elif operation.kind == AddOnOperationKind.ROTATE_CREDENTIALS:
            facts = engine.set_password(_target(addon), crypto.decrypt(addon.pending_password_encrypted))
        elif operation.kind == AddOnOperationKind.BACKUP:
            facts = _run_backup(addon, operation.backup)
        elif operation.kind == AddOnOperationKind.RESTORE:
            facts = _run_restore(addon, operation.backup)
        elif addon.provider == "aws":
            facts = aws.destroy(_target(addon), final_snapshot=addon.provider_data.get("final_snapshot", True))
        else:
            facts = engines.destroy(_target(addon))
    except aws.InProgress as progress:
        _await_poll(operation, progress)
        return
    except Exception as exc:  # noqa: BLE001 - any engine failure ends the operation as failed, said why
        if isinstance(exc, ProviderError):
            reason = f"{exc.code}: {exc.message}"
        elif isinstance(exc, ChecksumMismatch):
            reason = str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        reason = _scrub(reason, addon)
        logger.warning("add-on %s: %s failed: %s", addon.addon_id, operation.kind, reason)
        _finish(operation, ok=False, reason=reason)
        return
    _finish(operation, ok=True, facts=facts)
    if operation.kind == AddOnOperationKind.BACKUP:
        return  # the instance's environment is as it was
    if operation.kind == AddOnOperationKind.RESTORE and addon.provider != "aws":
        return  # restored in place: same host and port (on AWS a restore is a new database)
    if operation.kind != AddOnOperationKind.DESTROY or addon.instance.destroyed_at is None:
        addon_env_push(instance=addon.instance)


@transaction.atomic
def _finish(operation: AddOnOperation, *, ok: bool, reason: str = "", facts: aws.Facts | None = None) -> None:
    op = AddOnOperation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
    addon = AddOn.objects.select_for_update(of=("self",)).select_related("instance").get(pk=op.addon_id)
    now = timezone.now()
    op.status, op.finished_at, op.error_message, op.next_poll_at = (AddOnOperationStatus.SUCCEEDED if ok else AddOnOperationStatus.FAILED), now, reason, None
    op.save(update_fields=["status", "finished_at", "error_message", "next_poll_at"])
    fields = ["status", "error_message", "updated_at"]
    addon.error_message = "" if ok else reason
    fields += _record_facts(addon, facts)
    if op.kind == AddOnOperationKind.ROTATE_CREDENTIALS:
        # A failed rotation leaves the old password in force: the add-on stays available.
        addon.status = AddOnStatus.AVAILABLE
        if ok:
            addon.password_encrypted, addon.pending_password_encrypted, addon.credentials_rotated_at = addon.pending_password_encrypted, "", now
            fields += ["password_encrypted", "pending_password_encrypted", "credentials_rotated_at"]
        else:
            addon.pending_password_encrypted = ""
            fields.append("pending_password_encrypted")
    elif op.kind == AddOnOperationKind.DESTROY and ok:
        addon.status, addon.deleted_at = AddOnStatus.DELETED, now
        fields.append("deleted_at")
    elif op.kind in (AddOnOperationKind.BACKUP, AddOnOperationKind.RESTORE):
        # The server runs either way (a failed restore of PostgreSQL is rolled back whole; one
        # refused for its checksum touched nothing): the add-on stays available, the error said.
        addon.status = AddOnStatus.AVAILABLE
        if op.kind == AddOnOperationKind.BACKUP and not ok and op.backup_id:
            AddOnBackup.objects.filter(pk=op.backup_id, status=BackupStatus.PENDING).update(status=BackupStatus.FAILED, error_message=reason, completed_at=now)
    else:
        addon.status = AddOnStatus.AVAILABLE if ok else AddOnStatus.ERROR
    addon.save(update_fields=fields)
    outcome = "done" if ok else f"failed: {reason}"
    if ok and op.kind == AddOnOperationKind.DESTROY and addon.provider_data.get("final_snapshot_id"):
        outcome += f" (its final snapshot {addon.provider_data['final_snapshot_id']} is kept in AWS)"
    log_append(instance=addon.instance, stage="addon", message=f"add-on {addon.addon_id}: {op.kind} {outcome}", level="info" if ok else "warning")
    if not ok:
        activity_record(actor=Actor.system("addons"), action=f"addon.{op.kind}.failed", tenant=addon.tenant_id, object_type="addon", object_id=addon.addon_id, data={"reason": reason[:200]})


def addon_operation_fail(*, pk: int, reason: str) -> None:
    operation = AddOnOperation.objects.select_related("addon").filter(pk=pk).first()
    if operation is not None and operation.status in UNFINISHED_OPERATION_STATUSES:
        _finish(operation, ok=False, reason=_scrub(reason, operation.addon))


# --- waiting for AWS ---------------------------------------------------------------------------


def _record_facts(addon: AddOn, facts: aws.Facts | None) -> list[str]:
    """What an AWS step found (the endpoint, the identifiers), set on the locked `addon`; returns
    the fields changed."""
    if facts is None:
        return []
    fields = []
    if facts.host:
        addon.host, addon.port = facts.host, facts.port
        fields += ["host", "port"]
    if facts.data:
        addon.provider_data = {**(addon.provider_data or {}), **facts.data}
        fields.append("provider_data")
    return fields


@transaction.atomic
def _await_poll(operation: AddOnOperation, progress: aws.InProgress) -> None:
    """AWS is still at it: remember what the step said and let the poll sweep enqueue the job
    again in ADDONS_AWS_POLL_SECONDS; past ADDONS_AWS_WAIT_TIMEOUT_SECONDS the operation fails."""
    op = AddOnOperation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
    addon = AddOn.objects.select_for_update(of=("self",)).select_related("instance").get(pk=op.addon_id)
    if op.status not in UNFINISHED_OPERATION_STATUSES:
        return
    if progress.data:
        addon.provider_data = {**(addon.provider_data or {}), **progress.data}
        addon.save(update_fields=["provider_data", "updated_at"])
    now = timezone.now()
    waited = (now - (op.started_at or now)).total_seconds()
    if waited >= settings.ADDONS_AWS_WAIT_TIMEOUT_SECONDS:
        _finish(op, ok=False, reason=_scrub(f"timeout: {progress.message} after {int(waited)}s (ADDONS_AWS_WAIT_TIMEOUT_SECONDS); gave up waiting", addon))
        return
    first = op.next_poll_at is None
    op.next_poll_at = now + timedelta(seconds=settings.ADDONS_AWS_POLL_SECONDS)
    op.save(update_fields=["next_poll_at"])
    if first:
        log_append(instance=addon.instance, stage="addon", message=f"add-on {addon.addon_id}: {op.kind} waits for AWS: {progress.message}")


def addon_operation_claim_poll(*, pk: int, due: object, claim: str, until: object) -> bool:
    """The poll sweep takes a due operation for one job (`claim`): its due time moves to `until`,
    so a job that is lost (Redis, a dead worker) is enqueued again then. False when another sweep
    took it first, or it finished meanwhile."""
    return bool(
        AddOnOperation.objects.filter(pk=pk, status__in=UNFINISHED_OPERATION_STATUSES, next_poll_at=due).update(next_poll_at=until, rq_job_id=claim[:64])
    )


# --- the attached instance's environment -------------------------------------------------------


def instance_connection_url(*, addon: AddOn, instance: Instance) -> str | None:
    """The URL the attached instance connects with: a sandboxed local instance has a network of
    its own and reaches the add-on through its unix socket, bound into its sandbox at
    /run/addons/<addon_id>; an unsandboxed one over loopback TCP."""
    if addon.provider != "local":
        return addon_connection_url(addon=addon)
    sandboxed = (instance.provider_data or {}).get("sandbox", "off") != "off"
    socket_dir = engines.instance_socket_dir(_target(addon)) if sandboxed and addon.provider == "local" else None
    password = crypto.decrypt(addon.password_encrypted)
    return engines.connection_url(engine=addon.engine, host=addon.host, port=addon.port, username=addon.username, password=password, database=addon.database, socket_dir=socket_dir)


def instance_addon_env(*, instance: Instance) -> dict[str, str]:
    """What the instance's program sees of its add-ons: the oldest available one of each engine
    as DATABASE_URL / REDIS_URL (in the form it can connect with: instance_connection_url). An add-on
    backing up or restoring is still the instance's: its URL stays."""
    env: dict[str, str] = {}
    live = AddOn.objects.filter(instance=instance, deleted_at__isnull=True, status__in=ENV_STATUSES).select_related("instance").order_by("created_at", "id")
    for addon in live:
        url = instance_connection_url(addon=addon, instance=instance)
        if url:  # on AWS, once the database has its endpoint
            env.setdefault(ENV_NAME[addon.engine], url)
    return env


def addon_env_push(*, instance: Instance) -> str | None:
    """Push the add-ons' URLs to the instance's agent when it runs (its secrets live in memory: a
    start pushes them again, `addon_env_push_hook`). Returns what happened, for the lifecycle log."""
    fresh = Instance.objects.select_related("blueprint").filter(pk=instance.pk, destroyed_at__isnull=True).first()
    if fresh is None or fresh.state != InstanceState.RUNNING:
        return None
    if fresh.provider == "local" and not (fresh.socket_path or fresh.port):
        return None  # no agent to reach (a record without a machine)
    values = instance_hooks.instance_environment(fresh)
    names = sorted(instance_addon_env(instance=fresh))
    try:
        agent_client_for(fresh, timeout=30).put_secrets(values)
    except (AgentError, AgentUnreachable, AgentTimeout) as exc:
        log_append(instance=fresh, stage="addon", message=f"the add-ons' environment could not be pushed to the agent: {type(exc).__name__}", level="warning")
        return f"add-ons: environment not pushed ({type(exc).__name__})"
    note = f"add-ons: {', '.join(names) if names else 'no add-on URL'} pushed to the instance's environment"
    log_append(instance=fresh, stage="addon", message=note)
    return note


def addon_env_push_hook(instance: Instance) -> str | None:
    """instances' `machine_started` hook: the secrets were lost with the machine's memory."""
    if not AddOn.objects.filter(instance=instance, deleted_at__isnull=True).exists():
        return None
    return addon_env_push(instance=instance)


def addons_of_destroyed_instance(instance: Instance) -> None:
    """instances' `instance_destroying` hook (inside the destroy's transaction): an instance's
    add-ons go with it (their data too), each by a destroy operation of its own."""
    for addon in AddOn.objects.filter(instance=instance, deleted_at__isnull=True).exclude(status=AddOnStatus.DELETING):
        locked = AddOn.objects.select_for_update(of=("self",)).get(pk=addon.pk)
        if _unfinished(locked) is not None:
            # Its running operation ends first; the reconciler destroys it then (below).
            continue
        locked.status = AddOnStatus.DELETING
        locked.save(update_fields=["status", "updated_at"])
        _accept(locked, kind=AddOnOperationKind.DESTROY, actor=Actor.system("addons"))
        activity_record(actor=Actor.system("addons"), action="addon.destroy", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"instance_id": instance.instance_id, "engine": locked.engine, "reason": "its instance is destroyed"})


def _reconcile_operations(summary: dict) -> None:
    """An operation whose job is gone (Redis lost it) or whose worker died while running it (its
    lease expired) is run again — every step is idempotent — or, after OPERATION_MAX_ATTEMPTS,
    failed as `worker_lost` (a backup's record then fails too; a Redis add-on stopped mid-restore
    is available again and its server is started below). Operations waiting for AWS belong to
    the poll sweep."""
    now = timezone.now()
    grace = timedelta(seconds=settings.RECONCILER_QUEUE_GRACE_SECONDS)
    lease_grace = timedelta(seconds=settings.OPERATION_LEASE_SECONDS)
    for op in AddOnOperation.objects.filter(status__in=UNFINISHED_OPERATION_STATUSES, next_poll_at__isnull=True).select_related("addon"):
        if op.status == AddOnOperationStatus.QUEUED:
            if now - op.created_at < grace:
                continue
            alive = job_is_alive(op.rq_job_id) if op.rq_job_id else False
            reason = "its queued job is gone (Redis restarted or was unreachable)"
        else:
            if now - (op.started_at or op.created_at) < lease_grace:
                continue
            alive = lease_alive(addon_operation_lease_name(pk=op.pk))
            reason = "its worker stopped while running it"
        if alive is not False:
            continue  # alive, or Redis cannot say: the next pass looks again
        if op.attempts >= settings.OPERATION_MAX_ATTEMPTS:
            addon_operation_fail(pk=op.pk, reason=f"worker_lost: {reason}; gave up after {op.attempts} attempts")
            summary["addon_operations_lost"] = summary.get("addon_operations_lost", 0) + 1
            continue
        job_id = f"addon-op-{op.pk}-{op.attempts + 1}-{secrets.token_hex(3)}"
        with transaction.atomic():
            # Only as it was read: a worker that took it meanwhile keeps it.
            if AddOnOperation.objects.filter(pk=op.pk, status=op.status, rq_job_id=op.rq_job_id, attempts=op.attempts).update(status=AddOnOperationStatus.QUEUED, rq_job_id=job_id):
                enqueue_on_commit("addons.jobs.run_addon_operation", op.pk, job_id=job_id, timeout=_job_timeout(op.kind))
                log_append(instance=op.addon.instance, stage="addon", message=f"add-on {op.addon.addon_id}: {op.kind} queued again: {reason}", level="warning")
                summary["addon_operations_requeued"] = summary.get("addon_operations_requeued", 0) + 1


def addons_reconcile(summary: dict) -> None:
    """instances' `reconcile` hook: run again (or fail) operations whose worker died, destroy
    add-ons left on a destroyed instance (their operation was unfinished when it went), and start
    an available add-on's server again when it is gone (a host reboot)."""
    _reconcile_operations(summary)
    orphaned = AddOn.objects.filter(deleted_at__isnull=True, instance__destroyed_at__isnull=False).exclude(status=AddOnStatus.DELETING)
    for instance in {addon.instance for addon in orphaned.select_related("instance")}:
        with transaction.atomic():
            addons_of_destroyed_instance(instance)
    restarted = 0
    for addon in AddOn.objects.filter(deleted_at__isnull=True, provider="local", status=AddOnStatus.AVAILABLE, instance__destroyed_at__isnull=True):
        target = _target(addon)
        if engines.is_running(target):
            continue
        try:
            engines.ensure_running(target)
            restarted += 1
        except Exception as exc:  # noqa: BLE001 - said in the log; tried again on the next pass
            logger.warning("add-on %s: its server could not be started again: %s", addon.addon_id, _scrub(f"{type(exc).__name__}: {exc}", addon))
    if restarted:
        summary["addons_restarted"] = restarted


# --- backups ---------------------------------------------------------------------------------
#
# A backup is an operation of its add-on like any other (one at a time, 409; a job; idempotent):
# `backup` writes the engine's dump to a private work file, records its SHA-256 and size, and puts
# it in the store (addons/storage.py); `restore` fetches it back, refuses it when its SHA-256 is not
# the one recorded (the data untouched), then hands it to the engine. Retention (the plan's days)
# and the daily quota of manual backups are plan data (SubscriptionPlan); the scheduler's sweep
# (addons.jobs.backup_sweep) takes the due automatic backups and deletes the expired ones.

DOWNLOAD_SALT = "addons.backup-download"
AUTO_BACKUP_EVERY = timedelta(days=1)


def new_backup_id() -> str:
    return "bak_" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def _plan_of(addon: AddOn):
    return Tenant.objects.select_related("plan").get(pk=addon.tenant_id).plan


def addon_backup_next_run(*, addon: AddOn) -> datetime | None:
    """When the sweep takes the add-on's next automatic backup (None: automatic backups are off):
    a day after the last one attempted since they were turned on, else as soon as they are."""
    if addon.auto_backup_since is None:
        return None
    last = addon.backups.filter(kind=BackupKind.AUTO, created_at__gte=addon.auto_backup_since).order_by("-created_at").values_list("created_at", flat=True).first()
    return last + AUTO_BACKUP_EVERY if last is not None else addon.auto_backup_since


def _today_start(now: datetime) -> datetime:
    return now.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _manual_today(addon: AddOn, now: datetime) -> int:
    return addon.backups.filter(kind=BackupKind.MANUAL, created_at__gte=_today_start(now)).exclude(status=BackupStatus.FAILED).count()


def addon_backup_info(*, addon: AddOn) -> dict:
    """The add-on's backup plan: its plan's retention and daily quota, today's use, the schedule."""
    plan, now = _plan_of(addon), timezone.now()
    last = addon.backups.filter(status=BackupStatus.AVAILABLE).order_by("-created_at").values_list("created_at", flat=True).first()
    return {
        "addon_id": addon.addon_id, "auto_backup": addon.auto_backup_since is not None,
        "retention_days": plan.addon_backup_retention_days, "daily_quota": plan.addon_backups_per_day,
        "used_today": _manual_today(addon, now), "next_run_at": addon_backup_next_run(addon=addon), "last_backup_at": last,
    }  # fmt: skip


@transaction.atomic
def addon_auto_backup_set(*, addon: AddOn, actor: Actor, enabled: bool) -> AddOn:
    locked = _lock(addon)
    if enabled:
        limit_check(plan=_plan_of(locked), limit="addon_backups_feature")
    if enabled == (locked.auto_backup_since is not None):
        return locked  # as asked already: the schedule is not reset
    locked.auto_backup_since = timezone.now() if enabled else None
    locked.save(update_fields=["auto_backup_since", "updated_at"])
    activity_record(actor=actor, action="addon.auto_backup", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"enabled": enabled})
    return locked


def _accept_backup(locked: AddOn, *, actor: Actor, kind: str) -> AddOnBackup:
    """A new backup of the locked add-on and its operation (the caller checked the rules)."""
    now = timezone.now()
    # On AWS an RDS/ElastiCache snapshot stands in for a dump (docs/addons.md, "On AWS"): its id is
    # the location, and AWS keeps (and checks) its bytes.
    store_name = BackupStorage.SNAPSHOT if locked.provider == "aws" else storage.current_store().name
    backup = AddOnBackup.objects.create(
        backup_id=new_backup_id(), addon=locked, tenant_id=locked.tenant_id, kind=kind, status=BackupStatus.PENDING,
        storage=store_name, requested_by=actor.label[:254], created_at=now,
    )  # fmt: skip
    if store_name == BackupStorage.SNAPSHOT:
        backup.location = aws.snapshot_id(_target(locked), backup.backup_id)
    else:
        backup.location = f"{locked.tenant_id}/{locked.addon_id}/{backup.backup_id}.{'pgdump' if locked.engine == Engine.POSTGRES else 'rdb'}"
    backup.save(update_fields=["location"])
    _accept(locked, kind=AddOnOperationKind.BACKUP, actor=actor, backup=backup)
    return backup


@transaction.atomic
def backup_create(*, addon: AddOn, actor: Actor, kind: str = BackupKind.MANUAL) -> AddOnBackup:
    """Take a backup now (manual: counted against the plan's daily quota), as an operation."""
    locked = _lock(addon)
    plan = _plan_of(locked)
    limit_check(plan=plan, limit="addon_backups_feature")
    if (operation := _unfinished(locked)) is not None:
        raise _busy(locked, operation)
    if locked.status != AddOnStatus.AVAILABLE:
        raise InvalidState(f"cannot back up {locked.addon_id}: it is {locked.status}, not available")
    if kind == BackupKind.MANUAL:
        limit_check(plan=plan, limit="addon_backups", used=lambda: _manual_today(locked, timezone.now()))
    backup = _accept_backup(locked, actor=actor, kind=kind)
    log_append(instance=locked.instance, stage="addon", message=f"add-on {locked.addon_id}: {kind} backup {backup.backup_id} requested by {actor.label}")
    activity_record(actor=actor, action="addon.backup", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"backup_id": backup.backup_id, "kind": kind})
    return backup


def _backup_of(addon: AddOn, backup_id: str) -> AddOnBackup:
    backup = AddOnBackup.objects.filter(addon=addon, backup_id=backup_id).exclude(status=BackupStatus.DELETED).first()
    if backup is None:
        raise NotFound(f"no backup {backup_id!r} of add-on {addon.addon_id}")
    return backup


@transaction.atomic
def backup_restore(*, addon: AddOn, actor: Actor, backup_id: str) -> AddOn:
    """Put the add-on's data back as it was in one of its backups (replacing what is there)."""
    locked = _lock(addon)
    if (operation := _unfinished(locked)) is not None:
        raise _busy(locked, operation)
    if locked.status != AddOnStatus.AVAILABLE:
        raise InvalidState(f"cannot restore {locked.addon_id}: it is {locked.status}, not available")
    backup = _backup_of(locked, backup_id)
    if backup.status != BackupStatus.AVAILABLE:
        raise InvalidState(f"backup {backup.backup_id} is {backup.status}: only an available backup can be restored")
    _accept(locked, kind=AddOnOperationKind.RESTORE, actor=actor, backup=backup)
    log_append(instance=locked.instance, stage="addon", message=f"add-on {locked.addon_id}: restore of backup {backup.backup_id} requested by {actor.label}")
    activity_record(actor=actor, action="addon.restore", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"backup_id": backup.backup_id})
    return locked


def _purge(backup_pk: int) -> None:
    """Delete a deleted backup's bytes from its store; on failure the sweep tries again."""
    backup = AddOnBackup.objects.filter(pk=backup_pk, status__in=(BackupStatus.DELETED, BackupStatus.FAILED), stored=True).select_related("addon__instance__blueprint", "addon__instance__region").first()
    if backup is None:
        return
    try:
        if backup.storage == BackupStorage.SNAPSHOT:
            aws.snapshot_delete(_target(backup.addon), backup.location)
        else:
            storage.store_named(backup.storage).delete(backup.location)
    except (storage.StoreError, ProviderError) as exc:
        logger.warning("backup %s: not deleted from its store yet: %s", backup.backup_id, exc)
        return
    AddOnBackup.objects.filter(pk=backup.pk).update(stored=False)


def _mark_deleted(backup: AddOnBackup, now: datetime) -> None:
    AddOnBackup.objects.filter(pk=backup.pk).update(status=BackupStatus.DELETED, deleted_at=now)
    transaction.on_commit(lambda pk=backup.pk: _purge(pk))


@transaction.atomic
def backup_delete(*, addon: AddOn, actor: Actor, backup_id: str) -> None:
    locked = _lock(addon)
    backup = _backup_of(locked, backup_id)
    running = AddOnOperation.objects.filter(backup=backup, status__in=UNFINISHED_OPERATION_STATUSES).first()
    if running is not None:
        raise Conflict(f"backup {backup.backup_id} is in use by a {running.kind} operation {running.status}", operation=running.summary())
    _mark_deleted(backup, timezone.now())
    activity_record(actor=actor, action="addon.backup.delete", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"backup_id": backup.backup_id})


def backup_filename(*, backup: AddOnBackup) -> str:
    return f"{backup.addon.addon_id}-{backup.backup_id}.{'dump' if backup.location.endswith('.pgdump') else 'rdb'}"


@transaction.atomic
def backup_download_url(*, addon: AddOn, actor: Actor, backup_id: str, signed_url: Callable[[str], str]) -> tuple[str, datetime]:
    """A URL that downloads the backup for ADDONS_BACKUP_DOWNLOAD_SECONDS: S3's presigned URL, or
    for the local store a signed control-plane URL (`signed_url(token)`: the view's), checked on
    every use. Audited: a backup holds all of the add-on's data."""
    locked = _lock(addon)
    backup = _backup_of(locked, backup_id)
    if backup.status != BackupStatus.AVAILABLE:
        raise InvalidState(f"backup {backup.backup_id} is {backup.status}: only an available backup can be downloaded")
    seconds = settings.ADDONS_BACKUP_DOWNLOAD_SECONDS
    expires_at = timezone.now() + timedelta(seconds=seconds)
    if backup.storage == storage.S3Store.name:
        try:
            url = storage.S3Store().presigned_url(backup.location, filename=backup_filename(backup=backup), seconds=seconds)
        except storage.StoreError as exc:
            raise ServiceUnavailable(f"the backup store cannot sign a download now: {exc}") from exc
    elif backup.storage == storage.LocalStore.name:
        url = signed_url(signing.dumps({"b": backup.backup_id, "t": locked.tenant_id, "n": secrets.token_urlsafe(8)}, salt=DOWNLOAD_SALT))
    else:
        raise InvalidState(f"backup {backup.backup_id} is a provider snapshot: it cannot be downloaded")
    activity_record(actor=actor, action="addon.backup.download", tenant=locked.tenant_id, object_type="addon", object_id=locked.addon_id, data={"backup_id": backup.backup_id})
    return url, expires_at


def backup_for_download(*, token: str) -> AddOnBackup:
    """The backup a local store's download URL names, if its signature holds, it has not expired,
    and the backup is still its tenant's and available; else NotFound (or Forbidden: expired)."""
    try:
        data = signing.loads(token, salt=DOWNLOAD_SALT, max_age=settings.ADDONS_BACKUP_DOWNLOAD_SECONDS)
    except signing.SignatureExpired as exc:
        raise Forbidden("this download link has expired: ask for a new one") from exc
    except signing.BadSignature as exc:
        raise NotFound("no such download") from exc
    if not isinstance(data, dict):
        raise NotFound("no such download")
    backup = (
        AddOnBackup.objects.select_related("addon").filter(backup_id=data.get("b"), tenant_id=data.get("t"), status=BackupStatus.AVAILABLE, storage=storage.LocalStore.name, addon__deleted_at__isnull=True).first()
    )  # fmt: skip
    if backup is None:
        raise NotFound("no such download")
    return backup


def _work_file(suffix: str) -> Path:
    work = Path(settings.ADDONS_LOCAL_DIR) / "work"
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    fd, name = tempfile.mkstemp(dir=work, suffix=suffix)
    os.close(fd)
    return Path(name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumMismatch(Exception):
    pass


def _run_backup(addon: AddOn, backup: AddOnBackup) -> None:
    if backup.storage == BackupStorage.SNAPSHOT:
        return _run_snapshot(addon, backup)
    work = _work_file(".backup")
    try:
        engines.backup(_target(addon), work)
        size, digest = work.stat().st_size, _sha256(work)
        storage.store_named(backup.storage).put(backup.location, work)
    finally:
        work.unlink(missing_ok=True)
    plan, now = _plan_of(addon), timezone.now()
    expires = backup.created_at + timedelta(days=plan.addon_backup_retention_days) if plan.addon_backup_retention_days else now
    AddOnBackup.objects.filter(pk=backup.pk).update(status=BackupStatus.AVAILABLE, stored=True, size_bytes=size, sha256=digest, completed_at=now, expires_at=expires)


def _run_snapshot(addon: AddOn, backup: AddOnBackup) -> None:
    """An AWS snapshot as the backup: started (idempotent: the same name is the same snapshot),
    then followed by the poll sweep until AWS says it is available."""
    target = _target(addon)
    snapshot = aws.snapshot_create(target, backup.backup_id)
    state = aws.snapshot_status(target, snapshot)
    if state == "creating":
        raise aws.InProgress(f"AWS is taking the snapshot {snapshot}")
    if state != "available":
        raise ProviderError(ErrorCode.PROVIDER_ERROR, f"AWS's snapshot {snapshot} is {state}")
    plan, now = _plan_of(addon), timezone.now()
    expires = backup.created_at + timedelta(days=plan.addon_backup_retention_days) if plan.addon_backup_retention_days else now
    AddOnBackup.objects.filter(pk=backup.pk).update(status=BackupStatus.AVAILABLE, stored=True, location=snapshot, completed_at=now, expires_at=expires)


def _run_restore(addon: AddOn, backup: AddOnBackup) -> aws.Facts | None:
    if backup.storage == BackupStorage.SNAPSHOT:
        # A new database from the snapshot, the old one retired: its endpoint is recorded and
        # pushed to the instance by the caller (addon_operation_run).
        return aws.snapshot_restore(_target(addon), backup.location)
    work = _work_file(".restore")
    try:
        storage.store_named(backup.storage).fetch(backup.location, work)
        if _sha256(work) != backup.sha256:
            raise ChecksumMismatch(f"backup {backup.backup_id} does not match its recorded SHA-256 (damaged or altered in its store): nothing was restored, the data is as it was")
        engines.restore(_target(addon), work)
    finally:
        work.unlink(missing_ok=True)


def backups_sweep() -> dict:
    """The scheduler's job: take the due automatic backups, delete the expired ones (and those of
    destroyed add-ons) from their store. Row by row: safe to run twice at once."""
    now = timezone.now()
    summary = {"auto_backups": 0, "expired": 0, "purged": 0}
    enabled = AddOn.objects.filter(deleted_at__isnull=True, auto_backup_since__isnull=False, status=AddOnStatus.AVAILABLE)
    for addon in enabled.select_related("instance"):
        next_run = addon_backup_next_run(addon=addon)
        if next_run is None or next_run > now:
            continue
        try:
            backup_create(addon=addon, actor=Actor.system("addons"), kind=BackupKind.AUTO)
            summary["auto_backups"] += 1
        except (Conflict, InvalidState, NotFound) as exc:
            logger.info("add-on %s: automatic backup skipped: %s", addon.addon_id, exc)
        except PlanLimitReached:
            # The plan has no backups any more (a downgrade): the schedule stops.
            AddOn.objects.filter(pk=addon.pk).update(auto_backup_since=None)
    expired = AddOnBackup.objects.filter(status=BackupStatus.AVAILABLE).filter(Q(expires_at__lte=now) | Q(addon__deleted_at__isnull=False))
    for backup in expired:
        with transaction.atomic():
            _mark_deleted(backup, now)
        summary["expired"] += 1
    for pk in AddOnBackup.objects.filter(status__in=(BackupStatus.DELETED, BackupStatus.FAILED), stored=True).values_list("pk", flat=True):
        _purge(pk)
        summary["purged"] += 1
    return summary
