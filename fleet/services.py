"""Fleet requests: many instances created, or returned (destroyed), in one call.

Each instance goes through the same services as a single one (`instance_create`,
`operation_accept`): its operation, its job, its audit row. A request is all or nothing when it is
made: the plan's room is checked for the whole batch before anything is created (402), and any
refusal (an id taken, an instance busy) rolls the whole request back. After that, each operation
succeeds or fails on its own, which the request's derived status reports."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction

from instances.choices import OperationKind
from instances.hostnames import instance_id_problem
from instances.models import Instance
from instances.selectors import RUNNING_STATES
from instances.services import instance_create, operation_accept
from orchestrio.errors import Forbidden, NotFound, ValidationFailed
from orchestrio.limits import limit_check
from orchestrio.models import Tenant
from orchestrio.services import activity_record
from orchestrio.tenancy import Principal

from .choices import RequestKind
from .models import FleetRequest, FleetRequestItem

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
    live = Instance.objects.filter(tenant=tenant, destroyed_at__isnull=True)
    limit_check(tenant=tenant, limit="instances", used=live.count, needed=count)
    limit_check(tenant=tenant, limit="running_instances", used=live.filter(state__in=RUNNING_STATES).count, needed=count)

    actor = principal.actor
    fleet_request = FleetRequest.objects.create(
        request_id=request_id, tenant=tenant, kind=RequestKind.ACQUIRE, blueprint_name=blueprint_name, plan_id=plan_id,
        region=region or settings.DEFAULT_REGION, instance_id_prefix=prefix, labels=labels, count=count,
        requested_by=actor.label, requested_by_type=actor.type,
    )  # fmt: skip
    items = []
    for position in range(1, count + 1):
        instance = instance_create(
            principal=principal, instance_id=f"{prefix}-{position}", blueprint_name=blueprint_name, plan_id=plan_id,
            region=region, labels=labels, actor=actor,
        )  # fmt: skip
        operation = instance.operations.get(kind=OperationKind.CREATE)
        items.append(FleetRequestItem(request=fleet_request, position=position, instance=instance, operation=operation))
    FleetRequestItem.objects.bulk_create(items)
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
