import json

from django.core.management.base import BaseCommand

from instances.reconciler import reconcile_all


class Command(BaseCommand):
    help = (
        "Run the reconciler once now (the scheduler runs it every RECONCILER_INTERVAL_SECONDS): "
        "re-enqueue work whose job was lost, finish or fail work whose worker died, and compare "
        "instances with the machines the providers report."
    )

    def handle(self, *args, **options):
        summary = reconcile_all()
        self.stdout.write(json.dumps(summary, indent=2, default=str))
