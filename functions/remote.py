"""Functions on a function instance (FUNCTIONS_BACKEND=instance; docs/functions.md, "Where
functions run").

Each tenant with functions gets one instance of its own, `managed_by="functions"`, created on its
first deploy from the FUNCTIONS_HOST_BLUEPRINT blueprint and plan in FUNCTIONS_REGION — on AWS an
EC2 machine like any instance's, on the local provider a sandboxed local instance. Its instance
agent runs the **function host** (functions/runners/host.py), which the control plane pushes
with the agent's `PUT /app` together with the two runners; the host starts one runtime per version
there (sandboxed on the machine: its own uid, and with bubblewrap its own mount and network
namespaces) and stops it when idle. The instance itself sleeps after FUNCTIONS_HOST_IDLE_SECONDS
without an invocation and wakes on the next one, like any instance (docs/lifecycle.md).

Every call goes through the instance's agent with the agent key (which only the control plane
has); the host itself checks a second key derived from it (`app_key`), so that what runs on the
machine — a handler included — cannot drive the host without it. Nothing about a version is kept
on the machine across a restart of the host: a host that does not know a version answers 404
`unknown_version` and the control plane pushes it again (code and env from the database), a host
of another release (its digest in every answer) is replaced first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from functools import lru_cache

import httpcore
from django.conf import settings
from django.db import transaction

from gateway import traffic
from gateway.proxy import pool
from instances.agent_client import KEY_HEADER, endpoint_for
from instances.choices import InstanceState as S
from instances.choices import OperationKind
from instances.models import Instance, Region
from instances.providers import sandbox
from instances.services import instance_create, instance_wake_on_request, operation_accept
from instances.waiting import wait_for_state
from orchestrio.crypto import decrypt
from orchestrio.errors import Conflict, DomainError, ServiceUnavailable, UpstreamError, UpstreamTimeout
from orchestrio.models import Tenant
from orchestrio.tenancy import Actor, Principal

from . import runtime
from .choices import Runtime
from .models import Function

logger = logging.getLogger(__name__)

MANAGED_BY = "functions"
HOST_FILES = ("host.py", "python_runner.py", "node_runner.mjs")
HOST_COMMAND = ["python3", "-I", "-B", "host.py", "--data-dir", "../app-data"]
HOST_HEADER = "X-Orchestrio-Function-Host"
APP_KEY_HEADER = "X-Orchestrio-App-Key"
COLD_HEADER = "X-Function-Cold-Start"
TIMEOUT_HEADER = "X-Function-Timeout"
# States a function instance passes through on its way to running (a request waits through them).
ON_THE_WAY = frozenset({S.PENDING, S.PROVISIONING, S.STARTING, S.RESUMING, S.WAKING, S.SLEEPING, S.ASLEEP, S.RESIZING})
ALL_STATES = frozenset(S.values)
# How long one deploy job waits for the function instance to run before leaving it to a later run.
HOST_WAIT_IN_JOB_SECONDS = 30


@lru_cache(maxsize=1)
def bundle() -> tuple[dict[str, str], str]:
    """The files PUT /app installs, and their digest (the host answers with the same one)."""
    files = {name: (runtime.RUNNERS / name).read_bytes() for name in HOST_FILES}
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + content + b"\0" for name, content in sorted(files.items()))).hexdigest()[:16]
    return {name: content.decode("utf-8") for name, content in files.items()}, digest


def app_key(agent_key: str) -> str:
    """The key the host checks: derived from the agent key as the agent derives it from its hash."""
    return hmac.new(hashlib.sha256(agent_key.encode()).digest(), b"orchestrio-app", hashlib.sha256).hexdigest()


def host_instance(tenant_id: int) -> Instance | None:
    """The tenant's live function instance, if it has one."""
    return Instance.objects.filter(tenant_id=tenant_id, managed_by=MANAGED_BY, destroyed_at__isnull=True).first()


