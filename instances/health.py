"""The one health probe: what "healthy" means (the blueprint's health path answers 2xx), where it
is asked (the instance's recorded endpoint; none recorded is unhealthy, never a guess), and how
a failure is worded. Three ways of asking, one rule:

- `probe_many`: the health and readiness sweeps — thousands at once on plain asyncio connections,
  bounded concurrency, short timeouts;
- `probe`: one now (`GET /instances/{id}/health`, the admin's "run a health check");
- `probe_until`: wait for it (an operation's readiness, a deployment's health-check step).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
from django.conf import settings

from .agent_client import Endpoint, endpoint_for

MAX_BODY = 4096
NO_ADDRESS = "no address recorded"


def _verdict(status_code: int | None, error: str | None) -> tuple[bool, str]:
    if error:
        return False, error
    if 200 <= status_code < 300:
        return True, ""
    return False, f"HTTP {status_code}"


def _target(path: str) -> str:
    return quote(path if path.startswith("/") else "/" + path, safe="/:@!$&'()*+,;=-._~?%")


async def _status(endpoint: Endpoint, path: str) -> int:
    """The status code of `GET path` at the endpoint: one request on a fresh connection, read up
    to the status line. A plain asyncio exchange costs a fraction of an HTTP client's per-request
    work, which is what bounds a sweep over thousands of instances. Probes carry no credentials:
    the health path is open (the agent passes it to the instance's program in app mode)."""
    if endpoint.socket_path:
        reader, writer = await asyncio.open_unix_connection(endpoint.socket_path)
    else:
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        writer.write(
            f"GET {_target(path)} HTTP/1.1\r\nHost: {endpoint.host_header}\r\nUser-Agent: orchestrio-health\r\n"
            "Connection: close\r\n\r\n".encode("ascii")
        )
        line = await reader.readline()
    finally:
        writer.close()
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise ConnectionError(f"not an HTTP response: {line[:40]!r}")
    return int(code)


async def _probe(semaphore: asyncio.Semaphore, row: dict) -> dict:
    async with semaphore:
        started = time.perf_counter()
        status_code = None
        error = None
        try:
            status_code = await asyncio.wait_for(_status(row["endpoint"], row["health_path"]), settings.HEALTH_CHECK_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            error = f"no answer within {settings.HEALTH_CHECK_TIMEOUT_SECONDS:g}s"
        except (OSError, ValueError) as exc:  # refused, reset, unreachable, not HTTP (or a status line over 64 KiB)
            error = f"connection failed ({type(exc).__name__})"
        ok, detail = _verdict(status_code, error)
        return {
            "pk": row["pk"],
            "ok": ok,
            "status": row["health_status"],
            "failures": row["health_failures"],
            "status_code": status_code,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "detail": detail,
        }


async def _probe_all(rows: list[dict]) -> list[dict]:
    semaphore = asyncio.Semaphore(settings.HEALTH_CHECK_CONCURRENCY)
    return await asyncio.gather(*(_probe(semaphore, row) for row in rows))


def probe_many(rows: list[dict]) -> list[dict]:
    """rows: pk, ip_address, port, socket_path, health_path, health_status, health_failures."""
    for row in rows:
        row["endpoint"] = Endpoint.of(ip_address=row["ip_address"], port=row["port"], socket_path=row.get("socket_path"))
    probeable = [row for row in rows if row["endpoint"] is not None]
    results = asyncio.run(_probe_all(probeable)) if probeable else []
    missing = [
        {"pk": row["pk"], "ok": False, "status": row["health_status"], "failures": row["health_failures"],
         "status_code": None, "latency_ms": None, "detail": NO_ADDRESS}
        for row in rows if row["endpoint"] is None
    ]  # fmt: skip
    return results + missing


@dataclass(frozen=True)
class Probe:
    ok: bool
    status_code: int | None
    detail: str  # "" when ok, else why not
    latency_ms: float | None = None
    body: str | None = None


def _get(client: httpx.Client, path: str, timeout: float) -> Probe:
    started = time.perf_counter()
    status_code = body = error = None
    try:
        response = client.get(_target(path))
        status_code, body = response.status_code, response.text[:MAX_BODY]
    except httpx.TimeoutException:
        error = f"no answer within {timeout:g}s"
    except httpx.TransportError as exc:
        error = f"connection failed ({type(exc).__name__})"
    ok, detail = _verdict(status_code, error)
    return Probe(ok, status_code, detail, round((time.perf_counter() - started) * 1000, 1), body)


def probe(instance, *, timeout: float | None = None) -> Probe:
    """Ask the instance's health path once, now."""
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS if timeout is None else timeout
    endpoint = endpoint_for(instance)
    if endpoint is None:
        return Probe(False, None, NO_ADDRESS)
    with endpoint.client(timeout=timeout) as client:
        return _get(client, instance.blueprint.health_path, timeout)


def probe_until(instance, *, deadline: float, interval: float, timeout: float, successes: int = 1) -> Probe:
    """Ask until the health path answered 2xx `successes` times in a row (that answer, ok) or
    `deadline` (monotonic) passes (the last answer, not ok)."""
    endpoint = endpoint_for(instance)
    if endpoint is None:
        return Probe(False, None, NO_ADDRESS)
    streak, last = 0, Probe(False, None, "no answer")
    with endpoint.client(timeout=timeout) as client:
        while True:
            last = _get(client, instance.blueprint.health_path, timeout)
            streak = streak + 1 if last.ok else 0
            if streak >= successes:
                return last
            if time.monotonic() + interval >= deadline:
                return Probe(False, last.status_code, last.detail or "not healthy long enough", last.latency_ms, last.body)
            time.sleep(interval)


def probe_one(instance) -> dict:
    """Probe now; the API's health body."""
    result = probe(instance)
    return {
        "healthy": result.ok,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "checked_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "body": result.body,
        "error": result.detail or None,
    }
