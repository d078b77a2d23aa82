"""Hooks the gateway app offers the apps built on it (registered in their `AppConfig.ready`).

- `request_proxied(tenant_id, instance_pk)`: the gateway has accepted a request for an
  instance and forwards it (one execution of the plan's quota: billing meters it). Called on the
  request's path, so a listener must be cheap and must not raise for an outage of its own store
  (billing's counter logs and drops the count when Redis is down).
"""

from __future__ import annotations

from collections.abc import Callable

_request_proxied: list[Callable] = []


def on_request_proxied(func: Callable) -> Callable:
    if func not in _request_proxied:
        _request_proxied.append(func)
    return func


def request_proxied(tenant_id: str, instance_pk: int) -> None:
    for func in _request_proxied:
        func(tenant_id, instance_pk)
