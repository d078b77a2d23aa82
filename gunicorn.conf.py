"""gunicorn's hooks for the Procfile's `web` (gunicorn reads ./gunicorn.conf.py by itself).

/metrics under several gunicorn workers: with PROMETHEUS_MULTIPROC_DIR set, every worker writes
its request metrics to files there and a scrape adds them up (orchestrio/metrics.py). Each
worker process leaves its own files behind, so the master empties the directory before it forks
(as prometheus_client requires). One directory per gunicorn master (docs/operations.md, "Metrics").

Long polls: a gthread worker serves each request on one of its `--threads` until the request
ends, so a waiting long poll holds a thread. Each worker tells the app how many it has, and long
polls may hold all but LONG_POLL_RESERVED_THREADS of them (orchestrio/longpoll.py;
docs/operations.md, "Long polls and server sizing").
"""

import glob
import os


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


def post_worker_init(worker):
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker

    from orchestrio.longpoll import set_server_threads

    if isinstance(worker, ThreadWorker):
        set_server_threads(worker.cfg.threads)
    elif isinstance(worker, SyncWorker):
        set_server_threads(1)  # one request at a time: no thread to spare for a long poll
    # Other worker classes (gevent, eventlet) do not give each request a thread of a fixed pool:
    # only the per-principal and per-tenant caps apply there.