def ensure_host(tenant_id: int, *, actor: Actor) -> Instance:
    """The tenant's function instance, created now when it has none (concurrent first deploys
    create one: the second finds the first's), and woken when asleep."""
    host = host_instance(tenant_id)
    if host is None:
        tenant = Tenant.objects.get(pk=tenant_id)
        try:
            with transaction.atomic():
                host = instance_create(
                    principal=Principal(tenant=tenant, role="owner"), actor=actor, instance_id=f"functions-{secrets.token_hex(4)}",
                    blueprint_name=settings.FUNCTIONS_HOST_BLUEPRINT, plan_id=settings.FUNCTIONS_HOST_PLAN, region=settings.FUNCTIONS_REGION,
                    labels={"orchestrio.role": "functions"}, idle_timeout_seconds=settings.FUNCTIONS_HOST_IDLE_SECONDS, managed_by=MANAGED_BY,
                )  # fmt: skip
        except Conflict:
            host = host_instance(tenant_id)
            if host is None:
                raise
        else:
            logger.info("function instance %s created for tenant %s", host.instance_id, tenant_id)
    elif host.state == S.ASLEEP:
        instance_wake_on_request(instance=host)
    return host


class StartLater(Exception):
    """The function instance is not running yet (being created or woken): the deploy goes on
    later (the idle sweep puts its job back on the queue) instead of holding a worker."""


@lru_cache(maxsize=4096)
def _keys(agent_key_encrypted: str) -> tuple[str, str]:
    """(agent key, app key) of a ciphertext: decrypting is most of a call's own work, so it is
    remembered per ciphertext (a rotated key is a new ciphertext)."""
    key = decrypt(agent_key_encrypted)
    return key, app_key(key)


