"""The control plane's client for the instance agent (HTTP, authenticated by the agent key), and
the address every caller reaches an instance at (`Endpoint`: TCP, or the local provider's unix
socket)."""

from __future__ import annotations

import hashlib
import hmac
import json as jsonlib
import ssl
from contextlib import contextmanager
from urllib.parse import quote, urlencode
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx

from orchestrio.crypto import decrypt

KEY_HEADER = "X-Orchestrio-Agent-Key"
GATEWAY_HEADER = "X-Orchestrio-Gateway-Key"


@dataclass(frozen=True)
class Endpoint:
    """Where an instance's agent listens: `host`:`port`, or a unix `socket_path`."""

    host: str | None = None
    port: int | None = None
    socket_path: str | None = None

    @classmethod
    def of(cls, *, ip_address: str | None, port: int | None, socket_path: str | None = None) -> Endpoint | None:
        """The endpoint of recorded address facts, or None when there is none to reach."""
        if socket_path:
            return cls(socket_path=socket_path)
        if ip_address and port:
            return cls(host=ip_address, port=port)
        return None

    @property
    def base_url(self) -> str:
        if self.socket_path:
            return "http://instance"  # the socket is the address; the URL's host is only the Host header
        host = f"[{self.host}]" if ":" in (self.host or "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def host_header(self) -> str:
        return self.base_url.split("://", 1)[1]

    def client(self, *, timeout: float) -> httpx.Client:
        """An httpx client for this endpoint that never follows redirects or reads proxy settings.
        The agent speaks plain HTTP, but httpx builds a TLS context for every client (loading the
        CA bundle: ~40 ms, most of an agent call's time): one shared context, made once."""
        tls = _tls_context()
        transport = httpx.HTTPTransport(uds=self.socket_path, verify=tls) if self.socket_path else httpx.HTTPTransport(verify=tls)
        return httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout, follow_redirects=False, trust_env=False, verify=tls)

    def __str__(self) -> str:
        return "its agent's unix socket" if self.socket_path else self.host_header


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def endpoint_for(instance) -> Endpoint | None:
    return Endpoint.of(ip_address=instance.ip_address, port=instance.port, socket_path=getattr(instance, "socket_path", "") or None)


def agent_client_for(instance, *, timeout: float = 10.0) -> AgentClient:
    """A client for the instance's agent, with its decrypted key (sends nothing yet)."""
    endpoint = endpoint_for(instance) or Endpoint(host=instance.ip_address or "127.0.0.1", port=instance.port or instance.blueprint.agent_port)
    return AgentClient(endpoint, decrypt(instance.agent_key_encrypted), timeout=timeout)


def agent_status(instance, *, timeout: float = 3.0) -> dict:
    """The agent's /api/status, asked now: `{"reachable": True, "status": …}`, or
    `{"reachable": False, "error": …}` when it did not answer."""
    try:
        return {"reachable": True, "status": agent_client_for(instance, timeout=timeout).status()}
    except (AgentUnreachable, AgentTimeout, AgentError) as exc:
        return {"reachable": False, "error": str(exc)}


def stats_many(instances, *, timeout: float, concurrency: int) -> dict:
    """Each instance's agent `/stats`, asked concurrently (a bounded thread pool, a short timeout
    each): `{pk: counters}` for those that answered, `{pk: "why not"}` for the others."""

    def ask(instance):
        try:
            return instance.pk, agent_client_for(instance, timeout=timeout).stats(timeout=timeout)
        except (AgentUnreachable, AgentTimeout, AgentError) as exc:
            return instance.pk, str(exc)

    if not instances:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(instances)))) as pool:
        return dict(pool.map(ask, instances))


def gateway_key(agent_key: str) -> str:
    """The key that opens the agent's traffic routes (not its management routes): what the
    gateway and the control plane's health probes present."""
    return hmac.new(hashlib.sha256(agent_key.encode()).digest(), b"orchestrio-gateway", hashlib.sha256).hexdigest()


@lru_cache(maxsize=4096)
def gateway_key_for(agent_key_encrypted: str) -> str:
    """Decrypting costs more than the rest of a proxied request's header work: remembered per
    ciphertext (a new agent key is a new ciphertext, so rotation needs no invalidation)."""
    return gateway_key(decrypt(agent_key_encrypted))


