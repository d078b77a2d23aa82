"""Fleet requests: many instances created, or returned (destroyed), in one call.

Each instance goes through the same services as a single one (`instance_create`,
`operation_accept`): its operation, its job, its audit row. A request is all or nothing when it is
made: the plan's room is checked for the whole batch before anything is created (402), and any
refusal (an id taken, an instance busy) rolls the whole request back. After that, each operation
succeeds or fails on its own, which the request's derived status reports."""

from __future__ import annotations

import logging
import secrets
import threading
from contextlib import contextmanager
from datetime import timedelta

import redis

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from instances.agent_client import AgentError, AgentTimeout, AgentUnreachable, agent_client_for
from instances.choices import FLEET_PROVIDER_APIS, ErrorCode, OperationKind, OperationStatus
from instances.hostnames import instance_id_problem
from instances.models import Instance, Operation, Region
from instances.providers import BatchLaunch, Machine, MachineState, ProviderError
from instances.selectors import RUNNING_STATES, blueprint_visible, counted_instances
from instances.services import (
    instance_create,
    instance_record_machine,
    new_agent_key,
    operation_accept,
    operation_fail,
    operation_release,
)
from orchestrio import crypto
from orchestrio.errors import Forbidden, NotFound, ValidationFailed
from orchestrio.limits import limit_check
from orchestrio.models import Tenant
from orchestrio.queue import enqueue_on_commit, job_is_alive, job_is_waiting
from orchestrio.redis import get_redis
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor, Principal

from .choices import BatchStatus, RequestKind
from .models import FleetBatch, FleetRequest, FleetRequestItem

logger = logging.getLogger(__name__)

# Added to every instance a request creates, so `GET /instances?label=fleet-request:<id>` lists them.
REQUEST_LABEL = "fleet-request"


def _new_request_id() -> str:
    return f"req-{secrets.token_hex(6)}"


def _check_count(count: int) -> None:
    ceiling = settings.FLEET_REQUEST_MAX_COUNT
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= ceiling:
        raise ValidationFailed(f"count must be a whole number from 1 to {ceiling}", field="count")


def _refuse_scoped(principal: Principal) -> None:
    if principal.instance_scope is not None:
        raise Forbidden("an instance-scoped token cannot make fleet requests")


@transaction.atomic
def fleet_request_acquire(
    *,
    principal: Principal,
    blueprint_name: str,
    count: int,
    plan_id: str = "openclaw-basic",
    region: str | None = None,
    instance_id_prefix: str | None = None,
    labels: dict | None = None,
) -> FleetRequest:
    """Create `count` instances `<prefix>-1` … `<prefix>-<count>` (prefix: the request's id)."""
    _refuse_scoped(principal)
    _check_count(count)
    request_id = _new_request_id()
    prefix = instance_id_prefix or request_id
    longest = f"{prefix}-{count}"
    if instance_id_problem(f"{prefix}-1") is not None or instance_id_problem(longest) is not None:
        raise ValidationFailed(
            f"instance_id_prefix must make valid instance ids up to {longest!r}: 1–{62 - len(str(count))} lowercase letters, digits and hyphens, "
            "starting with a letter or digit",
            field="instance_id_prefix",
        )
    labels = dict(labels or {})
    if not isinstance(labels, dict):
        raise ValidationFailed("labels must be an object of key: value strings", field="labels")
    labels[REQUEST_LABEL] = request_id

    # The whole batch against the plan, before anything is created (the tenant row locked, as
    # each create then locks it again: concurrent requests count one at a time).
    tenant = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=principal.tenant.pk)
    live = counted_instances(tenant=tenant)
    limit_check(tenant=tenant, limit="instances", used=live.count, needed=count)
    limit_check(tenant=tenant, limit="running_instances", used=live.filter(state__in=RUNNING_STATES).count, needed=count)

    actor = principal.actor
    fleet_request = FleetRequest.objects.create(
        request_id=request_id, tenant=tenant, kind=RequestKind.ACQUIRE, blueprint_name=blueprint_name, plan_id=plan_id,
        region=region or settings.DEFAULT_REGION, instance_id_prefix=prefix, labels=labels, count=count,
        requested_by=actor.label, requested_by_type=actor.type,
    )  # fmt: skip
    # An EC2Fleet/SpotFleet blueprint on AWS: one fleet call for the whole batch; each create waits
    # for it, queued under the batch's job (instance_create refuses any other combination).
    blueprint = blueprint_visible(tenant=tenant).filter(name=blueprint_name).first()
    region_row = Region.objects.filter(pk=fleet_request.region).first()
    batch = None
    if blueprint is not None and blueprint.provider_api in FLEET_PROVIDER_APIS and region_row is not None and region_row.provider == "aws":
        batch = FleetBatch.objects.create(
            request=fleet_request, provider_api=blueprint.provider_api, bootstrap_key_encrypted=crypto.encrypt(new_agent_key()),
            rq_job_id=f"fleet-batch-{request_id}-1",
        )  # fmt: skip
    items = []
    for position in range(1, count + 1):
        instance = instance_create(
            principal=principal, instance_id=f"{prefix}-{position}", blueprint_name=blueprint_name, plan_id=plan_id,
            region=region, labels=labels, actor=actor, held_by=batch.rq_job_id if batch else "",
        )  # fmt: skip
        operation = instance.operations.get(kind=OperationKind.CREATE)
        items.append(FleetRequestItem(request=fleet_request, position=position, instance=instance, operation=operation))
    FleetRequestItem.objects.bulk_create(items)
    if batch is not None:
        enqueue_on_commit("fleet.jobs.launch_batch", batch.pk, job_id=batch.rq_job_id, timeout=_batch_job_timeout())
    activity_record(
        actor=actor, action="fleet.request", tenant=tenant, object_type="fleet_request", object_id=request_id,
        data={"count": count, "blueprint": blueprint_name, "plan": plan_id, "region": fleet_request.region, "prefix": prefix},
    )  # fmt: skip
    return fleet_request


