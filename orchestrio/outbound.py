"""Outbound HTTP to URLs a tenant controls: the one guard against server-side request forgery.

Alert webhooks, OIDC issuers and the key sets their discovery documents name are URLs a tenant
chooses; the control plane fetches them from inside the operator's network. Without a guard a
tenant points one at the cloud's metadata service, the database, an instance agent or the admin
on loopback, and reads what comes back. So:

- `validate_outbound_url(url)` when the URL is set: https only (plain http only to loopback, and
  only with OUTBOUND_ALLOW_LOOPBACK, which is for development); no user name or password; the host
  is resolved and every address it has must be public (`address_allowed`). A name that does not
  resolve yet is accepted: the connection checks it again anyway.
- `outbound_client()` for every request to such a URL: an httpx client whose network backend
  resolves the name itself, checks every address, and connects to the checked address (never by
  name again, so a DNS answer that changes between the check and the connection — DNS rebinding —
  cannot slip through); TLS still verifies the certificate against the URL's hostname. It follows
  no redirects and ignores proxy environment variables.
- `failure_reason(exc)` turns a failed request into a fixed phrase ("timed out", "connection
  refused", "address not allowed"…) for logs a tenant reads: never the far end's words.

Connections the control plane makes to the tenant's own instances (the gateway, health checks,
the agent) are another matter and do not come here.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl

import httpcore
import httpx
from django.conf import settings
from django.core import checks

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 (RFC 6052): the well-known prefix embeds an IPv4 address in its last 32 bits; the
# local-use prefix (RFC 8215) may translate to anything, private networks included.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")
# A name with many addresses is tried on at most this many (each with the full connect timeout).
_MAX_ADDRESSES_TRIED = 3

REFUSED_ADDRESS = "address not allowed"
REFUSED_URL = "URL not allowed"
HOST_NOT_FOUND = "host not found"


class OutboundRefused(httpx.ConnectError):
    """The URL or the address it resolves to may not be fetched. `reason` is a fixed phrase; the
    message says why in words a tenant may read (never the address a name resolved to: that would
    tell a tenant about the operator's internal DNS)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where packets to it reach that IPv4 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


@functools.cache
def _allowed_networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def address_allowed(address: IPAddress, *, loopback_only: bool = False) -> bool:
    """May the control plane connect to `address` for a tenant? Public unicast addresses only;
    loopback with OUTBOUND_ALLOW_LOOPBACK; networks the operator lists in OUTBOUND_ALLOWED_NETWORKS.
    `loopback_only` (plain http): nothing but loopback."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        if address in _NAT64_LOCAL_USE:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_allowed(embedded, loopback_only=loopback_only)
    if address.is_loopback:
        return bool(settings.OUTBOUND_ALLOW_LOOPBACK)
    if loopback_only:
        return False
    if any(address in network for network in _allowed_networks(tuple(settings.OUTBOUND_ALLOWED_NETWORKS))):
        return True
    # `is_global` alone is not enough: Python counts multicast (224/4, ff00::/8) as global, and
    # leaves out neither IPv4-compatible nor translated forms (handled above).
    return address.is_global and not (
        address.is_multicast or address.is_unspecified or address.is_reserved or address.is_link_local or address.is_private
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` has (an IP literal in any spelling the C library accepts — 2130706433,
    0x7f.1, 0177.0.0.1 — is itself). Raises OutboundRefused(HOST_NOT_FOUND) when there is none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise OutboundRefused(f"cannot resolve {host!r}", reason=HOST_NOT_FOUND) from exc
    addresses: list[IPAddress] = []
    for info in infos:
        try:
            address = ipaddress.ip_address(info[4][0])
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OutboundRefused(f"cannot resolve {host!r}", reason=HOST_NOT_FOUND)
    return addresses


def checked_addresses(host: str, port: int, *, loopback_only: bool = False) -> list[IPAddress]:
    """`host`'s addresses, when every one of them is allowed (a name with one public and one private
    address is refused: the caller could not choose which one it gets)."""
    name = host.rstrip(".").lower()
    if (name == "localhost" or name.endswith(".localhost")) and not settings.OUTBOUND_ALLOW_LOOPBACK:
        # RFC 6761: these names are loopback whatever this host's resolver says about them.
        raise OutboundRefused(f"{host!r} is a loopback name", reason=REFUSED_ADDRESS)
    addresses = resolve(host, port)
    if not all(address_allowed(address, loopback_only=loopback_only) for address in addresses):
        raise OutboundRefused(f"{host!r} is, or resolves to, an address that is not allowed", reason=REFUSED_ADDRESS)
    return addresses


def _refuse(what: str, problem: str) -> OutboundRefused:
    return OutboundRefused(f"{what} {problem}", reason=REFUSED_URL)


def validate_outbound_url(url: str, *, what: str = "the URL", resolve_host: bool = True) -> str:
    """Check a tenant's outbound URL; returns it unchanged, or raises OutboundRefused whose message
    starts with `what`. `resolve_host=False` checks only the URL's form (the connection resolves
    and checks the addresses itself)."""
    loopback = bool(settings.OUTBOUND_ALLOW_LOOPBACK)
    allowed = "https://" + (" (or http:// to a loopback address, allowed on this development server)" if loopback else "")
    if not isinstance(url, str) or not url:
        raise _refuse(what, f"must be {allowed}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _refuse(what, "is not a valid URL") from None
    if parsed.scheme not in ("https", "http") or (parsed.scheme == "http" and not loopback):
        raise _refuse(what, f"must be {allowed}")
    if parsed.userinfo:
        raise _refuse(what, "must not carry a user name or password")
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        raise _refuse(what, "must name a host")
    if ":" not in host and not _HOSTNAME_RE.match(host):
        raise _refuse(what, "must name a valid host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)  # a zone (fe80::1%eth0) or anything stranger is refused
        except ValueError:
            raise _refuse(what, "must name a valid host") from None
    if resolve_host:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            checked_addresses(host, port, loopback_only=parsed.scheme == "http")
        except OutboundRefused as exc:
            if exc.reason != HOST_NOT_FOUND:
                raise OutboundRefused(
                    f"{what} must point at a public address: its host is, or resolves to, a private, loopback, "
                    "link-local, multicast or reserved one",
                    reason=REFUSED_ADDRESS,
                ) from None
            # Not resolvable now: nothing to check yet. Every connection resolves and checks again.
    return url


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the name, checks every address, and connects to a checked address. httpcore then
    starts TLS on that connection with the URL's hostname (SNI and certificate verification)."""

    def __init__(self, *, loopback_only: bool) -> None:
        self.loopback_only = loopback_only

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = checked_addresses(host, port, loopback_only=self.loopback_only)
        error: Exception | None = None
        for address in addresses[:_MAX_ADDRESSES_TRIED]:
            try:
                return super().connect_tcp(str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=False)


