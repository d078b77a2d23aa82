from django.core.management.base import BaseCommand
from django.db import transaction

from orchestrio.crypto import rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the newest key in ENCRYPTION_KEYS (run after prepending "
        "a new key; then the old key can be removed)."
    )

    def handle(self, *args, **options):
        from billing.models import AlertConfig
        from deployments.models import DeploymentRevision
        from instances.models import Instance
        from orchestrio.models import IdempotencyKey

        encrypted = (
            (Instance, "agent_key_encrypted"), (DeploymentRevision, "secrets_encrypted"),
            (AlertConfig, "signing_secret_encrypted"), (IdempotencyKey, "response_body_encrypted"),
        )  # fmt: skip
        counts = {}
        with transaction.atomic():
            for model, field in encrypted:
                done = 0
                for row in model.objects.exclude(**{field: ""}).only("pk", field).iterator():
                    model.objects.filter(pk=row.pk).update(**{field: rotate(getattr(row, field))})
                    done += 1
                counts[f"{model._meta.label}.{field}"] = done
        for name, done in counts.items():
            self.stdout.write(f"re-encrypted {done} value(s) of {name}")
