from django.db import models


class Provider(models.TextChoices):
    LOCAL = "local", "Local processes"
    AWS = "aws", "Amazon EC2"


class ProviderApi(models.TextChoices):
    RUN_INSTANCES = "RunInstances", "RunInstances"
    EC2_FLEET = "EC2Fleet", "EC2Fleet"
    SPOT_FLEET = "SpotFleet", "SpotFleet"


SUPPORTED_PROVIDER_APIS = {ProviderApi.RUN_INSTANCES, ProviderApi.EC2_FLEET, ProviderApi.SPOT_FLEET}
FLEET_PROVIDER_APIS = {ProviderApi.EC2_FLEET, ProviderApi.SPOT_FLEET}

# Spot allocation strategies, in each API's own spelling (CreateFleet's SpotOptions and
# RequestSpotFleet's SpotFleetRequestConfig); the first is the default. The *-prioritized
# variants are left out: they follow the order of machine_types, which a JSON object does not keep.
ALLOCATION_STRATEGIES = {
    ProviderApi.EC2_FLEET: ("price-capacity-optimized", "lowest-price", "capacity-optimized", "diversified"),
    ProviderApi.SPOT_FLEET: ("priceCapacityOptimized", "lowestPrice", "capacityOptimized", "diversified"),
}
MAX_MACHINE_TYPES = 20


class InstanceState(models.TextChoices):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    STARTING = "starting"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESUMING = "resuming"
    # Scale to zero (docs/lifecycle.md, "Sleep and wake"): suspended the same way, but by the idle
    # sweep or a sleep request, and woken by the next request to it; `suspended` is a person's.
    SLEEPING = "sleeping"
    ASLEEP = "asleep"
    WAKING = "waking"
    RESIZING = "resizing"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    ERROR = "error"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class OperationKind(models.TextChoices):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SUSPEND = "suspend"
    RESUME = "resume"
    SLEEP = "sleep"
    WAKE = "wake"
    RESIZE = "resize"
    DESTROY = "destroy"


class OperationStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


UNFINISHED_OPERATION_STATUSES = (OperationStatus.QUEUED, OperationStatus.RUNNING)


class OperationReason(models.TextChoices):
    """Why an operation was started when no person asked for it ("" when one did)."""

    IDLE = "idle", "No traffic for the idle timeout"
    REQUEST = "request", "A request reached the sleeping instance"


class ErrorCode(models.TextChoices):
    """Typed reasons an operation failed; each has a message a user can act on."""

    PROVIDER_CAPACITY = "provider_capacity"
    PROVIDER_AUTH = "provider_auth"
    PROVIDER_QUOTA = "provider_quota"
    PROVIDER_THROTTLED = "provider_throttled"
    PROVIDER_INVALID_REQUEST = "provider_invalid_request"
    PROVIDER_ERROR = "provider_error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    HEALTH_CHECK_FAILED = "health_check_failed"
    MACHINE_VANISHED = "machine_vanished"
    SUPERSEDED = "superseded"
    INTERNAL = "internal"


class LogLevel(models.TextChoices):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class StatResolution(models.TextChoices):
    """An instance's stats points: one a minute for a day, then one an hour for 30 days."""

    MINUTE = "minute"
    HOUR = "hour"


class StatWindow(models.TextChoices):
    """How far back `GET /instances/{id}/stats` reads: minute points for 1h and 24h, hours for 30d."""

    HOUR = "1h"
    DAY = "24h"
    MONTH = "30d"
