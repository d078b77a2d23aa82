"""Requests for an instance's own hostname (`<instance_id>.<BASE_DOMAIN>`) or its active custom
domain go straight to that instance's tunnel: the edge proxy (Caddy, with on-demand TLS) sends
every such name to the control plane, which routes by Host. Requests for the control plane's own
names pass through untouched."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from orchestrio.middleware import _host_without_port
from orchestrio.models import SLUG_PATTERN

import re

_LABEL = re.compile(SLUG_PATTERN)


def _own_hosts() -> set[str]:
    hosts = {"localhost", "127.0.0.1", "::1", "testserver", (urlsplit(settings.PUBLIC_URL).hostname or "").lower()}
    hosts |= {h.lower() for h in settings.ALLOWED_HOSTS if h and not h.startswith(".") and h != "*"}
    return hosts


def instance_for_host(host: str) -> str | None:
    """The instance_id a Host header names, or None when it is the control plane's own."""
    host = host.lower().rstrip(".")
    if not host or host in _own_hosts():
        return None
    base = "." + settings.BASE_DOMAIN.lower().rstrip(".")
    if host.endswith(base):
        label = host[: -len(base)]
        return label if _LABEL.match(label) and 3 <= len(label) <= 63 else None
    from instances.choices import DomainStatus
    from instances.models import CustomDomain

    return (
        CustomDomain.objects.filter(domain=host, status=DomainStatus.ACTIVE, removed_at__isnull=True)
        .values_list("instance__instance_id", flat=True)
        .first()
    )


class InstanceHostMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        instance_id = instance_for_host(_host_without_port(request.META.get("HTTP_HOST", "")))
        if instance_id is None:
            return self.get_response(request)
        from .views import serve_host

        return serve_host(request, instance_id)
