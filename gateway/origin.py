"""Which origin a request is for, and what content from an instance may do there.

Tenants are untrusted, and so is everything their instances serve. What decides the harm such
content can do is the origin the browser runs it with, so every host the control plane answers is
one of three kinds:

- the console's host (PUBLIC_URL's, ALLOWED_HOSTS, loopback): console pages, the API, the admin,
  and `/gateway/…` and `/tunnel/…` (kept there so that webhook URLs and API callers configured
  before a gateway host existed keep working: they cannot follow a redirect to another host);
- the gateway host (GATEWAY_HOST, when set): `/gateway/…`, `/tunnel/…` and `/health` only.
  Nothing of the console is served there, so a page on it has nothing to reach same-origin;
- an instance's own host (`<instance_id>.<BASE_DOMAIN>`, or its active custom domain): that
  instance's tunnel, with the path as sent.

The console's host and the gateway host are origins instance content would share with someone
else: the console's logged-in users, or every other tenant's instances. There an answer under the
proxies is sandboxed (`Content-Security-Policy: sandbox` without `allow-same-origin`: the
document gets an opaque origin, runs no script, submits no form), is never sniffed into something
else (`nosniff`), and loses every header that would change what the browser keeps for the origin
(cookies, storage, HSTS, reporting, service-worker scope…); the caller's cookies never go
upstream. An instance's own host is an origin that only that instance uses: its answers pass as
they are and its own cookies go both ways, but the console's cookies never reach it.

This module is the one home of those rules: the middleware routes and sandboxes with it, the
proxy filters headers with it, and the startup checks below hold the settings to it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

from instances import hooks
from instances.hostnames import is_instance_label
from orchestrio.middleware import _host_without_port

PROXY_PREFIXES = ("/gateway/", "/tunnel/")
# What the gateway host answers besides the proxies: the load balancer's health check.
GATEWAY_HOST_EXTRA_PATHS = frozenset({"/health"})

# The response headers with which content would change what the browser keeps per origin, not
# per response. Dropped from an instance's answer wherever its origin is shared.
ORIGIN_STATE_HEADERS = frozenset({
    "set-cookie", "set-cookie2",                        # the session, the CSRF token
    "clear-site-data",                                  # would log the console's user out, wipe storage
    "strict-transport-security",                        # max-age=0 would lift the console's HSTS
    "alt-svc",                                          # where the browser reaches this origin next
    "nel", "report-to", "reporting-endpoints",          # where the browser reports this origin's traffic
    "service-worker-allowed",                           # widens a service worker's scope
    "origin-trial", "accept-ch", "critical-ch",         # features and client hints for the whole origin
    "set-login", "speculation-rules",                   # login status; prefetching other pages
    "content-security-policy", "content-security-policy-report-only", "x-content-type-options",  # ours instead
})  # fmt: skip
# The instance-origin pass cookie of the console's Open button (gateway/grants.py OPEN_COOKIE).
INSTANCE_PASS_COOKIE = "orchestrio_instance_pass"
SANDBOX = (("Content-Security-Policy", "sandbox"), ("X-Content-Type-Options", "nosniff"))


class Site(enum.Enum):
    CONSOLE = "console"
    GATEWAY = "gateway"
    INSTANCE = "instance"


@dataclass(frozen=True, slots=True)
class Origin:
    site: Site
    instance_id: str | None = None  # Site.INSTANCE: the instance, or None for a name no instance has

    @property
    def shared(self) -> bool:
        """True where instance content would share its origin with the console or other tenants."""
        return self.site is not Site.INSTANCE


CONSOLE = Origin(Site.CONSOLE)
GATEWAY = Origin(Site.GATEWAY)
NO_INSTANCE = Origin(Site.INSTANCE)


def gateway_host() -> str:
    return (getattr(settings, "GATEWAY_HOST", "") or "").lower().rstrip(".")


@lru_cache(maxsize=8)
def _console_hosts(public_url: str, allowed: tuple[str, ...]) -> frozenset[str]:
    hosts = {"localhost", "127.0.0.1", "::1", "testserver", (urlsplit(public_url).hostname or "").lower()}
    hosts |= {_host_without_port(h.lower()).strip("[]") for h in allowed if h and not h.startswith(".") and h != "*"}
    return frozenset(hosts)


def classify(host_header: str) -> Origin:
    """The origin a Host header names (port ignored)."""
    host = _host_without_port(host_header).lower().rstrip(".")
    gateway = gateway_host()
    if gateway and host == gateway:
        return GATEWAY
    if not host or host in _console_hosts(settings.PUBLIC_URL, tuple(settings.ALLOWED_HOSTS)):
        return CONSOLE
    base = settings.BASE_DOMAIN.lower().rstrip(".")
    if host == base or host.endswith("." + base):
        # Everything under BASE_DOMAIN belongs to instances, never to the console: a name that is
        # no instance's answers 404 rather than fall through to console pages.
        label = host[: -len(base) - 1] if host != base else ""
        return Origin(Site.INSTANCE, label) if is_instance_label(label) else NO_INSTANCE
    instance_id = hooks.instance_for_host(host)  # a custom domain (the domains app)
    return Origin(Site.INSTANCE, instance_id) if instance_id else CONSOLE


def of(request) -> Origin:
    """The request's origin, worked out once per request."""
    found = getattr(request, "_orchestrio_origin", None)
    if found is None:
        found = request._orchestrio_origin = classify(request.META.get("HTTP_HOST", ""))
    return found


