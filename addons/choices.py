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
    BACKUP = "backup"
    RESTORE = "restore"


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
    AddOnOperationKind.BACKUP: AddOnStatus.BACKING_UP,
    AddOnOperationKind.RESTORE: AddOnStatus.RESTORING,
}

# Which env var the attached instance sees for each engine.
ENV_NAME = {Engine.POSTGRES: "DATABASE_URL", Engine.REDIS: "REDIS_URL"}


class BackupKind(models.TextChoices):
    MANUAL = "manual"
    AUTO = "auto"


class BackupStatus(models.TextChoices):
    PENDING = "pending"  # its operation is queued or running
    AVAILABLE = "available"
    FAILED = "failed"
    DELETED = "deleted"  # deleted by its tenant or expired; `stored` says whether the store still holds it


class BackupStorage(models.TextChoices):
    """Where a backup's bytes are: the local directory store, S3 (boto3), or a provider's own
    snapshot standing in for a dump (AWS: an RDS/ElastiCache snapshot, its id in `location`)."""

    LOCAL = "local"
    S3 = "s3"
    SNAPSHOT = "snapshot"
