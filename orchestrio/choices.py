from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"

    @classmethod
    def rank(cls, role: str) -> int:
        """Higher is more privileged; used to keep a token from outranking its creator."""
        return {cls.MEMBER: 1, cls.ADMIN: 2, cls.OWNER: 3}[role]


class TokenMode(models.TextChoices):
    LIVE = "live", "Live"
    TEST = "test", "Test"


class ActorType(models.TextChoices):
    USER = "user", "User (console)"
    TOKEN = "token", "API token"
    STAFF = "staff", "Support staff"
    SYSTEM = "system", "System"


class IdempotencyStatus(models.TextChoices):
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"


class InvitationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"