def _transport(*, loopback_only: bool) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx offers no way to pass a network backend; its pool with ours in place of the default
    # one (which resolves names itself when it connects).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=_ssl_context(), max_connections=10, network_backend=_GuardedBackend(loopback_only=loopback_only)
    )
    return transport


def outbound_client(*, timeout: float) -> httpx.Client:
    """An httpx client for tenant-controlled URLs (use it as a context manager). https goes to
    public addresses; plain http only to loopback, when OUTBOUND_ALLOW_LOOPBACK is on."""
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        transport=_transport(loopback_only=False),
        mounts={"http://": _transport(loopback_only=True)},
    )


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def failure_reason(exc: BaseException) -> str:
    """A fixed phrase for a failed outbound request, safe to show the tenant."""
    for cause in _causes(exc):
        if isinstance(cause, OutboundRefused):
            return cause.reason
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(cause, socket.timeout):
            return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return "invalid response"
    if isinstance(exc, httpx.TransportError):
        return "connection lost"
    return "request failed"


@checks.register(checks.Tags.security, deploy=True)
def check_outbound(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if settings.OUTBOUND_ALLOW_LOOPBACK and not settings.DEBUG:
        return [
            checks.Warning(
                "OUTBOUND_ALLOW_LOOPBACK is on: tenants' alert webhooks and OIDC issuers may reach this host's loopback services",
                hint="it is for development; unset it in production.",
                id="orchestrio.W020",
            )
        ]
    return []
