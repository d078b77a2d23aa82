"""Forwarding a request to an instance, streaming both ways.

The upstream is always the instance's recorded address and agent port: the host never comes from
the request, redirects are not followed, and the request's path is placed in the URL's path
component only (so `..`, `//host` or encoded slashes cannot reach another host or port). Request
bodies are read from the WSGI input in chunks and response bodies passed on in chunks: neither is
held whole in memory.

The connection pool is httpcore's (httpx's transport), not an httpx Client: a Client keeps a
cookie jar, so an instance's Set-Cookie for one caller would be sent on the next caller's
requests, and adds headers of its own (User-Agent, Accept-Encoding: gzip); it also costs about
0.2 ms a request for request and response models a proxy does not use.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import httpcore
from django.conf import settings
from django.http import StreamingHttpResponse

from instances.agent_client import GATEWAY_HEADER, Endpoint, gateway_key_for
from orchestrio.errors import UpstreamError, UpstreamTimeout
from orchestrio.tenancy import client_ip

from . import origin, traffic

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
)
# Never forwarded from the caller: credentials, hop-by-hop headers, and anything the gateway sets.
DROPPED_REQUEST = HOP_BY_HOP | {
    "host", "authorization", "cookie", "content-length", "forwarded", "x-forwarded-for", "x-forwarded-proto",
    "x-forwarded-host", "x-real-ip", "x-gateway-provider", "x-gateway-subject", "x-orchestrio-agent-key",
    "x-orchestrio-gateway-key",
}  # fmt: skip
DROPPED_RESPONSE = HOP_BY_HOP | {"content-length", "server", "date"}
# Where the origin is shared (the console's host, the gateway host), nothing an instance answers
# may change what the browser keeps for that origin (gateway/origin.py).
DROPPED_RESPONSE_SHARED = DROPPED_RESPONSE | origin.ORIGIN_STATE_HEADERS
# What can go wrong talking to an instance (httpcore's exceptions share no base class).
UPSTREAM_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)

_pool: httpcore.ConnectionPool | None = None
_socket_pools: OrderedDict[str, httpcore.ConnectionPool] = OrderedDict()
_pool_lock = threading.Lock()
SOCKET_POOLS = 256  # local instances kept connected at once; the least recently used is closed


def pool(socket_path: str | None = None) -> httpcore.ConnectionPool:
    """Connection pools per process (keep-alive connections to instances): one for TCP
    addresses, one per local instance's unix socket. They never read proxies from the
    environment and never follow redirects."""
    global _pool
    with _pool_lock:
        if socket_path is None:
            if _pool is None:
                _pool = httpcore.ConnectionPool(max_connections=settings.GATEWAY_MAX_CONNECTIONS, max_keepalive_connections=50, keepalive_expiry=30)
            return _pool
        found = _socket_pools.get(socket_path)
        if found is not None:
            _socket_pools.move_to_end(socket_path)
            return found
        found = _socket_pools[socket_path] = httpcore.ConnectionPool(
            uds=socket_path, max_connections=settings.GATEWAY_MAX_CONNECTIONS, max_keepalive_connections=8, keepalive_expiry=30
        )
        evicted = _socket_pools.popitem(last=False)[1] if len(_socket_pools) > SOCKET_POOLS else None
    if evicted is not None:
        evicted.close()
    return found


def _request_headers(request, caller, where: origin.Origin) -> list[tuple[str, str]]:
    """The caller's headers but its credentials (its cookies reach only an instance's own host,
    without the console's), plus the gateway's."""
    connection_tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",") if t.strip()}
    headers = []
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in DROPPED_REQUEST or lower in connection_tokens or lower.startswith("x-gateway-"):
            continue
        headers.append((name, value))
    if not where.shared and "HTTP_COOKIE" in request.META:
        cookies = origin.instance_cookies(request.META["HTTP_COOKIE"])
        if cookies:
            headers.append(("Cookie", cookies))
    headers += [
        ("x-gateway-provider", caller.provider),
        ("x-gateway-subject", caller.subject),
        ("X-Forwarded-For", client_ip(request) or ""),
        ("X-Forwarded-Proto", "https" if request.is_secure() else "http"),
        ("X-Forwarded-Host", request.META.get("HTTP_HOST", "")),
    ]
    return headers


def _body(request):
    """The request body as chunks, or None. Chunked uploads are read from the WSGI input."""
    length = request.META.get("CONTENT_LENGTH")
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked and not length:
        stream = request.META["wsgi.input"]
    elif length and int(length) > 0:
        stream = request
    else:
        return None, None

    def chunks():
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                return
            yield chunk

    return chunks(), (int(length) if length and not chunked else None)


def forward(request, instance, upstream_path: str, caller, on_close=None):
    """Send the request to the instance and stream its answer back (UpstreamError/UpstreamTimeout:
502/504, when it does not answer).
    `on_close` runs once the answer has been sent (or could not be): when the response's stream
    ends or is closed, or at once when there is nothing to stream. The request's metrics
    (gateway/traffic.py) are recorded then too."""
    meter = traffic.Meter(instance.pk)
    traffic.note_start(instance.pk)

    def close():
        meter.finish()
        if on_close is not None:
            on_close()

    try:
        response = _forward(request, instance, upstream_path, caller, close, meter)
    except BaseException:
        meter.fail()
        close()
        raise
    if not response.streaming:
        close()  # nothing left to send
    return response


def _forward(request, instance, upstream_path: str, caller, on_close, meter):
    if not upstream_path.startswith("/"):
        upstream_path = "/" + upstream_path
    endpoint = Endpoint.of(ip_address=instance.ip_address, port=instance.port, socket_path=instance.socket_path) or Endpoint(
        host=instance.ip_address or "127.0.0.1", port=instance.port or instance.agent_port
    )
    host, port = (endpoint.host, endpoint.port) if endpoint.socket_path is None else ("instance", 80)
    path, _, query = upstream_path.partition("?")
    target = (path + ("?" + query if query else "")).encode("ascii", "strict")
    where = origin.of(request)
    headers = _request_headers(request, caller, where)
    headers += [("Host", (f"[{host}]" if ":" in host else host) + ("" if port == 80 else f":{port}")), (GATEWAY_HEADER, gateway_key_for(instance.agent_key_encrypted))]
    body, length = _body(request)
    if length is not None:
        headers.append(("Content-Length", str(length)))
    elif body is not None:
        headers.append(("Transfer-Encoding", "chunked"))
    # Header values travel as the bytes the caller sent (WSGI hands them over as latin-1).
    upstream_request = httpcore.Request(
        request.method, httpcore.URL(scheme=b"http", host=host.encode("ascii"), port=port, target=target),
        headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers], content=body,
        extensions={"timeout": {
            "connect": settings.GATEWAY_CONNECT_TIMEOUT_SECONDS, "pool": settings.GATEWAY_CONNECT_TIMEOUT_SECONDS,
            "read": settings.GATEWAY_READ_TIMEOUT_SECONDS, "write": settings.GATEWAY_READ_TIMEOUT_SECONDS,
        }},
    )  # fmt: skip
    try:
        upstream = pool(endpoint.socket_path).handle_request(upstream_request)
    except httpcore.ConnectTimeout as exc:
        raise UpstreamTimeout(f"{instance.instance_id} did not accept the connection within {settings.GATEWAY_CONNECT_TIMEOUT_SECONDS:g}s") from exc
    except httpcore.TimeoutException as exc:
        raise UpstreamTimeout(f"{instance.instance_id} did not answer within {settings.GATEWAY_READ_TIMEOUT_SECONDS:g}s") from exc
    except httpcore.ConnectError as exc:
        raise UpstreamError(f"{instance.instance_id} refused the connection (is its service listening?)") from exc
    except UPSTREAM_ERRORS as exc:
        raise UpstreamError(f"{instance.instance_id} answered badly: {type(exc).__name__}") from exc

    def stream():
        try:
            yield from upstream.iter_stream()  # the chunks as read from the socket (at most 64 KiB)
        except UPSTREAM_ERRORS as exc:
            meter.fail()
            logger.warning("gateway: %s stream from %s broke: %s", request.method, instance.instance_id, exc)
        finally:
            upstream.close()
            on_close()

    meter.headers(upstream.status)
    reason = upstream.extensions.get("reason_phrase", b"").decode("ascii", "replace")
    response = StreamingHttpResponse(stream() if request.method != "HEAD" else iter(()), status=upstream.status, reason=reason or None)
    content_length, chunked = None, False
    dropped = DROPPED_RESPONSE_SHARED if where.shared else DROPPED_RESPONSE
    for raw_name, raw_value in upstream.headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        lower = name.lower()
        if lower == "content-length":
            content_length = value
        elif lower == "transfer-encoding":
            chunked = chunked or "chunked" in value.lower()
        if lower in dropped:
            continue
        if lower == "set-cookie" and "Set-Cookie" in response:
            continue  # Django's responses hold one value per header name: the first cookie is kept
        response[name] = value
    if content_length and not chunked:
        response["Content-Length"] = content_length
    if where.shared:
        origin.sandbox(response)
    if request.method == "HEAD":
        upstream.close()
        on_close()
    return response
