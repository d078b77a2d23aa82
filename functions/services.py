"""State changes for functions: create, update, delete, the API key, env reveal, deploy, and the
idle sweep. Each writes its audit row (never a secret: env var names, never values; a key's
prefix, never the key).

A deploy is three steps, and the runtime is started outside any lock: (1) the version is recorded
`building` under the function's row lock (one at a time per function: a partial unique index);
(2) its runtime is started and health-checked where functions run (functions/backends.py: this
host's sandbox, in the request; or the tenant's function instance, in a job, since the machine may
first have to be created or woken); (3) under the lock again the version becomes `built` and
`current_version` points at it — the switch is that one row update, so every invocation after it
goes to the new version and none before it — or `failed`, and the previous version goes on
serving untouched. The previous version's runtime is then stopped (or, when an invocation still
holds it, by the next idle sweep; on a function instance, by its host when idle).
"""

from __future__ import annotations

import logging
import secrets
import string
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from orchestrio import crypto
from orchestrio.errors import Conflict, InvalidState, ValidationFailed
from orchestrio.limits import limit_check
from orchestrio.models import Tenant
from orchestrio.services import activity_record
from orchestrio.choices import ActorType
from orchestrio.queue import enqueue, job_is_waiting, lease_alive
from orchestrio.tenancy import Actor, Principal

from . import backends, runtime
from .choices import API_KEY_PREFIX, AuthMode, VersionStatus
from .rules import check_code, check_env, decrypt_env, encrypt_env, key_hash, slug_problem
from .models import Function, FunctionVersion

logger = logging.getLogger(__name__)

_ALPHABET = string.ascii_lowercase + string.digits


def new_function_id() -> str:
    return "fn_" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def _new_key(function: Function) -> str:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    function.api_key_hash = key_hash(key)
    function.api_key_prefix = key[:12]
    return key


def _lock(function: Function) -> Function:
    return Function.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=function.pk)


def function_create(
    *, principal: Principal, slug: str, runtime_name: str, code: str, auth_mode: str = AuthMode.NONE,
    idle_timeout_seconds: int | None = None, env: dict | None = None,
) -> tuple[Function, str | None]:  # fmt: skip
    """A new function (not deployed yet); returns it and its API key (shown once) when
    `auth_mode` is api_key."""
    problem = slug_problem(slug)
    if problem:
        raise ValidationFailed(problem, field="slug")
    backends.require_runtime(runtime_name)
    check_code(code)
    env = check_env(env or {})
    actor = principal.actor
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=principal.tenant.pk)
        limit_check(plan=tenant.plan, limit="functions", used=lambda: Function.objects.filter(tenant=tenant).count())
        function = Function(
            function_id=new_function_id(), tenant=tenant, slug=slug, runtime=runtime_name, code=code, env_encrypted=encrypt_env(env),
            auth_mode=auth_mode, idle_timeout_seconds=idle_timeout_seconds or settings.FUNCTIONS_DEFAULT_IDLE_SECONDS, created_by=actor.label[:254],
        )  # fmt: skip
        key = _new_key(function) if auth_mode == AuthMode.API_KEY else None
        try:
            with transaction.atomic():
                function.save(force_insert=True)
        except IntegrityError as exc:
            raise Conflict(f"the slug {slug!r} is taken; choose another") from exc
        activity_record(
            actor=actor, action="function.create", tenant=tenant, object_type="function", object_id=function.function_id,
            data={"slug": slug, "runtime": runtime_name, "auth_mode": auth_mode, "env_names": sorted(env)},
        )  # fmt: skip
    return function, key


def function_update(*, function: Function, actor: Actor, data: dict) -> tuple[Function, str | None]:
    """Change the draft (code, env: a merge patch, null removes a var), the runtime, the auth mode
    and the idle timeout. Switching to api_key issues a key (returned once). A draft change takes
    effect on the next deploy; the auth mode and idle timeout at once."""
    if "code" in data:
        check_code(data["code"])
    if "runtime" in data:
        backends.require_runtime(data["runtime"])
    with transaction.atomic():
        locked = _lock(function)
        changed: list[str] = []
        key = None
        for field in ("code", "runtime", "idle_timeout_seconds"):
            if field in data and getattr(locked, field) != data[field]:
                setattr(locked, field, data[field])
                changed.append(field)
        env_names: list[str] = []
        if data.get("env") is not None:
            env = decrypt_env(locked.env_encrypted)
            for name, value in data["env"].items():
                if value is None:
                    env.pop(name, None)
                else:
                    env[name] = value
                env_names.append(name)
            locked.env_encrypted = encrypt_env(check_env(env))
            changed.append("env_encrypted")
        if "auth_mode" in data and data["auth_mode"] != locked.auth_mode:
            locked.auth_mode = data["auth_mode"]
            if locked.auth_mode == AuthMode.API_KEY:
                key = _new_key(locked)
            else:
                locked.api_key_hash = locked.api_key_prefix = ""
            changed += ["auth_mode", "api_key_hash", "api_key_prefix"]
        if changed:
            locked.save(update_fields=[*changed, "updated_at"])
            activity_record(
                actor=actor, action="function.update", tenant=locked.tenant_id, object_type="function", object_id=locked.function_id,
                data={"fields": sorted({f.replace("_encrypted", "").replace("api_key_hash", "api_key").replace("api_key_prefix", "api_key") for f in changed}), "env_names": sorted(env_names)},
            )  # fmt: skip
    return locked, key


