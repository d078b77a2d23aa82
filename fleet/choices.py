from django.db import models


class RequestKind(models.TextChoices):
    ACQUIRE = "acquire", "acquire"  # create `count` instances from a blueprint
    RETURN = "return", "return"  # destroy instances (a request's, or named ones)


class RequestStatus(models.TextChoices):
    """Derived from the request's operations on every read (`selectors.with_status`), never stored."""

    PENDING = "pending", "pending"  # no operation has started
    IN_PROGRESS = "in_progress", "in progress"
    COMPLETE = "complete", "complete"  # every instance's operation succeeded
    PARTIAL = "partial", "partial"  # all finished, some failed
    FAILED = "failed", "failed"  # all finished, all failed


class BatchStatus(models.TextChoices):
    """Where a request's one fleet call stands (`FleetBatch`)."""

    LAUNCHING = "launching", "launching"  # the fleet call has not been answered and assigned yet
    ASSIGNED = "assigned", "assigned"  # its machines are the instances' (or the instances failed)
