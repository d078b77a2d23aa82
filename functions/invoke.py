"""Invoking a function: the one path both the public URL and the API's `…/invoke` take.

It finds the current version, holds the invocation in flight (so the idle sweep does not stop the
runtime under it), starts the runtime when the function is at zero (bounded by
FUNCTIONS_WAKE_TIMEOUT_SECONDS, concurrent callers sharing one start), sends the request envelope
and checks the response envelope before anything of it reaches a caller. Each invocation is one
execution of the plan's quota (gateway's `request_proxied` hook: billing meters it in Redis,
batched) and a point of the function's metrics (functions/metrics.py, batched too): no database
write per invocation.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass

from django.conf import settings

from gateway import hooks as gateway_hooks
from orchestrio.errors import Conflict, UpstreamError
from orchestrio.longpoll import proxy_slot
from orchestrio.quotas import execution_quota_check

from . import backends, metrics, runtime
from .models import Function, FunctionVersion
from .rules import decrypt_env

HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
MAX_HEADERS = 100


@dataclass
class Result:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    duration_ms: int
    cold_start: bool
    version: int


def _version_target(function: Function) -> runtime.Target:
    version = function.current_version
    if version is None:
        raise Conflict(f"function {function.slug} has no deployed version yet: deploy it first")

    def load() -> tuple[str, dict]:
        # Only for a start (a cold invocation, a new host): the code and env from the database.
        full = FunctionVersion.objects.only("code", "env_encrypted").get(pk=version.pk)
        return full.code, decrypt_env(full.env_encrypted)

    return runtime.Target(function_pk=function.pk, slug=function.slug, number=version.number, runtime=version.runtime, loader=load)


def _response(payload: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    """The runtime's response envelope, checked: anything malformed is the function's error (502),
    never the control plane's (a header with a line break would otherwise be a 500)."""
    status = payload.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise UpstreamError(f"the function answered an invalid status {str(status)[:20]!r}")
    raw_headers = payload.get("headers") or {}
    if not isinstance(raw_headers, dict) or len(raw_headers) > MAX_HEADERS:
        raise UpstreamError("the function's response headers must be an object of at most 100 names")
    headers = []
    for name, value in raw_headers.items():
        if not isinstance(value, str) or not HEADER_NAME.match(str(name)) or any(c in value for c in "\r\n\x00"):
            raise UpstreamError(f"the function answered an invalid header {str(name)[:40]!r}")
        headers.append((str(name), value))
    body = payload.get("body", "")
    encoding = payload.get("body_encoding", "text")
    if not isinstance(body, str):
        raise UpstreamError("the function's response body must be a string")
    try:
        data = base64.b64decode(body, validate=True) if encoding == "base64" else body.encode("utf-8")
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise UpstreamError("the function's response body is not valid base64 / UTF-8") from exc
    if len(data) > settings.FUNCTIONS_MAX_RESPONSE_BYTES:
        raise UpstreamError(f"the function's response is over {settings.FUNCTIONS_MAX_RESPONSE_BYTES} bytes")
    return status, headers, data


def request_envelope(*, method: str, path: str, query: dict, query_string: str, headers: dict, body: bytes) -> dict:
    """The request as the handler sees it (docs/functions.md)."""
    try:
        text, encoding = body.decode("utf-8"), "text"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return {"method": method, "path": path or "/", "query": query, "query_string": query_string, "headers": headers, "body": text, "body_encoding": encoding}


def invoke(function: Function, envelope: dict, *, plan) -> Result:
    """Invoke the function's current version with `envelope`. Raises the domain errors the
    callers map to HTTP: 402 (executions quota), 409 (not deployed), 502 (the function failed or
    answered badly), 504 (no start or answer in time)."""
    execution_quota_check(tenant_id=function.tenant_id, plan=plan, cached=True)
    target = _version_target(function)
    # It holds this thread until the function answers (a cold start included): counted as the
    # gateway's proxied requests are, so one tenant's slow functions cannot take every thread.
    release = proxy_slot(tenant_id=function.tenant_id)
    try:
        return _invoke(function, target, envelope)
    finally:
        release()


def _invoke(function: Function, target: runtime.Target, envelope: dict) -> Result:
    began = time.monotonic()
    deadline = began + settings.FUNCTIONS_WAKE_TIMEOUT_SECONDS
    gateway_hooks.request_proxied(function.tenant_id, None)  # one execution
    error, cold = True, False
    on = backends.get()
    try:
        payload, cold = on.invoke(function, target, envelope, deadline=deadline)
        status, headers, body = _response(payload)
        error = status >= 500
        return Result(status=status, headers=headers, body=body, duration_ms=int((time.monotonic() - began) * 1000), cold_start=cold, version=target.number)
    finally:
        metrics.record(function.pk, duration_ms=int((time.monotonic() - began) * 1000), error=error, cold=cold)
        on.after_invoke(function.pk)
