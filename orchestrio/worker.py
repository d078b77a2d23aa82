"""An RQ worker that runs jobs in its own process (no fork): used by `manage.py serve`, where the
embedded queue only exists in this process, and by the test suite."""

from __future__ import annotations

import threading

from django.db import connections
from rq import SimpleWorker as RQSimpleWorker


def close_old_connections() -> None:
    """Django's close_old_connections, except for a connection inside a transaction (the test
    suite runs jobs inside each test's transaction)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


class SimpleWorker(RQSimpleWorker):
    def _install_signal_handlers(self) -> None:
        # `manage.py serve` runs several workers as threads: only the main thread's handles the
        # process's signals (and Python allows handlers only there).
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()

    def perform_job(self, job, queue, execution=None):
        # Jobs share this process's database connections: drop broken or expired ones around each.
        close_old_connections()
        try:
            return super().perform_job(job, queue, execution)
        finally:
            close_old_connections()


def build_worker(*queue_names: str) -> SimpleWorker:
    """A worker for this thread. Job timeouts use SIGALRM in the main thread, a timer elsewhere
    (signals reach only the main thread)."""
    import django_rq
    from rq.timeouts import TimerDeathPenalty

    queues = [django_rq.get_queue(name) for name in (queue_names or ("default", "periodic"))]
    worker = SimpleWorker(queues, connection=queues[0].connection)
    if threading.current_thread() is not threading.main_thread():
        worker.death_penalty_class = TimerDeathPenalty
    return worker
