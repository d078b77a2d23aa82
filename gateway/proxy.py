"""Forwarding a request to an instance, streaming both ways.

The upstream is always the instance's recorded address and agent port: the host never comes from
the request, redirects are not followed, and the request's path is placed in the URL's path
component only (so `..`, `//host` or encoded slashes cannot reach another host or port). Request
bodies are read from the WSGI input in chunks and response bodies passed on in chunks: neither is
held whole in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from functools import lru_cache

import httpx
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse

from orchestrio.crypto import decrypt
from orchestrio.tenancy import client_ip

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
GATEWAY_HEADER = "X-Orchestrio-Gateway-Key"

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def client() -> httpx.Client:
    """One pooled client per process (keep-alive connections to instances)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                timeout=httpx.Timeout(settings.GATEWAY_READ_TIMEOUT_SECONDS, connect=settings.GATEWAY_CONNECT_TIMEOUT_SECONDS, pool=settings.GATEWAY_CONNECT_TIMEOUT_SECONDS),
                limits=httpx.Limits(max_connections=settings.GATEWAY_MAX_CONNECTIONS, max_keepalive_connections=50, keepalive_expiry=30),
                follow_redirects=False,
                trust_env=False,  # never a proxy from the environment
                http2=False,
            )
        return _client


def reset_client() -> None:
    global _client
    with _client_lock:
        if _client is not None:
            _client.close()
        _client = None


def gateway_key(agent_key: str) -> str:
    """The key that opens the agent's traffic routes (not its management routes)."""
    return hmac.new(hashlib.sha256(agent_key.encode()).digest(), b"orchestrio-gateway", hashlib.sha256).hexdigest()


@lru_cache(maxsize=4096)
def _gateway_key_for(agent_key_encrypted: str) -> str:
    """Decrypting costs more than the rest of the header work: remembered per ciphertext (a new
    agent key is a new ciphertext, so rotation needs no invalidation)."""
    return gateway_key(decrypt(agent_key_encrypted))


def _request_headers(request, caller) -> list[tuple[str, str]]:
    connection_tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",") if t.strip()}
    headers = []
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in DROPPED_REQUEST or lower in connection_tokens or lower.startswith("x-gateway-"):
            continue
        headers.append((name, value))
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


def error(status: int, detail: str, **headers) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def forward(request, instance, upstream_path: str, caller, on_response=None):
    """Send the request to the instance and stream its answer back (502/504 on failure)."""
    if not upstream_path.startswith("/"):
        upstream_path = "/" + upstream_path
    host = instance.ip_address or "127.0.0.1"
    port = instance.port or instance.blueprint.agent_port
    path, _, query = upstream_path.partition("?")
    url = httpx.URL(scheme="http", host=host, port=port, raw_path=(path + ("?" + query if query else "")).encode("ascii", "strict"))
    headers = _request_headers(request, caller)
    headers.append((GATEWAY_HEADER, _gateway_key_for(instance.agent_key_encrypted)))
    body, length = _body(request)
    if length is not None:
        headers.append(("Content-Length", str(length)))
    http = client()
    upstream_request = http.build_request(request.method, url, headers=headers, content=body)
    try:
        upstream = http.send(upstream_request, stream=True)
    except httpx.ConnectTimeout:
        return error(504, f"{instance.instance_id} did not accept the connection within {settings.GATEWAY_CONNECT_TIMEOUT_SECONDS:g}s")
    except httpx.TimeoutException:
        return error(504, f"{instance.instance_id} did not answer within {settings.GATEWAY_READ_TIMEOUT_SECONDS:g}s")
    except httpx.ConnectError:
        return error(502, f"{instance.instance_id} refused the connection (is its service listening?)")
    except httpx.HTTPError as exc:
        return error(502, f"{instance.instance_id} answered badly: {type(exc).__name__}")

    def stream():
        try:
            for chunk in upstream.iter_raw(CHUNK):
                yield chunk
        except httpx.HTTPError as exc:
            logger.warning("gateway: %s stream from %s broke: %s", request.method, instance.instance_id, exc)
        finally:
            upstream.close()

    response = StreamingHttpResponse(stream() if request.method != "HEAD" else iter(()), status=upstream.status_code, reason=upstream.reason_phrase or None)
    for name, value in upstream.headers.multi_items():
        lower = name.lower()
        if lower in DROPPED_RESPONSE:
            continue
        if lower == "set-cookie" and "Set-Cookie" in response:
            continue  # Django's responses hold one value per header name: the first cookie is kept
        response[name] = value
    if upstream.headers.get("content-length") and "chunked" not in upstream.headers.get("transfer-encoding", ""):
        response["Content-Length"] = upstream.headers["content-length"]
    if request.method == "HEAD":
        upstream.close()
    if on_response is not None:
        on_response(upstream.status_code)
    return response
