from django.db import models


class DeploymentEnvironment(models.TextChoices):
    PRODUCTION = "production"
    STAGING = "staging"
    DEVELOPMENT = "development"


class DeploymentStatus(models.TextChoices):
    PROVISIONING = "provisioning"
    UPDATING = "updating"
    ROLLING_BACK = "rolling_back"
    ACTIVE = "active"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


DEPLOYMENT_BUSY_STATUSES = (DeploymentStatus.PROVISIONING, DeploymentStatus.UPDATING, DeploymentStatus.ROLLING_BACK, DeploymentStatus.DELETING)


class StepStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
