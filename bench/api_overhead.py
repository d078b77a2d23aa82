"""Benchmark: what the API's own work costs per request.

    .venv/bin/python bench/api_overhead.py                     # gunicorn and waitress, 2,000 requests each way
    .venv/bin/python bench/api_overhead.py --server gunicorn --requests 500

`GET /api/v1/instances/{id}` (an `ork_` token resolved in the database, tenant scope, the
endpoint and plan rate-limit counters in Redis, the instance's queries and serialization) against
`GET /bench/bare`, a Django view answering the same JSON without authentication or database
(bench/urls.py), on the same server process with the same settings and middleware. A private
redis-server holds the counters; the database is a throwaway SQLite file (or DATABASE_URL's).
For each server: sequential requests over one keep-alive connection, in blocks of 100 taken in
turn so that the machine's other work slows both alike (p50/p99 latency; sequential requests/s
is one over the mean latency), then `--connections` concurrent keep-alive connections in alternating
quarters (requests/s), and the ratio API / bare.
Bounded: fixed counts, timeouts on every call, every process stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402
import _serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=["gunicorn", "waitress", "both"], default="both")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    processes: list = []
    try:
        token, body = _django.api_bench(processes)
        from django.conf import settings

        auth = {"Authorization": f"Bearer {token}"}
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"}  # BENCH_BARE_JSON set by api_bench
        servers = ["gunicorn", "waitress"] if args.server == "both" else [args.server]
        db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(f"machine: {_django.machine()}; database: {db}; Redis: redis-server; DEBUG off")
        for kind in servers:
            base = _serve.start_web(kind, env, processes, ready_path="/bench/bare")
            api_url, bare_url = f"{base}/api/v1/instances/bench-api", f"{base}/bench/bare"
            assert httpx.get(api_url, headers=auth, timeout=10).json() == body
            assert httpx.get(bare_url, timeout=10).json() == body
            targets = {"bare view": (bare_url, {}), "API GET": (api_url, auth)}
            sequential = dict(zip(targets, _serve.load_blocks(list(targets.values()), requests=args.requests)))
            # Concurrent: in alternating quarters (bare, API, bare, API, …), for the same reason.
            served = {name: [0, 0.0] for name in targets}
            for _ in range(4):
                for name, (url, headers) in targets.items():
                    _, rps = _serve.load(url, headers, requests=args.requests // 4, connections=args.connections, warmup=0)
                    served[name][0] += args.requests // 4
                    served[name][1] += (args.requests // 4) / rps
            results = {name: (sequential[name], 1000 / statistics.fmean(sequential[name]), count / seconds) for name, (count, seconds) in served.items()}
            desc = "gunicorn gthread, 2 workers x 8 threads" if kind == "gunicorn" else "waitress (manage.py serve), 8 threads"
            print(f"{desc}: {args.requests} requests of each sequential (one keep-alive connection, blocks of 100 in turn), then over {args.connections} connections")
            for name, (seq, seq_rps, rps) in results.items():
                print(f"  {name:9}: p50 {statistics.median(seq):.2f} ms, p99 {_serve.percentile(seq, 99):.2f} ms, {seq_rps:.0f} req/s sequential, {rps:.0f} req/s concurrent")
            bare, api = results["bare view"], results["API GET"]
            print(f"  ratio API/bare: sequential {api[1] / bare[1]:.2f}, concurrent {api[2] / bare[2]:.2f}; added p50 {statistics.median(api[0]) - statistics.median(bare[0]):.2f} ms")
            _serve.stop_all(processes[-1:])
            processes.pop()
    finally:
        _serve.stop_all(processes)


if __name__ == "__main__":
    main()
