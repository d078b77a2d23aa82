from django.db import models


class DomainStatus(models.TextChoices):
    PENDING_DNS = "pending_dns"
    VERIFYING = "verifying"
    ACTIVE = "active"
    FAILED = "failed"
    REMOVING = "removing"
