"""The control plane's client for the instance agent (HTTP, authenticated by the agent key)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

KEY_HEADER = "X-Orchestrio-Agent-Key"


class AgentError(Exception):
    """The agent answered with an error status."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"agent answered {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class AgentUnreachable(Exception):
    """Nothing answered (connection refused or reset)."""


class AgentTimeout(Exception):
    """The agent did not answer in time."""


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class AgentClient:
    def __init__(self, host: str, port: int, key: str, *, timeout: float = 10.0) -> None:
        self.base_url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        self.key = key
        self.timeout = timeout

    def _request(self, method: str, path: str, *, json: Any = None, timeout: float | None = None) -> Any:
        try:
            with httpx.Client(timeout=timeout or self.timeout, follow_redirects=False) as client:
                response = client.request(method, self.base_url + path, json=json, headers={KEY_HEADER: self.key})
        except httpx.TimeoutException as exc:
            raise AgentTimeout(f"the agent at {self.base_url} did not answer within {timeout or self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise AgentUnreachable(f"cannot reach the agent at {self.base_url}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text[:200])
            except ValueError:
                detail = response.text[:200]
            raise AgentError(response.status_code, str(detail))
        try:
            return response.json()
        except ValueError as exc:
            raise AgentError(response.status_code, "the agent answered with something other than JSON") from exc

    def status(self) -> dict:
        return self._request("GET", "/api/status", timeout=5)

    def get_config(self) -> dict:
        return self._request("GET", "/config")

    def put_config(self, config: dict) -> dict:
        return self._request("POST", "/config", json=config)

    def put_secrets(self, values: dict) -> dict:
        return self._request("POST", "/secrets", json=values)

    def set_key(self, new_key: str) -> dict:
        return self._request("POST", "/agent-key", json={"key_sha256": key_sha256(new_key)})

    def start_task(self, *, task_id: str, script_path: str, args: dict, timeout_seconds: int) -> dict:
        body = {"task_id": task_id, "script_path": script_path, "args": args, "timeout_seconds": timeout_seconds}
        return self._request("POST", "/tasks", json=body)

    def get_task(self, task_id: str) -> dict:
        return self._request("GET", f"/tasks/{task_id}")

    def cancel_task(self, task_id: str) -> dict:
        return self._request("POST", f"/tasks/{task_id}/cancel")