@transaction.atomic
def fleet_request_return(*, principal: Principal, instances: list[Instance], returns: FleetRequest | None = None) -> FleetRequest:
    """Destroy `instances` (already in the caller's scope) as one request: each gets its destroy
    operation; one already being destroyed, or destroyed, is recorded with nothing to do. A busy
    instance (another operation unfinished) refuses the whole request (409)."""
    _refuse_scoped(principal)
    if not instances:
        raise ValidationFailed("nothing to return: the request's instances are all destroyed", field="instance_ids")
    actor = principal.actor
    request_id = _new_request_id()
    fleet_request = FleetRequest.objects.create(
        request_id=request_id, tenant_id=principal.tenant.pk, kind=RequestKind.RETURN, count=len(instances), returns=returns,
        requested_by=actor.label, requested_by_type=actor.type,
    )  # fmt: skip
    items = []
    for position, instance in enumerate(instances, start=1):
        accepted = operation_accept(instance=instance, kind=OperationKind.DESTROY, actor=actor, audit={"fleet_request": request_id})
        note = "" if accepted.operation is not None else f"already {accepted.instance.state}"
        items.append(FleetRequestItem(request=fleet_request, position=position, instance=instance, operation=accepted.operation, note=note))
    FleetRequestItem.objects.bulk_create(items)
    activity_record(
        actor=actor, action="fleet.return", tenant=principal.tenant, object_type="fleet_request", object_id=request_id,
        data={"count": len(instances), "instances": [i.instance_id for i in instances], **({"returns": returns.request_id} if returns else {})},
    )  # fmt: skip
    return fleet_request


def fleet_return_targets(*, principal: Principal, instance_ids: list[str], instances) -> list[Instance]:
    """The live instances `instance_ids` name, in order, from `instances` (the caller's scope):
    an id that names none is 404, before anything is done."""
    if not instance_ids:
        raise ValidationFailed("instance_ids must name at least one instance", field="instance_ids")
    ceiling = settings.FLEET_REQUEST_MAX_COUNT
    if len(instance_ids) > ceiling:
        raise ValidationFailed(f"at most {ceiling} instances per request", field="instance_ids")
    if len(set(instance_ids)) != len(instance_ids):
        raise ValidationFailed("instance_ids names an instance twice", field="instance_ids")
    found = {i.instance_id: i for i in instances.filter(instance_id__in=instance_ids, destroyed_at__isnull=True)}
    for instance_id in instance_ids:
        if instance_id not in found:
            raise NotFound(f"no instance {instance_id!r} in this tenant")
    return [found[i] for i in instance_ids]


# --- one fleet call per batch (docs/fleet.md) --------------------------------------------------


def _batch_job_timeout() -> int:
    return settings.AWS_FLEET_WAIT_SECONDS + 300  # a Spot Fleet batch follows its request that long


