"""The add-ons' enums and the transitions between their statuses."""

from __future__ import annotations

from django.db import models


class Engine(models.TextChoices):
    POSTGRES = "postgres", "PostgreSQL"
    REDIS = "redis", "Redis"


class AddOnPlan(models.TextChoices):
    """The size of an add-on. On the local engine it is recorded (a process has no size); on AWS
    it will pick the RDS/ElastiCache instance class (docs/addons.md)."""

    HOBBY = "hobby", "Hobby"
    STANDARD = "standard", "Standard"
    PREMIUM = "premium", "Premium"


class AddOnStatus(models.TextChoices):
    PROVISIONING = "provisioning"
    AVAILABLE = "available"
    BACKING_UP = "backing_up"
    RESTORING = "restoring"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"


class AddOnOperationKind(models.TextChoices):
    CREATE = "create"
    ROTATE_CREDENTIALS = "rotate_credentials"
    DESTROY = "destroy"


class AddOnOperationStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


UNFINISHED_OPERATION_STATUSES = (AddOnOperationStatus.QUEUED, AddOnOperationStatus.RUNNING)

# The status an add-on is in while an operation of each kind runs.
BUSY_STATUS = {
    AddOnOperationKind.CREATE: AddOnStatus.PROVISIONING,
    AddOnOperationKind.ROTATE_CREDENTIALS: AddOnStatus.AVAILABLE,
    AddOnOperationKind.DESTROY: AddOnStatus.DELETING,
}

# Which env var the attached instance sees for each engine.
ENV_NAME = {Engine.POSTGRES: "DATABASE_URL", Engine.REDIS: "REDIS_URL"}
