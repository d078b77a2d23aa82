from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from orchestrio.crypto import rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the newest key in ENCRYPTION_KEYS (run after prepending "
        "a new key; then the old key can be removed)."
    )

    # Every app stores a Fernet token in a text field named `*_encrypted` (orchestrio.crypto), and
    # only those: the command finds them in every installed app's models, importing none.
    SUFFIX = "_encrypted"

    def handle(self, *args, **options):
        encrypted = [
            (model, field.name)
            for model in apps.get_models()
            for field in model._meta.concrete_fields
            if field.name.endswith(self.SUFFIX)
        ]
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