def function_rotate_api_key(*, function: Function, actor: Actor) -> tuple[Function, str]:
    """A new API key: the old one is refused from the next request on."""
    with transaction.atomic():
        locked = _lock(function)
        if locked.auth_mode != AuthMode.API_KEY:
            raise InvalidState(f"{locked.slug} is public (auth_mode none): set auth_mode to api_key to give it a key")
        key = _new_key(locked)
        locked.save(update_fields=["api_key_hash", "api_key_prefix", "updated_at"])
        activity_record(
            actor=actor,
            action="function.rotate_api_key",
            tenant=locked.tenant_id,
            object_type="function",
            object_id=locked.function_id,
            data={"prefix": locked.api_key_prefix},
        )
    return locked, key


def function_env_reveal(*, function: Function, actor: Actor) -> dict:
    """The draft's env vars, decrypted, for an owner or admin: audited (which names, never values)."""
    env = decrypt_env(function.env_encrypted)
    activity_record(
        actor=actor,
        action="function.env_reveal",
        tenant=function.tenant_id,
        object_type="function",
        object_id=function.function_id,
        data={"env_names": sorted(env)},
    )
    return env


def function_delete(*, function: Function, actor: Actor) -> None:
    """Delete the function, its versions and metrics; its runtimes are stopped and its files
    removed once the deletion is committed. Its slug is free again."""
    with transaction.atomic():
        locked = _lock(function)
        pk = locked.pk
        activity_record(
            actor=actor, action="function.delete", tenant=locked.tenant_id, object_type="function", object_id=locked.function_id, data={"slug": locked.slug}
        )
        tenant_id = locked.tenant_id
        locked.delete()
        transaction.on_commit(lambda: backends.get().remove(pk, tenant_id))


def _target(function: Function, version: FunctionVersion) -> runtime.Target:
    return runtime.Target(
        function_pk=function.pk, slug=function.slug, number=version.number, runtime=version.runtime, code=version.code, env=decrypt_env(version.env_encrypted)
    )


def deploy_job_id(*, version_pk: int) -> str:
    return f"function-deploy-{int(version_pk)}"


def _enqueue_deploy(version: FunctionVersion, actor: Actor) -> None:
    enqueue(
        "functions.jobs.deploy_version", version.pk, actor.type, actor.label, job_id=deploy_job_id(version_pk=version.pk),
        timeout=settings.FUNCTIONS_HOST_READY_SECONDS + int(settings.FUNCTIONS_START_TIMEOUT_SECONDS) + 180,
    )  # fmt: skip


def function_deploy(*, function: Function, actor: Actor, rollback_to: int | None = None) -> FunctionVersion:
    """Build a new version from the draft (or, with `rollback_to`, from that earlier version's
    code and env), start and health-check its runtime, then switch traffic to it. A version that
    fails to start is recorded `failed` with what it printed; the current one keeps serving.
    Where the backend's start may wait minutes (a function instance being created or woken), the
    version is answered `building` and a job finishes the deploy (`deploy_run`)."""
    on = backends.get()
    backends.require_available(function.runtime, on=on)
    on.prepare(function, actor=actor)
    with transaction.atomic():
        locked = _lock(function)
        if rollback_to is not None:
            source = FunctionVersion.objects.filter(function=locked, number=rollback_to).first()
            if source is None or source.status != VersionStatus.BUILT:
                raise InvalidState(f"{locked.slug} has no built version {rollback_to} to roll back to")
            code, runtime_name, env_encrypted = (source.code, source.runtime, source.env_encrypted)
        else:
            check_code(locked.code)
            code, runtime_name, env_encrypted = (locked.code, locked.runtime, locked.env_encrypted)
        backends.require_available(runtime_name, on=on)
        number = (FunctionVersion.objects.filter(function=locked).aggregate(n=Max("number"))["n"] or 0) + 1
        version = FunctionVersion(
            function=locked, number=number, runtime=runtime_name, code=code, env_encrypted=env_encrypted and crypto.rotate(env_encrypted),
            rolled_back_from=rollback_to, created_by=actor.label[:254],
        )  # fmt: skip
        try:
            with transaction.atomic():
                version.save(force_insert=True)
        except IntegrityError as exc:
            raise Conflict(f"{locked.slug} is being deployed already; one deploy runs at a time") from exc
        activity_record(
            actor=actor, action="function.deploy", tenant=locked.tenant_id, object_type="function", object_id=locked.function_id,
            data={"version": number, **({"rolled_back_from": rollback_to} if rollback_to is not None else {})},
        )  # fmt: skip
    on.log(locked.pk, f"deploying version {number}" + (f" (rollback to version {rollback_to})" if rollback_to is not None else ""))
    if not on.deploys_in_request:
        # After the commits before it (the function instance's create job goes first).
        transaction.on_commit(lambda: _enqueue_deploy(version, actor), robust=True)
        return version
    return deploy_run(version_pk=version.pk, actor=actor, on=on)