def is_proxy_path(path: str) -> bool:
    return path.startswith(PROXY_PREFIXES)


def gateway_host_serves(path: str) -> bool:
    return is_proxy_path(path) or path in GATEWAY_HOST_EXTRA_PATHS


def sandbox(response):
    """Make an answer on a shared origin inert: an opaque origin, no sniffing, no cookies. Applied
    to every answer under the proxies there (the instance's, and the gateway's own errors, whose
    bodies name things from the URL). Returns the response."""
    for name, value in SANDBOX:
        response[name] = value
    if "Set-Cookie" in response:
        del response["Set-Cookie"]
    response.cookies.clear()
    return response


@lru_cache(maxsize=8)
def _console_cookie_names(session: str, csrf: str, language: str) -> frozenset[str]:
    from django.contrib.messages.storage.cookie import CookieStorage

    return frozenset({session, csrf, language, CookieStorage.cookie_name})


def instance_cookies(header: str) -> str | None:
    """The Cookie header an instance's own host may forward: the caller's cookies but the
    console's (which reach that host when the console's cookie domain covers it)."""
    # Also the pass the console's Open button gave this host (gateway/grants.py): it is ours, not the instance's.
    console = _console_cookie_names(settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, settings.LANGUAGE_COOKIE_NAME) | {INSTANCE_PASS_COOKIE}
    kept = [part.strip() for part in header.split(";") if part.strip() and part.split("=", 1)[0].strip() not in console]
    return "; ".join(kept) or None


# --- startup checks -------------------------------------------------------------------------------


def _covers(pattern: str, host: str) -> bool:
    """Whether a cookie domain or a CSRF_TRUSTED_ORIGINS host (`*.example.com`) covers `host`."""
    pattern = pattern.lower().removeprefix("*").lstrip(".")
    return bool(pattern) and (host == pattern or host.endswith("." + pattern))


@checks.register(checks.Tags.security)
def check_layout(app_configs=None, **kwargs):
    """The settings must keep instance content off the console's origin and out of its trust."""
    messages = []
    console = (urlsplit(settings.PUBLIC_URL).hostname or "").lower()
    gateway = gateway_host()
    if gateway and gateway == console:
        messages.append(checks.Error(
            "GATEWAY_HOST is the console's own host (PUBLIC_URL)",
            hint="Give the gateway a hostname of its own, e.g. gateway.example-instances.net (docs/gateway.md).",
            id="orchestrio.gateway.E001",
        ))  # fmt: skip
    # Hosts whose pages are written by tenants: the gateway host and any instance's hostname.
    foreign = [h for h in (gateway, "instance." + settings.BASE_DOMAIN.lower().rstrip(".")) if h]
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        host = (urlsplit(trusted).hostname or "").lower() if "://" in trusted else trusted.lower()
        if any(_covers(host, h) for h in foreign):
            messages.append(checks.Error(
                f"CSRF_TRUSTED_ORIGINS entry {trusted!r} covers the gateway host or instance hostnames: their pages could post console forms",
                hint="List only the console's own origin (PUBLIC_URL).", id="orchestrio.gateway.E002",
            ))  # fmt: skip
    for name in ("SESSION_COOKIE_DOMAIN", "CSRF_COOKIE_DOMAIN"):
        domain = getattr(settings, name, None)
        if domain and any(_covers(domain, h) for h in foreign):
            messages.append(checks.Warning(
                f"{name}={domain!r} sends the console's cookies to the gateway host or instance hostnames",
                hint="Leave it unset (host-only cookies), or put BASE_DOMAIN and GATEWAY_HOST outside it.",
                id="orchestrio.gateway.W001",
            ))  # fmt: skip
    return messages
