"""An RQ worker that runs jobs in its own process (no fork): used by `manage.py serve`, where the
embedded queue only exists in this process, and by the test suite."""

from __future__ import annotations

from django.db import close_old_connections
from rq import SimpleWorker as RQSimpleWorker


class SimpleWorker(RQSimpleWorker):
    def perform_job(self, job, queue, execution=None):
        # Jobs share this process's database connections: drop broken or expired ones around each.
        close_old_connections()
        try:
            return super().perform_job(job, queue, execution)
        finally:
            close_old_connections()


def build_worker(*queue_names: str) -> SimpleWorker:
    import django_rq

    queues = [django_rq.get_queue(name) for name in (queue_names or ("default", "periodic"))]
    return SimpleWorker(queues, connection=queues[0].connection)
