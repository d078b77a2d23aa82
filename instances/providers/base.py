"""The provider interface. A provider turns lifecycle intents into machines somewhere (processes on
this host, EC2 instances) and reports what exists. Every call is idempotent: calling `create`
twice for the same instance yields one machine; stopping a stopped machine is a no-op.

Providers receive plain data (`MachineSpec`), never ORM objects, and raise `ProviderError` with
a typed code; jobs turn those into failed operations with a message a user can act on.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


class MachineState:
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SUSPENDED = "suspended"  # local: SIGSTOPped; AWS reports hibernated machines as stopped
    TERMINATED = "terminated"
    MISSING = "missing"  # the provider has no such machine


@dataclass(frozen=True)
class MachineSpec:
    """Everything a provider needs to launch or find one instance's machine."""

    instance_pk: int
    instance_id: str
    tenant_id: str
    operation_id: int | None
    region: str  # provider region (AWS region), "" for local
    instance_type: str
    agent_key: str
    agent_port: int
    health_path: str
    image_id: str = ""
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    key_name: str = ""
    iam_instance_profile: str = ""
    user_data: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    hibernation: bool = False
    # How AWS launches it: RunInstances, or EC2Fleet / SpotFleet with their settings
    # (machine_types: (instance type, weight) pairs; empty: instance_type with weight 1).
    provider_api: str = "RunInstances"
    machine_types: tuple[tuple[str, int], ...] = ()
    on_demand_percentage: int = 100
    allocation_strategy: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    # A fleet batch's machines (`launch_batch`): the request's id, and no instance yet
    # (instance_id "", instance_pk 0, agent_key the batch's bootstrap key).
    fleet_request: str = ""
    # Facts the provider stored earlier (local: pid, dir; aws: EC2 id, client token).
    provider_instance_id: str = ""
    provider_data: dict[str, Any] = field(default_factory=dict)

    @property
    def tag_set(self) -> dict[str, str]:
        return {"orchestrio:instance_id": self.instance_id, "orchestrio:tenant_id": self.tenant_id, "orchestrio:instance_pk": str(self.instance_pk)}


@dataclass
class Machine:
    """What a provider reports about one machine."""

    provider_instance_id: str
    state: str
    ip_address: str | None = None
    port: int | None = None
    socket_path: str | None = None  # local: the agent's unix socket (its address then)
    instance_type: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    provider_data: dict[str, Any] = field(default_factory=dict)

    @property
    def instance_pk(self) -> int | None:
        raw = self.tags.get("orchestrio:instance_pk")
        return int(raw) if raw and raw.isdigit() else None


@dataclass
class TaskRequest:
    task_id: str
    script_path: str
    args: dict[str, Any]
    timeout_seconds: int


@dataclass
class TaskResult:
    status: str  # queued | running | succeeded | failed | timed_out | cancelled
    command_id: str = ""
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def finished(self) -> bool:
        return self.status not in ("queued", "running")


@dataclass
class BatchLaunch:
    """What one fleet call for a whole batch launched (`Provider.launch_batch`): its machines (at
    most what was asked; fewer when capacity ran short), AWS's reasons for what is missing, and
    the fleet's id."""

    machines: list[Machine]
    errors: list[str] = field(default_factory=list)
    fleet_id: str = ""


class ProviderError(Exception):
    """A typed failure. `code` is one of instances.choices.ErrorCode; `retryable` marks transient ones."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class Provider(abc.ABC):
    name: str

    @abc.abstractmethod
    def create(self, spec: MachineSpec) -> Machine:
        """Launch the machine (or find the one an earlier attempt launched) and wait until it runs."""

    @abc.abstractmethod
    def start(self, spec: MachineSpec) -> Machine: ...

    @abc.abstractmethod
    def stop(self, spec: MachineSpec) -> Machine: ...

    @abc.abstractmethod
    def suspend(self, spec: MachineSpec) -> Machine:
        """Suspend (hibernate where possible); `provider_data["hibernated"]` says which."""

    @abc.abstractmethod
    def resume(self, spec: MachineSpec) -> Machine: ...

    @abc.abstractmethod
    def resize(self, spec: MachineSpec, *, instance_type: str, restart: bool) -> Machine:
        """Change the size; the machine must end stopped (restart=False) or running (True)."""

    @abc.abstractmethod
    def destroy(self, spec: MachineSpec) -> None: ...

    @abc.abstractmethod
    def describe(self, spec: MachineSpec) -> Machine:
        """The machine's current state; state MISSING when the provider has none."""

    @abc.abstractmethod
    def list_machines(self, region: str) -> list[Machine]:
        """Every machine tagged as Orchestrio's in this region (for the reconciler)."""

    def destroy_orphan(self, machine: Machine, region: str) -> None:
        raise NotImplementedError

    # Fleet batches (the fleet app: one EC2 Fleet / Spot Fleet call for a request's instances)
    def launch_batch(self, spec: MachineSpec, *, count: int) -> BatchLaunch:
        """Launch `count` machines for `spec.fleet_request` in one call, or find the ones an
        earlier attempt launched (never a second fleet for the same batch)."""
        raise NotImplementedError

    def unclaimed_batch_machines(self, region: str, fleet_request: str) -> list[str]:
        """The live machines a batch launched that no instance was given (to terminate)."""
        raise NotImplementedError

    def terminate_machines(self, region: str, machine_ids: list[str]) -> None:
        """Terminate machines a batch launched beyond what it needed (idempotent)."""
        raise NotImplementedError

    # Tasks (the Tasks feature)
    @abc.abstractmethod
    def run_task(self, spec: MachineSpec, task: TaskRequest) -> str:
        """Start a task; returns the provider's command id."""

    @abc.abstractmethod
    def find_task(self, spec: MachineSpec, task: TaskRequest) -> str | None:
        """The command id of this task if an earlier attempt already started it (so a re-run job
        never runs a script twice), else None."""

    @abc.abstractmethod
    def task_status(self, spec: MachineSpec, task: TaskRequest, command_id: str) -> TaskResult: ...

    @abc.abstractmethod
    def cancel_task(self, spec: MachineSpec, task: TaskRequest, command_id: str) -> None: ...
