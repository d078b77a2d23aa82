"""Where a function's versions run (docs/functions.md, "Where functions run"): the one choice the
rest of the app asks about, and what each place offers.

- `SandboxBackend`: a sandboxed process per running version on this host (functions/runtime.py).
- `InstanceBackend` (functions/remote.py): the tenant's function instance — an instance like any
  other, on FUNCTIONS_REGION's provider (an EC2 machine on AWS), whose agent runs the function
  host that starts the versions' runtimes there.

FUNCTIONS_BACKEND picks one (`auto`: the instance backend unless FUNCTIONS_REGION's provider is the
local one). Both take the same calls: services.py and invoke.py never ask which one it is, except
`deploys_in_request` (a deploy on a function instance may wait minutes for the machine: a job).
"""

from __future__ import annotations

from django.conf import settings

from instances.models import Region
from orchestrio.errors import ServiceUnavailable, ValidationFailed

from . import runtime
from .models import Function
from .remote import InstanceBackend, StartLater  # noqa: F401 - StartLater: services catches it


class SandboxBackend:
    name = "sandbox"
    deploys_in_request = True

    def unavailable_reason(self) -> str | None:
        return runtime.unavailable_reason()

    def available_runtimes(self) -> tuple[str, ...]:
        return runtime.available_runtimes()

    def interrupted_after_seconds(self) -> float:
        return settings.FUNCTIONS_START_TIMEOUT_SECONDS * 3 + 60

    def interrupted_message(self) -> str:
        return "the deploy was interrupted (its process ended before the runtime was checked)"

    def prepare(self, function: Function, *, actor) -> None:
        """What must exist before a version is recorded (nothing here: this host)."""

    def start(self, function: Function, target: runtime.Target) -> int:
        runtime.prepare(target)
        return runtime.start(target)

    def retire(self, function_pk: int, number: int, *, reason: str) -> None:
        runtime.stop_if_idle(function_pk, number, idle_after=None, reason=reason)

    def invoke(self, function: Function, target: runtime.Target, envelope: dict, *, deadline: float) -> tuple[dict, bool]:
        with runtime.in_flight(function.pk, deadline=deadline):
            runtime.touch(function.pk)
            socket_path, cold = runtime.ensure_running(target, deadline=deadline)
            payload = runtime.call(socket_path, envelope, timeout=settings.FUNCTIONS_INVOKE_TIMEOUT_SECONDS)
            runtime.touch(function.pk)
        return payload, cold

    def host_of(self, function: Function):
        """The instance the function runs on (None: this host)."""
        return None

    def running(self, functions: list[Function]) -> set[int]:
        """The pks of those whose current version's runtime runs now."""
        return {f.pk for f in functions if f.current_version_id and runtime.is_running(f.pk, f.current_version.number)}

    def log(self, function_pk: int, message: str) -> None:
        runtime.function_dir(function_pk).mkdir(parents=True, exist_ok=True)
        runtime.log(function_pk, message)

    def read_log(self, function: Function, *, tail: int) -> list[str]:
        return runtime.read_log(function.pk, tail=tail)

    def after_invoke(self, function_pk: int) -> None:
        runtime.trim_log(function_pk)

    def sweep(self, rows: list[tuple[int, int, int | None]]) -> dict:
        """The idle sweep: stop runtimes idle for their function's timeout and every runtime of a
        version that is no longer current. `rows`: (pk, idle_timeout_seconds, current number)."""
        stopped = replaced = 0
        for pk, idle, current in rows:
            for number in runtime.running_versions(pk):
                if number != current:
                    replaced += runtime.stop_if_idle(pk, number, idle_after=None, reason="no longer the current version")
                elif runtime.stop_if_idle(pk, number, idle_after=idle, reason=f"idle for {idle}s (scaled to zero)"):
                    stopped += 1
            runtime.trim_log(pk)
        return {"stopped_idle": stopped, "stopped_replaced": replaced}

    def remove(self, function_pk: int, tenant_id: int) -> None:
        runtime.remove(function_pk)


_PROVIDERS: dict[str, str] = {}  # a region's provider never changes: asked once per process


def backend_name() -> str:
    if settings.FUNCTIONS_BACKEND != "auto":
        return settings.FUNCTIONS_BACKEND
    region = settings.FUNCTIONS_REGION
    if region not in _PROVIDERS:
        provider = Region.objects.filter(pk=region).values_list("provider", flat=True).first()
        if provider is None:
            return "sandbox"  # no such region (yet): the host's sandbox, and asked again next time
        _PROVIDERS[region] = provider
    return "sandbox" if _PROVIDERS[region] == "local" else "instance"


def get():
    """The backend functions run on, as configured (a few cheap objects: made per call)."""
    if backend_name() == "instance":
        return InstanceBackend()
    return SandboxBackend()


def require_runtime(name: str, *, on=None) -> None:
    """422 unless the functions' backend offers `name`."""
    offered = (on or get()).available_runtimes()
    if name not in offered:
        raise ValidationFailed(f"this installation has no {name} runtime (it offers: {', '.join(offered) or 'none'})", field="runtime")


def require_available(name: str, *, on=None) -> None:
    """What running a version needs: the backend (503 without it) and the runtime (422)."""
    on = on or get()
    reason = on.unavailable_reason()
    if reason:
        raise ServiceUnavailable(reason)
    require_runtime(name, on=on)