def deploy_run(*, version_pk: int, actor: Actor, on=None) -> FunctionVersion | None:
    """Steps 2 and 3 of a deploy: start the version (no lock held: it may take seconds, or
    minutes on a function instance), then switch to it — or record it failed. Idempotent: a
    version no longer `building` (finished by an earlier run, or failed as interrupted) is left
    as it is. None when the function was deleted meanwhile."""
    on = on or backends.get()
    version = FunctionVersion.objects.select_related("function").filter(pk=version_pk).first()
    if version is None or version.status != VersionStatus.BUILDING:
        return version
    function, number = version.function, version.number
    error, took = "", None
    try:
        took = on.start(function, _target(function, version))
    except backends.StartLater as exc:
        logger.info("deploy of %s v%s goes on later: %s", function.slug, number, exc)
        return version  # still building: the idle sweep puts its job back on the queue
    except runtime.StartFailed as exc:
        error = f"{exc}: {exc.output}" if exc.output else str(exc)
    except OSError as exc:
        error = f"the runtime could not be prepared: {exc.strerror or exc}"
    previous = None
    with transaction.atomic():
        fresh = Function.objects.select_for_update(of=("self",)).select_related("current_version").filter(pk=function.pk).first()
        version = FunctionVersion.objects.filter(pk=version_pk).first()
        if fresh is None or version is None:
            return None
        if version.status != VersionStatus.BUILDING:
            return version
        version.status = VersionStatus.FAILED if error else VersionStatus.BUILT
        version.error_message = error[:4000]
        version.start_ms = took
        version.finished_at = timezone.now()
        version.save(update_fields=["status", "error_message", "start_ms", "finished_at"])
        if not error:
            previous = fresh.current_version
            fresh.current_version = version
            fresh.save(update_fields=["current_version", "updated_at"])
        activity_record(
            actor=actor, action="function.deploy_failed" if error else "function.deployed", tenant=fresh.tenant_id, object_type="function",
            object_id=fresh.function_id, data={"version": number},
        )  # fmt: skip
    if error:
        on.log(
            fresh.pk,
            f"version {number} failed to deploy; "
            + (f"version {_previous_number(fresh)} keeps serving" if fresh.current_version_id else "nothing is deployed"),
        )
        return version
    runtime.touch(fresh.pk)
    on.log(fresh.pk, f"version {number} is live (started in {took} ms)")
    if previous is not None and previous.number != number:
        on.retire(fresh.pk, previous.number, reason=f"replaced by version {number}")
    return version


def _previous_number(function: Function) -> int | None:
    return function.current_version.number if function.current_version_id and function.current_version else None


def functions_stop_idle() -> dict:
    """The idle sweep: stop the runtimes of functions not invoked for their idle_timeout_seconds,
    every runtime of a version that is no longer current (the backend's part), fail deploys left
    `building` by a process that died, and put a deploy job that was lost (a killed worker, Redis
    down when it was enqueued) back on the queue."""
    on = backends.get()
    stale = timezone.now() - timedelta(seconds=on.interrupted_after_seconds())
    interrupted = FunctionVersion.objects.filter(status=VersionStatus.BUILDING, created_at__lt=stale).update(
        status=VersionStatus.FAILED, error_message=on.interrupted_message(), finished_at=timezone.now()
    )
    requeued = 0
    if not on.deploys_in_request:
        for version in FunctionVersion.objects.filter(status=VersionStatus.BUILDING).only("pk", "created_by"):
            if job_is_waiting(deploy_job_id(version_pk=version.pk)) is False and lease_alive(deploy_lease(version_pk=version.pk)) is False:
                _enqueue_deploy(version, Actor(type=ActorType.SYSTEM, label=version.created_by or "functions"))
                requeued += 1
    summary = on.sweep(list(Function.objects.values_list("pk", "idle_timeout_seconds", "current_version__number")))
    return {**summary, "interrupted_deploys": interrupted, "requeued_deploys": requeued}


def deploy_lease(*, version_pk: int) -> str:
    return f"function-deploy:{int(version_pk)}"
