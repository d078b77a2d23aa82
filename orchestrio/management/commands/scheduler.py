from django.core.management.base import BaseCommand

from orchestrio.schedule import build_scheduler, periodic_jobs


class Command(BaseCommand):
    help = "Run the periodic-job scheduler (run exactly one per deployment)."

    def handle(self, *args, **options):
        scheduler = build_scheduler()
        for job in periodic_jobs():
            self.stdout.write(f"every {job.interval:>5}s  {job.func}")
        scheduler.start()
