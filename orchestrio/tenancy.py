"""Who is asking, for which tenant, and who to write in the audit log.

`Principal` is the result of authentication: the one tenant a request acts in, the role it acts
with, and the user or token behind it. `Actor` is what services receive (keyword `actor=`) and
what the audit log records; the API, the console, the admin and background jobs all build one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .choices import ActorType

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .models import ApiToken, Tenant


@dataclass(frozen=True)
class Actor:
    type: str
    label: str
    user: AbstractBaseUser | None = None
    token_id: int | None = None
    ip: str | None = None

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(type=ActorType.SYSTEM, label=label)

    @classmethod
    def for_user(cls, user, *, ip: str | None = None) -> Actor:
        return cls(type=ActorType.USER, label=user.get_username(), user=user, ip=ip)

    @classmethod
    def for_staff(cls, user, *, ip: str | None = None) -> Actor:
        return cls(type=ActorType.STAFF, label=user.get_username(), user=user, ip=ip)

    @classmethod
    def for_token(cls, token: ApiToken, *, ip: str | None = None) -> Actor:
        return cls(type=ActorType.TOKEN, label=token.prefix, user=None, token_id=token.pk, ip=ip)

    @property
    def user_id(self) -> Any:
        return self.user.pk if self.user is not None else None


@dataclass(frozen=True)
class Principal:
    tenant: Tenant
    role: str
    user: AbstractBaseUser | None = None
    token: ApiToken | None = None
    ip: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def instance_scope(self) -> str | None:
        """The one instance a scoped token may touch, or None."""
        return self.token.instance_id if self.token is not None else None

    @property
    def key(self) -> str:
        """Who this is, across requests: the API token (`token:<id>`), or the console user
        (`user:<id>`). Idempotency keys, rate-limit counters and long-poll slots are scoped by it."""
        if self.token is not None:
            return f"token:{self.token.pk}"
        return f"user:{self.user.pk}"

    @property
    def actor(self) -> Actor:
        if self.token is not None:
            return Actor.for_token(self.token, ip=self.ip)
        return Actor.for_user(self.user, ip=self.ip)


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address: REMOTE_ADDR, or with `TRUSTED_PROXY_COUNT` proxies in front, the
    address the outermost trusted proxy saw (so a client cannot forge it with X-Forwarded-For)."""
    remote = request.META.get("REMOTE_ADDR") or None
    hops = settings.TRUSTED_PROXY_COUNT
    if hops and request.META.get("HTTP_X_FORWARDED_FOR"):
        chain = [part.strip() for part in request.META["HTTP_X_FORWARDED_FOR"].split(",") if part.strip()]
        if len(chain) >= hops:
            candidate = chain[-hops]
            try:
                ipaddress.ip_address(candidate)
                return candidate
            except ValueError:
                return remote
    return remote
