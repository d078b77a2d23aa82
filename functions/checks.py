"""Startup checks for the functions' settings (registered in apps.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks


def _covers(domain: str, host: str) -> bool:
    return bool(domain and host) and (host == domain or host.endswith("." + domain))


@checks.register(checks.Tags.security)
def check_functions_domain(app_configs=None, **kwargs):
    """FUNCTIONS_DOMAIN's hosts are served to functions (tenant code) before anything else: it
    must not cover the console's host, the gateway host or the instances' hostnames."""
    domain = settings.FUNCTIONS_DOMAIN
    if not domain:
        return []
    hosts = {
        "the console's host (PUBLIC_URL)": (urlsplit(settings.PUBLIC_URL).hostname or "").lower(),
        "GATEWAY_HOST": (getattr(settings, "GATEWAY_HOST", "") or "").lower(),
        "BASE_DOMAIN": settings.BASE_DOMAIN.lower().rstrip("."),
    }
    errors = []
    for name, host in hosts.items():
        if _covers(domain, host) or (name == "BASE_DOMAIN" and _covers(host, domain)):
            errors.append(checks.Error(
                f"FUNCTIONS_DOMAIN {domain!r} overlaps {name} ({host}): its names would be served as functions, or the other way round",
                hint="Give functions a domain of their own, e.g. fn.example-functions.net (docs/functions.md).", id="orchestrio.functions.E001",
            ))  # fmt: skip
    return errors
