"""The public URL of a function: `ANY /fn/<slug>[/<path>]` on the console's host or the gateway
host, and `ANY <slug>.<FUNCTIONS_DOMAIN>/<path>` on a host of the function's own.

What a caller sends reaches the handler as data (the request envelope), never as a URL the
control plane follows. What the handler answers is checked (functions/invoke.py) and filtered
here like the gateway's proxied answers (gateway/proxy.py, gateway/origin.py): hop-by-hop
headers dropped; on a shared origin (the console's host, the gateway host) the answer is
sandboxed (`Content-Security-Policy: sandbox`, `nosniff`) and loses every header that would
change what the browser keeps for that origin (Set-Cookie above all); on the function's own host
its cookies pass only host-only (a `Domain` attribute could reach the console's parent domain).
The caller's credentials (Authorization, X-Api-Key, Cookie) never reach the handler.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpResponse

from gateway import origin
from gateway.proxy import DROPPED_REQUEST, DROPPED_RESPONSE, DROPPED_RESPONSE_SHARED
from orchestrio.api.exceptions import domain_error_response
from orchestrio.api.ratelimit import AUTH_FAILURE_DETAIL, Counter, attach, auth_failure, count
from orchestrio.errors import DomainError, NotFound, PayloadTooLarge, TooManyRequests, Unauthorized
from orchestrio.tenancy import client_ip

from . import rules
from .choices import AuthMode
from .invoke import invoke, request_envelope
from .models import Function

logger = logging.getLogger(__name__)

PREFIX = "/fn/"
DROPPED_TO_HANDLER = DROPPED_REQUEST | {"x-api-key"}


def presented_key(request) -> str | None:
    """The API key from `X-Api-Key`, else from `Authorization: Bearer`."""
    key = request.headers.get("X-Api-Key")
    if key:
        return key.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _read_body(request) -> bytes:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = request.META.get("CONTENT_LENGTH")
    try:
        if length and int(length) > limit:
            raise PayloadTooLarge(f"the request body is over {limit} bytes")
    except ValueError as exc:
        raise PayloadTooLarge("the request's Content-Length is not a number") from exc
    stream = request.META["wsgi.input"] if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower() and not length else request
    chunks, size = [], 0
    while True:
        chunk = stream.read(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _headers_for_handler(request) -> dict[str, str]:
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",") if t.strip()}
    headers = {name.lower(): value for name, value in request.headers.items() if name.lower() not in DROPPED_TO_HANDLER and name.lower() not in connection}
    headers["x-forwarded-for"] = client_ip(request) or ""
    headers["x-forwarded-proto"] = "https" if request.is_secure() else "http"
    return headers


def _host_only_cookie(value: str) -> bool:
    return not any(part.strip().lower().startswith("domain") for part in value.split(";")[1:])


def serve(request, slug: str, path: str, *, shared: bool) -> HttpResponse:
    try:
        response = _serve(request, slug, path, shared=shared)
    except DomainError as exc:
        response = domain_error_response(exc)
    if shared:
        origin.sandbox(response)
    return response


def _serve(request, slug: str, path: str, *, shared: bool) -> HttpResponse:
    function = (
        Function.objects.filter(slug=slug).select_related("current_version", "tenant__plan")
        .defer("code", "env_encrypted", "current_version__code", "current_version__env_encrypted").first()
    )  # fmt: skip
    if function is None:
        raise NotFound(f"no function {slug!r}")
    if function.auth_mode == AuthMode.API_KEY:
        presented = presented_key(request)
        if not rules.api_key_matches(function, presented):
            throttled = auth_failure(request) if presented else None
            if throttled is not None:
                raise TooManyRequests(f"{AUTH_FAILURE_DETAIL}; retry after {throttled.reset} seconds", retry_after=throttled.reset)
            raise Unauthorized(
                "this function needs its API key (X-Api-Key: <key>, or Authorization: Bearer <key>)" if not presented else "the API key is not this function's",
                challenge='Bearer realm="function"',
            )  # fmt: skip
    usage = count([Counter(group="functions", key=f"fn:{function.pk}:ip:{client_ip(request) or 'unknown'}", rate=settings.RATE_LIMITS["gateway"])])[0]
    attach(request, usage)
    if usage is not None and usage.limited:
        raise TooManyRequests(f"rate limit exceeded for this caller; retry after {usage.reset} seconds", retry_after=usage.reset)
    body = _read_body(request)
    envelope = request_envelope(
        method=request.method, path=path or "/", query={k: request.GET.get(k) for k in request.GET}, query_string=request.META.get("QUERY_STRING", ""),
        headers=_headers_for_handler(request), body=body,
    )  # fmt: skip
    result = invoke(function, envelope, plan=function.tenant.plan)
    response = HttpResponse(result.body if request.method != "HEAD" else b"", status=result.status)
    dropped = DROPPED_RESPONSE_SHARED if shared else DROPPED_RESPONSE
    for name, value in result.headers:
        lower = name.lower()
        if lower in dropped:
            continue
        if lower == "set-cookie" and (not _host_only_cookie(value) or "Set-Cookie" in response):
            continue
        response[name] = value
    if not any(n.lower() == "content-type" for n, _ in result.headers):
        response["Content-Type"] = "application/octet-stream"
    response["X-Function-Version"] = str(result.version)
    return response


def slug_for_host(host: str) -> str | None:
    """The slug a `<slug>.<FUNCTIONS_DOMAIN>` host names, '' for a name under it that is no slug,
    None for a host outside it."""
    domain = settings.FUNCTIONS_DOMAIN
    if not domain or not host.endswith("." + domain):
        return None
    label = host[: -len(domain) - 1]
    return label if rules.slug_problem(label) is None else ""