class _Host:
    """Calls to one function instance's host, through its agent (keep-alive connections from the
    gateway's pools: a new client per call cost ~40 ms, most of a warm invocation)."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        endpoint = endpoint_for(instance)
        if endpoint is None:
            raise UpstreamError(f"the function instance {instance.instance_id} has no address yet")
        self.endpoint = endpoint
        key, derived = _keys(instance.agent_key_encrypted)
        self.headers = [(KEY_HEADER.encode(), key.encode()), (APP_KEY_HEADER.encode(), derived.encode())]

    def call(self, method: str, path: str, *, body: bytes | None = None, timeout: float, headers: dict | None = None, limit: int = 1 << 20) -> tuple[int, dict, bytes]:
        """(status, headers with lower-case names, body) of the host's answer; its body read up to `limit` bytes."""
        endpoint = self.endpoint
        host = endpoint.host_header.encode()
        sent = [(b"Host", host), *self.headers, *((k.encode(), str(v).encode()) for k, v in (headers or {}).items())]
        if body is not None:
            sent += [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
        url = httpcore.URL(scheme=b"http", host=(endpoint.host or "instance").encode(), port=endpoint.port or 80, target=path.encode())
        connect = min(timeout, settings.GATEWAY_CONNECT_TIMEOUT_SECONDS)
        request = httpcore.Request(
            method.encode(), url, headers=sent, content=body or b"",
            extensions={"timeout": {"connect": connect, "pool": connect, "read": timeout, "write": timeout}},
        )  # fmt: skip
        try:
            response = pool(endpoint.socket_path).handle_request(request)
            data = runtime.read_capped(response, limit=limit)
        except httpcore.TimeoutException as exc:
            raise UpstreamTimeout(f"the function instance {self.instance.instance_id} did not answer within {timeout:g}s") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise UpstreamError(f"cannot reach the function instance {self.instance.instance_id} ({type(exc).__name__})") from exc
        answer = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
        return response.status, answer, data

    def is_current(self, headers: dict) -> bool:
        return headers.get(HOST_HEADER.lower()) == bundle()[1]

    def ensure_app(self, *, deadline: float) -> None:
        """The host of this release runs on the instance: pushed (PUT /app) when it does not, then
        waited for until it answers its health check."""
        status, headers, _ = self.call("GET", "/health", timeout=5)
        if status == 200 and self.is_current(headers):
            return
        files, _ = bundle()
        status, _, data = self.call("PUT", "/app", body=json.dumps({"command": HOST_COMMAND, "files": files}).encode(), timeout=15)
        if status != 200:
            raise UpstreamError(f"the function instance {self.instance.instance_id} refused the function host ({status}: {_detail(data)})")
        while True:
            status, headers, _ = self.call("GET", "/health", timeout=5)
            if status == 200 and self.is_current(headers):
                return
            if time.monotonic() >= deadline:
                raise UpstreamTimeout(f"the function host did not start on {self.instance.instance_id} (its last answer: {status})")
            time.sleep(0.05)

    def put_version(self, function_pk: int, number: int, *, slug: str, runtime_name: str, code: str, env: dict, idle: int) -> tuple[int, dict, bytes]:
        body = {
            "slug": slug, "runtime": runtime_name, "code": code, "env": env, "idle_timeout_seconds": idle,
            "start_timeout_seconds": settings.FUNCTIONS_START_TIMEOUT_SECONDS,
        }  # fmt: skip
        return self.call("PUT", f"/functions/{int(function_pk)}/versions/{int(number)}", body=json.dumps(body).encode(), timeout=settings.FUNCTIONS_START_TIMEOUT_SECONDS + 10)


def _field(data: bytes, name: str) -> str:
    """A field of the host's JSON answer ("" when it is not JSON or has none)."""
    try:
        body = json.loads(data)
    except ValueError:
        return ""
    return str(body.get(name, "")) if isinstance(body, dict) else ""


def _detail(data: bytes) -> str:
    """What the host (or the agent) said went wrong, for a person."""
    return _field(data, "detail")[:500] or data[:200].decode("utf-8", "replace")


def _wait_running(host: Instance, *, deadline: float, waking: bool) -> Instance:
    """Hold until the function instance runs (waking it when asleep, with `waking`): `host` when
    it runs already, else its row read again once it does (a woken machine may have a new
    address). UpstreamTimeout at `deadline`; ServiceUnavailable when it settles in a state that
    does not serve (stopped or suspended by a person, failed)."""
    state = host.state
    if state == S.RUNNING:
        return host  # the hot path: an invocation reads the row once
    while True:
        if state == S.RUNNING:
            return Instance.objects.get(pk=host.pk)
        if state not in ON_THE_WAY:
            raise ServiceUnavailable(
                f"the function instance {host.instance_id} is {state}: functions run again once it runs "
                + ("(resume it)" if state in (S.SUSPENDED, S.STOPPED) else "(delete it and deploy again to get a new one)")
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout(f"the function instance {host.instance_id} is {state} and was not running in time; retry shortly")
        if state == S.ASLEEP and waking:
            instance_wake_on_request(instance=host)
        state, _ = wait_for_state(host.pk, ALL_STATES - {state}, remaining)


class InstanceBackend:
    name = "instance"
    deploys_in_request = False

    def unavailable_reason(self) -> str | None:
        region = Region.objects.filter(pk=settings.FUNCTIONS_REGION).first()
        if region is None or not region.available:
            return f"functions run on a function instance in FUNCTIONS_REGION {settings.FUNCTIONS_REGION!r}, which is not available on this installation"
        if region.provider == "local" and not sandbox.support().enabled:
            return f"functions run on a local function instance only inside the local sandbox, which is off here ({sandbox.support().reason})"
        return None

    def available_runtimes(self) -> tuple[str, ...]:
        # What the function host blueprint installs; a machine without one says so at deploy.
        return tuple(Runtime.values)

    def interrupted_after_seconds(self) -> float:
        return settings.FUNCTIONS_HOST_READY_SECONDS

    def interrupted_message(self) -> str:
        return f"the function instance did not run the version within FUNCTIONS_HOST_READY_SECONDS ({settings.FUNCTIONS_HOST_READY_SECONDS}s); see its page"

    def prepare(self, function: Function, *, actor: Actor) -> None:
        try:
            ensure_host(function.tenant_id, actor=actor)
        except DomainError as exc:
            if isinstance(exc, ServiceUnavailable):
                raise
            raise ServiceUnavailable(f"the function instance functions run on could not be created ({exc}); see docs/functions.md") from exc

    def start(self, function: Function, target: runtime.Target) -> int:
        """Wait for the function instance (created or woken by `prepare`), put the host on it,
        then the version: its start in ms, or StartFailed with what the runtime printed."""
        found = host_instance(function.tenant_id)
        if found is None:
            raise runtime.StartFailed("the function instance was destroyed meanwhile; deploy again")
        try:
            try:
                # A job waits a little (a local instance starts in a second); an EC2 machine's
                # minutes are waited out by the sweep's later runs, not by a blocked worker.
                running = _wait_running(found, deadline=time.monotonic() + HOST_WAIT_IN_JOB_SECONDS, waking=True)
            except UpstreamTimeout as exc:
                raise StartLater(str(exc)) from exc
            host = _Host(running)
            deadline = time.monotonic() + 60
            self.log(function.pk, f"the function instance {host.instance.instance_id} runs: sending it version {target.number}")
            host.ensure_app(deadline=deadline)
            status, _, data = host.put_version(
                function.pk, target.number, slug=target.slug, runtime_name=target.runtime, code=target.code or "", env=target.env or {},
                idle=function.idle_timeout_seconds,
            )  # fmt: skip
        except DomainError as exc:
            raise runtime.StartFailed(str(exc)) from exc
        if status == 200:
            took = json.loads(data).get("start_ms")
            return int(took) if isinstance(took, int) else 0
        raise runtime.StartFailed(_detail(data) or f"the function host answered {status}", _field(data, "output"))

    def retire(self, function_pk: int, number: int, *, reason: str) -> None:
        found = Function.objects.filter(pk=function_pk).values_list("tenant_id", flat=True).first()
        host = host_instance(found) if found is not None else None
        if host is None or host.state != S.RUNNING:
            return  # the host stops it when idle; a host that restarts forgets it
        try:
            _Host(host).call("DELETE", f"/functions/{int(function_pk)}/versions/{int(number)}", timeout=5)
        except DomainError as exc:
            logger.warning("version %s of function %s not stopped on %s (%s): its host stops it when idle", number, function_pk, host.instance_id, exc)
            return
        self.log(function_pk, f"version {number} stopped: {reason}")

    def invoke(self, function: Function, target: runtime.Target, envelope: dict, *, deadline: float) -> tuple[dict, bool]:
        found = host_instance(function.tenant_id)
        if found is None:
            raise Conflict(f"function {function.slug} has no function instance to run on (it was destroyed): deploy it again")
        cold = found.state != S.RUNNING
        host = _Host(_wait_running(found, deadline=deadline, waking=True))
        traffic.note_start(host.instance.pk)
        body = json.dumps(envelope).encode()
        path = f"/functions/{function.pk}/versions/{target.number}/invoke"
        timeout = settings.FUNCTIONS_INVOKE_TIMEOUT_SECONDS + settings.FUNCTIONS_START_TIMEOUT_SECONDS + 5
        limit = runtime.envelope_limit()
        headers = {TIMEOUT_HEADER: f"{settings.FUNCTIONS_INVOKE_TIMEOUT_SECONDS:g}"}
        for attempt in range(3):
            status, answer_headers, data = host.call("POST", path, body=body, timeout=timeout, headers=headers, limit=limit)
            if not host.is_current(answer_headers):
                # No host, another release, or the agent restarting it: put this one there.
                if attempt == 2 or time.monotonic() >= deadline:
                    raise UpstreamError(f"the function host on {host.instance.instance_id} is not running ({status}); retry shortly")
                host.ensure_app(deadline=deadline)
                continue
            if status == 404 and _field(data, "code") == "unknown_version":
                # The host restarted (a wake, a reboot) and knows no version: push this one again.
                code, env = target.loader() if target.loader is not None else (target.code, target.env)
                status, _, pushed = host.put_version(function.pk, target.number, slug=target.slug, runtime_name=target.runtime, code=code or "", env=env or {}, idle=function.idle_timeout_seconds)
                if status != 200:
                    raise UpstreamError(f"function {target.slug} could not start on {host.instance.instance_id}: {_detail(pushed)} (see its logs)")
                cold = True
                continue
            traffic.note_start(host.instance.pk)
            if status in (502, 504):  # the host's own (a runner answers 200, or 500 when the handler raised)
                error = UpstreamTimeout if status == 504 else UpstreamError
                raise error(_detail(data) or f"the function host answered {status}")
            if status == 401:
                raise UpstreamError(f"the function host on {host.instance.instance_id} refused the control plane's key; retry shortly")
            return runtime.runner_payload(status, data), cold or answer_headers.get(COLD_HEADER.lower()) == "1"
        raise UpstreamError(f"function {target.slug} could not be invoked on {host.instance.instance_id}; retry shortly")

    def host_of(self, function: Function) -> Instance | None:
        return host_instance(function.tenant_id)

    def running(self, functions: list[Function]) -> set[int]:
        deployed = [f for f in functions if f.current_version_id]
        if not deployed:
            return set()
        host = host_instance(deployed[0].tenant_id)
        if host is None or host.state != S.RUNNING:
            return set()
        try:
            status, headers, data = _Host(host).call("GET", "/functions", timeout=2)
            listed = json.loads(data).get("functions", {}) if status == 200 and HOST_HEADER.lower() in headers else {}
        except (DomainError, ValueError, AttributeError):
            return set()
        return {f.pk for f in deployed if f.current_version.number in (listed.get(str(f.pk)) or {}).get("running", [])}

    def log(self, function_pk: int, message: str) -> None:
        runtime.function_dir(function_pk).mkdir(parents=True, exist_ok=True)
        runtime.log(function_pk, message)

    def read_log(self, function: Function, *, tail: int) -> list[str]:
        """The control plane's lines (deploys) and the host's (the runtimes' output and its own),
        in time order: a line the host printed without a time follows the one before it."""
        own = runtime.read_log(function.pk, tail=tail)
        host = host_instance(function.tenant_id)
        remote: list[str] = []
        if host is not None and host.state == S.RUNNING:
            try:
                status, headers, data = _Host(host).call("GET", f"/functions/{function.pk}/logs?tail={int(tail)}", timeout=3)
                if status == 200 and HOST_HEADER.lower() in headers:
                    remote = [line for line in json.loads(data).get("lines", []) if isinstance(line, str)]
            except (DomainError, ValueError, AttributeError):
                own.append(f"(the logs on {host.instance_id} could not be read just now)")
        elif host is not None:
            own.append(f"(the function instance {host.instance_id} is {host.state}: its logs are read again once it runs)")
        return merge_lines(own, remote)[-tail:]

    def after_invoke(self, function_pk: int) -> None:
        runtime.trim_log(function_pk)

    def sweep(self, rows: list[tuple[int, int, int | None]]) -> dict:
        # The host stops idle runtimes itself, and the instance sleeps like any other.
        for pk, _idle, _current in rows:
            runtime.trim_log(pk)
        return {"stopped_idle": 0, "stopped_replaced": 0}

    def remove(self, function_pk: int, tenant_id: int) -> None:
        """Forget the function on its host; destroy the function instance with the tenant's last function."""
        runtime.remove(function_pk)
        host = host_instance(tenant_id)
        if host is None:
            return
        if not Function.objects.filter(tenant_id=tenant_id).exists():
            try:
                operation_accept(instance=host, kind=OperationKind.DESTROY, actor=Actor.system("functions"), note="its tenant's last function was deleted")
            except DomainError as exc:
                logger.warning("function instance %s not destroyed: %s", host.instance_id, exc)
            return
        if host.state == S.RUNNING:
            try:
                _Host(host).call("DELETE", f"/functions/{int(function_pk)}", timeout=5)
            except DomainError as exc:
                logger.warning("function %s not removed from %s (%s): its host stops it when idle", function_pk, host.instance_id, exc)


def merge_lines(own: list[str], remote: list[str]) -> list[str]:
    """Two logs in time order by their lines' leading `%Y-%m-%dT%H:%M:%SZ` (a line without one
    keeps the time of the line before it; ties keep the control plane's first)."""

    def keyed(lines: list[str], side: int) -> list[tuple[str, int, int, str]]:
        out, last = [], ""
        for index, line in enumerate(lines):
            stamp = line[:20]
            if len(stamp) == 20 and stamp[4] == "-" and stamp[10] == "T" and stamp.endswith("Z"):
                last = stamp
            out.append((last, side, index, line))
        return out

    return [line for *_, line in sorted(keyed(own, 0) + keyed(remote, 1))]
