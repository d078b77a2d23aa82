"""Providers behind one interface, chosen by the instance's region (`Region.provider`)."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from django.utils.module_loading import import_string

from .base import BatchLaunch, Machine, MachineSpec, MachineState, Provider, ProviderError, TaskRequest, TaskResult
from orchestrio.crypto import decrypt

__all__ = [
    "BatchLaunch", "Machine", "MachineSpec", "MachineState", "Provider", "ProviderError", "TaskRequest", "TaskResult",
    "batch_spec_for", "get_provider", "spec_for",
]  # fmt: skip

PROVIDER_CLASSES = {
    "local": "instances.providers.local.LocalProvider",
    "aws": "instances.providers.aws.AwsProvider",
}


@lru_cache(maxsize=None)
def _provider(name: str) -> Provider:
    return import_string(PROVIDER_CLASSES[name])()


def get_provider(name: str) -> Provider:
    if name not in PROVIDER_CLASSES:
        raise ProviderError("provider_invalid_request", f"unknown provider {name!r}")
    return _provider(name)


def reset_providers() -> None:
    """Forget provider instances (tests change their settings)."""
    _provider.cache_clear()


def spec_for(instance, *, operation=None, instance_type: str | None = None) -> MachineSpec:
    """The plain-data description of an instance's machine that providers work from."""
    blueprint = instance.blueprint
    return MachineSpec(
        instance_pk=instance.pk,
        instance_id=instance.instance_id,
        tenant_id=instance.tenant_id,
        operation_id=operation.pk if operation is not None else None,
        region=instance.region.provider_region,
        instance_type=instance_type or instance.instance_type,
        agent_key=decrypt(instance.agent_key_encrypted) if instance.agent_key_encrypted else "",
        agent_port=blueprint.agent_port,
        health_path=blueprint.health_path,
        image_id=blueprint.image_id,
        subnet_ids=tuple(blueprint.subnet_ids or ()),
        security_group_ids=tuple(blueprint.security_group_ids or ()),
        key_name=blueprint.key_name,
        iam_instance_profile=blueprint.iam_instance_profile,
        user_data=blueprint.user_data,
        tags=dict(blueprint.tags or {}),
        command=tuple(blueprint.command or ()),
        hibernation=instance.plan.supports_hibernation and instance.tenant.plan.feature_hibernation,
        provider_api=blueprint.provider_api,
        machine_types=tuple(sorted((blueprint.machine_types or {}).items())),
        on_demand_percentage=blueprint.on_demand_percentage,
        allocation_strategy=blueprint.allocation_strategy,
        config=dict(instance.config or {}),
        provider_instance_id=instance.provider_instance_id,
        provider_data=dict(instance.provider_data or {}),
    )


def batch_spec_for(instance, *, fleet_request: str, bootstrap_key: str) -> MachineSpec:
    """The launch settings of a fleet batch's machines, from one of its instances (they share the
    blueprint, plan, region and tenant): no instance's identity, key or config, which each machine
    is given once it is assigned (docs/fleet.md "One fleet call per batch")."""
    return replace(
        spec_for(instance), instance_pk=0, instance_id="", operation_id=None, agent_key=bootstrap_key, config={},
        provider_instance_id="", provider_data={}, fleet_request=fleet_request,
    )  # fmt: skip
