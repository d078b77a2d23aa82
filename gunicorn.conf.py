"""gunicorn's hooks for the Procfile's `web` (gunicorn reads ./gunicorn.conf.py by itself).

/metrics under several gunicorn workers: with PROMETHEUS_MULTIPROC_DIR set, every worker writes
its request metrics to files there and a scrape adds them up (orchestrio/metrics.py). Each
worker process leaves its own files behind, so the master empties the directory before it forks
(as prometheus_client requires). One directory per gunicorn master (docs/operations.md, "Metrics").
"""

import glob
import os


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)
