"""Background jobs of the fleet app: the one fleet call of a batch (docs/fleet.md "One fleet call
per batch").

`launch_batch` launches the machines of an acquire request from an EC2Fleet/SpotFleet blueprint
with one CreateFleet (type instant) or RequestSpotFleet call, assigns them to the request's
instances in one transaction, releases each instance's create to finish on its own, and
terminates what AWS launched beyond the count. It is safe to run again from any point: the fleet
call carries the request's ClientToken and the provider first looks for machines tagged with the
request, the assignment happens once (under the batch's row lock), and a create that finds its
batch still launching waits for this job (instances' `create_held_by` hook) instead of launching
a machine of its own. One job runs a batch at a time (`services.fleet_batch_held`: a Redis lock kept
alive while it runs); a killed worker's hold lapses within seconds, and the reconciler's pass
enqueues the job again (`services.fleet_batch_reconcile`).
"""

from __future__ import annotations

import logging

from django.conf import settings

from instances.choices import ErrorCode
from instances.providers import BatchLaunch, Machine, MachineState, ProviderError, batch_spec_for, get_provider
from orchestrio import crypto

from . import services
from .models import FleetBatch

logger = logging.getLogger(__name__)


def launch_batch(batch_pk: int) -> str:
    batch = FleetBatch.objects.select_related("request").filter(pk=batch_pk).first()
    if batch is None:
        return "nothing to do"
    with services.fleet_batch_held(batch=batch) as mine:
        if not mine:
            return "another attempt is launching this batch"
        batch = services.fleet_batch_begin(batch=batch)
        if batch is None:
            return "nothing to do: assigned already"
        request_id = batch.request.request_id
        waiting = services.fleet_batch_waiting(batch=batch)
        if not waiting:  # every create finished meanwhile (wedged, superseded): what was launched goes
            return _close_unclaimed(batch)
        if not batch.bootstrap_key_encrypted:
            services.fleet_batch_fail(batch=batch, error=ProviderError(ErrorCode.TIMEOUT, f"the batch did not launch within {settings.FLEET_BOOTSTRAP_KEY_SECONDS}s (its bootstrap key was erased); retry the instances with POST /instances/{{id}}/start"))
            return "failed: too late"
        instance = waiting[0].instance
        provider = get_provider(instance.provider)
        spec = batch_spec_for(instance, fleet_request=request_id, bootstrap_key=crypto.decrypt(batch.bootstrap_key_encrypted))
        try:
            launch = provider.launch_batch(spec, count=batch.request.count)
        except ProviderError as exc:
            logger.info("fleet batch %s failed: %s: %s", request_id, exc.code, exc.message)
            services.fleet_batch_fail(batch=batch, error=exc)
            return f"failed: {exc.code}"
        # Machines beyond the waiting instances go before the assignment is recorded: a job that
        # dies after the assignment is not run again, and a re-run before it finds them gone.
        surplus = [m.provider_instance_id for m in sorted(launch.machines, key=lambda m: m.provider_instance_id)[len(waiting) :]]
        _terminate(provider, spec.region, request_id, surplus)
        extras = services.fleet_batch_assign(batch=batch, launch=launch)
        _terminate(provider, spec.region, request_id, [m for m in extras if m not in surplus])  # an instance stopped waiting meanwhile
        return f"launched {len(launch.machines)} of {batch.request.count}"


def _terminate(provider, region: str, request_id: str, machine_ids: list[str]) -> None:
    if not machine_ids:
        return
    try:
        provider.terminate_machines(region, machine_ids)
    except ProviderError as exc:  # they carry the request's tag; the admin's batch lists them
        logger.warning("fleet batch %s: could not terminate its extra machines %s: %s", request_id, machine_ids, exc.message)



def _close_unclaimed(batch: FleetBatch) -> str:
    item = batch.request.items.select_related("instance__region").first()
    leftovers: list[str] = []
    if item is not None:
        provider, region = get_provider(item.instance.provider), item.instance.region.provider_region
        try:
            leftovers = provider.unclaimed_batch_machines(region, batch.request.request_id)
        except (ProviderError, NotImplementedError) as exc:
            logger.warning("fleet batch %s: could not look for its machines: %s", batch.request.request_id, exc)
        _terminate(provider, region, batch.request.request_id, leftovers)
    services.fleet_batch_assign(batch=batch, launch=BatchLaunch(machines=[Machine(provider_instance_id=m, state=MachineState.PENDING) for m in leftovers]))
    return f"no instance waits: {len(leftovers)} machines terminated"
