"""An RQ worker that runs jobs in its own process (no fork): used by `manage.py serve`, where the
embedded queue only exists in this process, and by the test suite."""

from __future__ import annotations

from django.db import connections
from rq import SimpleWorker as RQSimpleWorker


def close_old_connections() -> None:
    """Django's close_old_connections, except for a connection inside a transaction (the test
    suite runs jobs inside each test's transaction)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


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
