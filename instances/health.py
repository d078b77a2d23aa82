"""Probing instances' health endpoints: many at once for the sweep (asyncio, bounded
concurrency, short timeouts), or one now for `GET /instances/{id}/health`."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import httpx
from django.conf import settings

MAX_BODY = 4096


def _url(ip: str, port: int, path: str) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}{path if path.startswith('/') else '/' + path}"


def _verdict(status_code: int | None, error: str | None) -> tuple[bool, str]:
    if error:
        return False, error
    if 200 <= status_code < 300:
        return True, ""
    return False, f"HTTP {status_code}"


async def _probe(client: httpx.AsyncClient, semaphore: asyncio.Semaphore, row: dict) -> dict:
    async with semaphore:
        started = time.perf_counter()
        status_code = None
        error = None
        try:
            response = await client.get(_url(row["ip_address"], row["port"], row["health_path"]))
            status_code = response.status_code
        except httpx.TimeoutException:
            error = f"no answer within {settings.HEALTH_CHECK_TIMEOUT_SECONDS:g}s"
        except httpx.TransportError as exc:
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
    limits = httpx.Limits(max_connections=settings.HEALTH_CHECK_CONCURRENCY, max_keepalive_connections=0)
    timeout = httpx.Timeout(settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
        return await asyncio.gather(*(_probe(client, semaphore, row) for row in rows))


def probe_many(rows: list[dict]) -> list[dict]:
    """rows: pk, ip_address, port, health_path, health_status, health_failures."""
    probeable = [row for row in rows if row["ip_address"] and row["port"]]
    results = asyncio.run(_probe_all(probeable)) if probeable else []
    missing = [
        {"pk": row["pk"], "ok": False, "status": row["health_status"], "failures": row["health_failures"],
         "status_code": None, "latency_ms": None, "detail": "no address recorded"}
        for row in rows if not (row["ip_address"] and row["port"])
    ]  # fmt: skip
    return results + missing


def probe_one(instance) -> dict:
    """Probe now; returns the API's health body plus `ok` and `detail`."""
    started = time.perf_counter()
    status_code = None
    body = None
    error = None
    url = _url(instance.ip_address or "127.0.0.1", instance.port or instance.blueprint.agent_port, instance.blueprint.health_path)
    try:
        with httpx.Client(timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.get(url)
        status_code = response.status_code
        body = response.text[:MAX_BODY]
    except httpx.TimeoutException:
        error = f"no answer within {settings.HEALTH_CHECK_TIMEOUT_SECONDS:g}s"
    except httpx.TransportError as exc:
        error = f"connection failed ({type(exc).__name__})"
    ok, detail = _verdict(status_code, error)
    return {
        "healthy": ok,
        "status_code": status_code,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "checked_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "body": body,
        "error": detail or None,
    }