class AgentError(Exception):
    """The agent answered with an error status."""

    def __init__(self, status_code: int, detail: str, *, body: dict | None = None, headers: dict | None = None) -> None:
        super().__init__(f"agent answered {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.body = body or {}  # the agent's JSON error body (a refused chat's `allowed_models`)
        self.headers = headers or {}


class AgentUnreachable(Exception):
    """Nothing answered (connection refused or reset)."""


class AgentTimeout(Exception):
    """The agent did not answer in time."""


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _agent_error(response: httpx.Response, text: str) -> AgentError:
    try:
        body = jsonlib.loads(text)
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    retry_after = response.headers.get("Retry-After")
    return AgentError(response.status_code, str(body.get("detail", text[:200])), body=body, headers={"Retry-After": retry_after} if retry_after else {})


class AgentClient:
    def __init__(self, endpoint: Endpoint, key: str, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.key = key
        self.timeout = timeout

    @classmethod
    def for_socket(cls, socket_path: str, key: str, *, timeout: float = 10.0) -> AgentClient:
        return cls(Endpoint(socket_path=socket_path), key, timeout=timeout)

    def _request(self, method: str, path: str, *, json: Any = None, timeout: float | None = None) -> Any:
        try:
            with self.endpoint.client(timeout=timeout or self.timeout) as client:
                response = client.request(method, path, json=json, headers={KEY_HEADER: self.key})
        except httpx.TimeoutException as exc:
            raise AgentTimeout(f"the agent at {self.endpoint} did not answer within {timeout or self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise AgentUnreachable(f"cannot reach the agent at {self.endpoint}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise _agent_error(response, response.text)
        try:
            return response.json()
        except ValueError as exc:
            raise AgentError(response.status_code, "the agent answered with something other than JSON") from exc

    @contextmanager
    def stream(self, method: str, path: str, *, json: Any = None, headers: dict | None = None, timeout: float | None = None):
        """The agent's answer as it comes (`response.iter_raw()`); an error status raises AgentError
        before anything is read, so the caller can still answer with a status of its own."""
        try:
            with self.endpoint.client(timeout=timeout or self.timeout) as client:
                with client.stream(method, path, json=json, headers={KEY_HEADER: self.key, **(headers or {})}) as response:
                    if response.status_code >= 400:
                        raise _agent_error(response, response.read()[:4096].decode("utf-8", "replace"))
                    yield response
        except httpx.TimeoutException as exc:
            raise AgentTimeout(f"the agent at {self.endpoint} did not answer within {timeout or self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise AgentUnreachable(f"cannot reach the agent at {self.endpoint}: {type(exc).__name__}") from exc

    def status(self) -> dict:
        return self._request("GET", "/api/status", timeout=5)

    def app_logs(self, *, after: int = 0, since: str = "", tail: int = 100, stream: str = "", q: str = "", timeout: float = 5) -> dict:
        """The instance's own output (the agent's ring buffer): `{"lines", "last_seq", "truncated",
        "starts", "last_exit_code", "last_exit_at"}`."""
        params = {key: value for key, value in {"after": after, "since": since, "tail": tail, "stream": stream, "q": q}.items() if value not in ("", None)}
        return self._request("GET", "/app-logs?" + urlencode(params), timeout=timeout)

    def stats(self, *, timeout: float = 5) -> dict:
        """The agent's cumulative counters of the instance's processes (instances/agent.py)."""
        return self._request("GET", "/stats", timeout=timeout)

    def get_config(self) -> dict:
        return self._request("GET", "/config")

    def put_config(self, config: dict) -> dict:
        return self._request("POST", "/config", json=config)

    def put_secrets(self, values: dict) -> dict:
        return self._request("POST", "/secrets", json=values)

    def set_key(self, new_key: str, *, identity: dict | None = None) -> dict:
        """Replace the agent's key; `identity` ({"instance_id", "tenant_id"}) tells a fleet batch's
        machine which instance it now is (it started with the batch's bootstrap key only)."""
        body = {"key_sha256": key_sha256(new_key), **({"identity": identity} if identity else {})}
        return self._request("POST", "/agent-key", json=body)

    def chat(self, body: dict, *, timeout: float) -> dict:
        """The agent runtime's `POST /chat` (instances/agent.py `Runtime`): the exchange's record."""
        return self._request("POST", "/chat", json=body, timeout=timeout)

    def usage(self, *, timeout: float = 5) -> dict:
        """The agent runtime's cumulative counters per UTC day, under its `epoch`."""
        return self._request("GET", "/usage", timeout=timeout)

    def conversations(self, *, limit: int) -> dict:
        return self._request("GET", f"/conversations?limit={int(limit)}", timeout=5)

    def conversation(self, conversation_id: str) -> dict:
        return self._request("GET", f"/conversations/{quote(conversation_id, safe='')}", timeout=5)

    def start_task(self, *, task_id: str, script_path: str, args: dict, timeout_seconds: int) -> dict:
        body = {"task_id": task_id, "script_path": script_path, "args": args, "timeout_seconds": timeout_seconds}
        return self._request("POST", "/tasks", json=body)

    def get_task(self, task_id: str) -> dict:
        return self._request("GET", f"/tasks/{task_id}")

    def cancel_task(self, task_id: str) -> dict:
        return self._request("POST", f"/tasks/{task_id}/cancel")
