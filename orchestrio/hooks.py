"""Hooks the core offers the apps built on it. The core (this package) imports no app: an app
that contributes to something the core shows or checks registers a function here in its
`AppConfig.ready`, and the core calls whatever is registered (docs/architecture.md).

- `tenant_usage(tenant)`: each registered function returns counts of what the tenant has
  (`{"instances": 3, "running_instances": 1}`: the instances app); the core adds its own
  (`tokens`) and compares them with the plan's limits.
- `instance_exists(tenant, instance_id)`: whether the tenant has this live instance (an API
  token may be confined to one). One provider, the instances app; none registered: no instance.
- `subscription_status(tenant)`: the tenant's subscription status as the API shows it. One
  provider, the billing app; none registered: "none".
- `tenant_events(events)`: something a tenant may want to hear about happened, as
  `(tenant_id, event, data)` (`instance.error`, `instance.health_down`, `task.failed`,
  `quota.80`, `billing.payment_failed`, `invitation.accepted`…): the one event source of the
  alert webhooks (billing) and of each member's notifications (the core's
  orchestrio/notifications.py). Called inside the transaction that made the change; listeners
  write their rows in it (the webhooks queue what they send after it commits), and a failure rolls
  the change back, as any write in it would.
- `object_links(principal, refs)`: the console pages of objects the audit log names (an activity
  entry's `object_type` and `object_id`). The app that owns an object type registers one
  resolver for it (`on_object_links("instance", func)`); `func(principal=, ids=)` answers
  `{object_id: url}` for those of `ids` that still exist in the principal's tenant and whose page
  the principal's role may open, in one query for all of them (or none), so that a page of the
  log costs the same queries whatever it holds. What is not answered stays plain text.
"""

from __future__ import annotations

from collections.abc import Callable

_tenant_usage: list[Callable] = []
_tenant_events: list[Callable] = []
_providers: dict[str, Callable] = {}
_object_links: dict[str, Callable] = {}


def on_tenant_usage(func: Callable) -> Callable:
    if func not in _tenant_usage:
        _tenant_usage.append(func)
    return func


def tenant_usage(tenant) -> dict[str, int]:
    usage: dict[str, int] = {}
    for func in _tenant_usage:
        usage.update(func(tenant=tenant))
    return usage


def provide(name: str, func: Callable) -> Callable:
    """Register the one provider of `name` (`instance_exists`, `subscription_status`)."""
    if name not in ("instance_exists", "subscription_status"):
        raise ValueError(f"the core has no hook {name!r}")
    _providers[name] = func
    return func


def instance_exists(*, tenant, instance_id: str) -> bool:
    provider = _providers.get("instance_exists")
    return bool(provider and provider(tenant=tenant, instance_id=instance_id))


def subscription_status(tenant) -> str:
    provider = _providers.get("subscription_status")
    return provider(tenant) if provider else "none"


def on_tenant_events(func: Callable) -> Callable:
    if func not in _tenant_events:
        _tenant_events.append(func)
    return func


def tenant_events(events: list[tuple[str, str, dict]]) -> None:
    if not events:
        return
    for func in _tenant_events:
        func(events)


def tenant_event(tenant_id: str, event: str, data: dict) -> None:
    tenant_events([(tenant_id, event, data)])


def on_object_links(object_type: str, func: Callable) -> Callable:
    """Register the one resolver of `object_type`'s console pages (see the module's docstring)."""
    _object_links[object_type] = func
    return func


def object_links(*, principal, refs) -> dict[tuple[str, str], str]:
    """`{(object_type, object_id): url}` for the `(object_type, object_id)` pairs in `refs` that a
    registered resolver knows: one call (one query at most) per object type, whatever the count."""
    wanted: dict[str, set[str]] = {}
    for object_type, object_id in refs:
        if object_id and object_type in _object_links:
            wanted.setdefault(object_type, set()).add(str(object_id))
    links: dict[tuple[str, str], str] = {}
    for object_type, ids in wanted.items():
        for object_id, url in _object_links[object_type](principal=principal, ids=ids).items():
            if object_id in ids:  # a resolver answers only for what it was asked
                links[(object_type, object_id)] = url
    return links