BATCH_LOCK_SECONDS = 30  # a dead job's hold on its batch lapses this fast (refreshed while it runs)


def _batch_lock(batch_pk: int):
    return get_redis().lock(f"orchestrio:fleet-batch:{batch_pk}", timeout=BATCH_LOCK_SECONDS, blocking=False)


@contextmanager
def fleet_batch_held(*, batch: FleetBatch):
    """Run the block only if no other job runs this batch: a Redis lock that a thread keeps alive
    while the block runs, so that a killed worker's hold lapses within BATCH_LOCK_SECONDS (and the
    reconciler can tell a running batch from a dead one). Yields whether it got it."""
    lock = _batch_lock(batch.pk)
    try:
        acquired = lock.acquire()
    except (redis.ConnectionError, redis.TimeoutError):
        acquired = False
    if not acquired:
        yield False
        return
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(BATCH_LOCK_SECONDS / 3):
            try:
                lock.extend(BATCH_LOCK_SECONDS, replace_ttl=True)
            except Exception:  # noqa: BLE001 - lost meanwhile: the assignment's row lock still rules
                pass

    thread = threading.Thread(target=refresh, name=f"fleet-batch-{batch.pk}", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join(timeout=2)
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - expired meanwhile
            pass


def _batch_running(batch: FleetBatch) -> bool | None:
    try:
        return bool(_batch_lock(batch.pk).locked())
    except (redis.ConnectionError, redis.TimeoutError):
        return None


def fleet_batch_job(*, batch: FleetBatch, dead: bool = False) -> str:
    """The live job of a launching batch, enqueued again when it is gone (Redis lost it, it
    crashed; `dead`: the reconciler found its worker gone), its waiting creates moved under the new
    one. Idempotent: the job finds what an earlier attempt launched."""
    with transaction.atomic():
        locked = FleetBatch.objects.select_for_update(of=("self",)).select_related("request").get(pk=batch.pk)
        if locked.status != BatchStatus.LAUNCHING or (not dead and job_is_alive(locked.rq_job_id) is not False):
            return locked.rq_job_id
        previous = locked.rq_job_id
        number = int(previous.rsplit("-", 1)[-1]) + 1 if previous[-1:].isdigit() else 1
        locked.rq_job_id = f"fleet-batch-{locked.request.request_id}-{number}"
        locked.save(update_fields=["rq_job_id"])
        Operation.objects.filter(pk__in=locked.request.items.values("operation"), status=OperationStatus.QUEUED, rq_job_id=previous).update(rq_job_id=locked.rq_job_id)
        enqueue_on_commit("fleet.jobs.launch_batch", locked.pk, job_id=locked.rq_job_id, timeout=_batch_job_timeout())
        logger.warning("fleet batch %s: its job %s was gone; enqueued %s", locked.request.request_id, previous, locked.rq_job_id)
        return locked.rq_job_id


def fleet_create_held_by(operation: Operation) -> str | None:
    """instances' `create_held_by` hook: a create of a launching batch waits for the batch's job
    (it never launches a machine of its own while its batch may be launching one for it)."""
    if operation.kind != OperationKind.CREATE:
        return None
    batch = FleetBatch.objects.filter(request__items__operation=operation, status=BatchStatus.LAUNCHING).first()
    return fleet_batch_job(batch=batch) if batch is not None else None


def fleet_batch_begin(*, batch: FleetBatch) -> FleetBatch | None:
    with transaction.atomic():
        locked = FleetBatch.objects.select_for_update(of=("self",)).select_related("request").get(pk=batch.pk)
        if locked.status != BatchStatus.LAUNCHING:
            return None
        locked.attempts += 1
        locked.save(update_fields=["attempts"])
    return locked


def fleet_batch_waiting(*, batch: FleetBatch) -> list[FleetRequestItem]:
    """The batch's items whose create still waits for a machine, in order."""
    items = batch.request.items.select_related(
        "operation", "instance__blueprint", "instance__plan", "instance__region", "instance__tenant__plan"
    ).order_by("position")
    return [item for item in items if item.operation is not None and not item.operation.is_finished and not item.machine_id]


def _shortfall(batch: FleetBatch, item: FleetRequestItem, launched: int, reasons: list[str]) -> str:
    because = "; ".join(reasons) or "AWS gave no reason"
    return (
        f"the batch's {batch.provider_api} launched {launched} of the {batch.request.count} machines this request asked for, "
        f"none left for {item.instance.instance_id} ({because}); retry it with POST /instances/{item.instance.instance_id}/start, "
        "add machine types or subnets to the blueprint, or retry later"
    )


@transaction.atomic
def fleet_batch_assign(*, batch: FleetBatch, launch: BatchLaunch) -> list[str]:
    """The fleet's machines become the request's instances, in one transaction: sorted by machine
    id, to the waiting instances in position order (the same answer gives the same assignment on a
    re-run). Each assigned create is released to run on its own (it tags its machine, waits for
    it and gives its agent the instance's key); the instances left without a machine fail with
    `provider_capacity` and AWS's reasons. Returns the machines beyond the count (to terminate)."""
    locked = FleetBatch.objects.select_for_update(of=("self",)).select_related("request").get(pk=batch.pk)
    if locked.status != BatchStatus.LAUNCHING:
        return []
    waiting = fleet_batch_waiting(batch=locked)
    machines = sorted(launch.machines, key=lambda m: m.provider_instance_id)
    request_id = locked.request.request_id
    for item, machine in zip(waiting, machines):
        facts = {**machine.provider_data, "fleet_request": request_id}
        lifecycle = facts.get("lifecycle", "on-demand")
        recorded = Machine(provider_instance_id=machine.provider_instance_id, state=MachineState.PENDING, provider_data=facts)
        instance_record_machine(
            operation=item.operation, machine=recorded, instance_type=machine.instance_type or None,
            message=f"assigned machine {machine.provider_instance_id} ({machine.instance_type or 'a listed type'}, {lifecycle}) from the batch's {locked.provider_api} call for {request_id}",
        )  # fmt: skip
        item.machine_id = machine.provider_instance_id
        item.save(update_fields=["machine_id"])
        operation_release(operation=item.operation)
    for item in waiting[len(machines) :]:
        operation_fail(operation=item.operation, code=ErrorCode.PROVIDER_CAPACITY, message=_shortfall(locked, item, len(machines), launch.errors))
    extras = [m.provider_instance_id for m in machines[len(waiting) :]]
    locked.status, locked.assigned_at = BatchStatus.ASSIGNED, timezone.now()
    locked.launched, locked.fleet_id = len(machines), launch.fleet_id or locked.fleet_id
    locked.reasons, locked.extra_machine_ids = list(launch.errors), extras
    locked.save(update_fields=["status", "assigned_at", "launched", "fleet_id", "reasons", "extra_machine_ids"])
    activity_record(
        actor=Actor.system("fleet"), action="fleet.batch_assigned", tenant=locked.request.tenant_id, object_type="fleet_request", object_id=request_id,
        data={"provider_api": locked.provider_api, "fleet_id": locked.fleet_id, "asked": locked.request.count, "launched": len(machines),
              "assigned": min(len(machines), len(waiting)), "extra": extras, "reasons": list(launch.errors)},
    )  # fmt: skip
    _erase_key_if_done(locked)
    return extras


@transaction.atomic
def fleet_batch_fail(*, batch: FleetBatch, error: ProviderError) -> None:
    """The fleet call itself failed (a bad subnet, a refused role, no capacity at all): every
    waiting create fails with its typed error; nothing was launched."""
    locked = FleetBatch.objects.select_for_update(of=("self",)).select_related("request").get(pk=batch.pk)
    if locked.status != BatchStatus.LAUNCHING:
        return
    for item in fleet_batch_waiting(batch=locked):
        operation_fail(operation=item.operation, code=error.code, message=error.message)
    locked.status, locked.assigned_at, locked.reasons = BatchStatus.ASSIGNED, timezone.now(), [error.message]
    locked.save(update_fields=["status", "assigned_at", "reasons"])
    _erase_key_if_done(locked)


def _erase_key_if_done(batch: FleetBatch, *, force: str = "") -> bool:
    """Erase the bootstrap key once no assigned machine still waits for its own key (or `force`:
    why it is erased anyway). After that nobody holds it: the hash on a machine opens nothing."""
    if not batch.bootstrap_key_encrypted:
        return False
    if not force:
        if batch.status != BatchStatus.ASSIGNED:
            return False
        pending = FleetRequestItem.objects.filter(request_id=batch.request_id, adopted_at__isnull=True).exclude(machine_id="")
        if pending.exclude(operation__status__in=(OperationStatus.SUCCEEDED, OperationStatus.FAILED)).exists():
            return False
    FleetBatch.objects.filter(pk=batch.pk).update(bootstrap_key_encrypted="", key_erased_at=timezone.now())
    batch.bootstrap_key_encrypted = ""
    logger.info("fleet batch %s: bootstrap key erased%s", batch.pk, f" ({force})" if force else "")
    return True


def fleet_machine_ready(instance: Instance) -> str | None:
    """instances' `machine_ready` hook: a batch's machine becomes its instance's. Its agent (which
    trusts the batch's bootstrap key) is given the instance's own key and identity in one call (the
    agent's POST /agent-key), then the instance's config. A re-run finds the own key in force and
    sends only the config again. Holds no lock over the network."""
    request_id = (instance.provider_data or {}).get("fleet_request")
    if not request_id:
        return None
    item = FleetRequestItem.objects.select_related("request__batch").filter(instance=instance, request__request_id=request_id).first()
    if item is None or item.adopted_at is not None:
        return None
    batch = item.request.batch
    own = crypto.decrypt(instance.agent_key_encrypted)
    client = agent_client_for(instance, timeout=5.0)
    identity = {"instance_id": instance.instance_id, "tenant_id": instance.tenant_id}
    try:
        try:
            client.set_key(own, identity=identity)  # a re-run: the agent took its own key already
        except AgentError as exc:
            if exc.status_code != 401:
                raise
            if not batch.bootstrap_key_encrypted:
                raise ProviderError(
                    ErrorCode.PROVIDER_ERROR,
                    f"the batch's bootstrap key was erased before {instance.instance_id}'s agent took its own key; destroy the instance and request it again",
                ) from None
            client.key = crypto.decrypt(batch.bootstrap_key_encrypted)
            client.set_key(own, identity=identity)
            client.key = own
        client.put_config(instance.config or {})
    except (AgentUnreachable, AgentTimeout, AgentError) as exc:
        if not settings.INSTANCE_READY_CHECK:  # no agent is waited for (moto's machines run none)
            return f"the machine's agent did not answer ({exc}); it keeps the batch's bootstrap key until the batch's key is erased"
        raise ProviderError(ErrorCode.PROVIDER_ERROR, f"the machine's agent did not take {instance.instance_id}'s own key: {exc}", retryable=True) from None
    with transaction.atomic():
        FleetRequestItem.objects.filter(pk=item.pk).update(adopted_at=timezone.now())
        _erase_key_if_done(FleetBatch.objects.select_for_update(of=("self",)).get(pk=batch.pk))
    return f"the machine is {instance.instance_id}'s now: its agent took the instance's own key and config (the batch's bootstrap key no longer opens it)"


def fleet_batch_reconcile(summary: dict) -> None:
    """instances' `reconcile` hook: erase the bootstrap keys of batches that are done, or older
    than FLEET_BOOTSTRAP_KEY_SECONDS whatever they wait for (a key shared by machines lives
    minutes, never longer)."""
    # A launching batch whose job is neither waiting nor running (its worker was killed: RQ still
    # calls it started) is enqueued again, before its creates count as wedged.
    requeued = 0
    grace = timezone.now() - timedelta(seconds=BATCH_LOCK_SECONDS + settings.RECONCILER_QUEUE_GRACE_SECONDS)
    for batch in FleetBatch.objects.filter(status=BatchStatus.LAUNCHING, created_at__lt=grace).select_related("request"):
        if job_is_waiting(batch.rq_job_id) is False and _batch_running(batch) is False:
            requeued += fleet_batch_job(batch=batch, dead=True) != batch.rq_job_id
    if requeued:
        summary["fleet_batches_requeued"] = requeued
    erased = 0
    too_old = timezone.now() - timedelta(seconds=settings.FLEET_BOOTSTRAP_KEY_SECONDS)
    for batch in FleetBatch.objects.exclude(bootstrap_key_encrypted="").select_related("request"):
        with transaction.atomic():
            locked = FleetBatch.objects.select_for_update(of=("self",)).get(pk=batch.pk)
            force = f"older than {settings.FLEET_BOOTSTRAP_KEY_SECONDS}s" if locked.created_at < too_old else ""
            erased += _erase_key_if_done(locked, force=force)
    if erased:
        summary["fleet_bootstrap_keys_erased"] = erased
