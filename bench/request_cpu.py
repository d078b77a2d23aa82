"""Benchmark: CPU time per request of the two side-by-side endpoints, in-process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrio_bench .venv/bin/python bench/request_cpu.py
    ... bench/request_cpu.py --profile instance     # cProfile of 2,000 detail requests (top functions; /tmp/request_cpu_instance.prof)

Production settings (bench/_django.py `api_bench`: DEBUG off, a private redis-server, rate-limit
counters on with limits out of the way), Django's `WSGIHandler` called directly with a fresh
environ per request. Reports, for `GET /api/v1/instances/{id}` and `GET /api/v1/blueprints` (the
built-in blueprint and three of the tenant's, as in the side-by-side script), the process CPU
time per request (best of five runs) and the queries each sends. Bounded: fixed counts, every
process stopped at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402
import _serve  # noqa: E402

TARGETS = {"instance": "/api/v1/instances/bench-api", "blueprints": "/api/v1/blueprints"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", choices=sorted(TARGETS))
    args = parser.parse_args()
    processes: list = []
    try:
        token, _ = _django.api_bench(processes)
        from django.core.handlers.wsgi import WSGIHandler
        from django.db import connection

        from instances.models import Blueprint
        from orchestrio.models import Tenant

        tenant = Tenant.objects.get(pk="bench")
        for n in (1, 2, 3):
            Blueprint.objects.create(tenant=tenant, name=f"bp{n}", image_id="ami-0123456789abcdef0", instance_type="t3.micro")
        app = WSGIHandler()

        def call(target: str) -> str:
            environ = {
                "REQUEST_METHOD": "GET", "PATH_INFO": target, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
                "HTTP_HOST": "127.0.0.1:8000", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
                "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr, "HTTP_AUTHORIZATION": f"Bearer {token}",
            }  # fmt: skip
            status = []
            b"".join(app(environ, lambda line, headers, *_: status.append(line)))
            return status[0]

        print(f"machine: {_django.machine()}; database: {connection.vendor}; DEBUG off; best of {args.runs} runs of {args.calls}")
        for name, target in TARGETS.items():
            for _ in range(100):
                assert call(target).startswith("200"), (target, call(target))
            if args.profile == name:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(2000):
                    call(target)
                profile.disable()
                profile.dump_stats(f"/tmp/request_cpu_{name}.prof")
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
                pstats.Stats(profile).sort_stats("cumtime").print_stats(120)
            queries = []  # (request_started resets connection.queries: a wrapper sees each one)
            with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
                call(target)
            runs = []
            for _ in range(args.runs):
                started = time.process_time()
                for _ in range(args.calls):
                    call(target)
                runs.append((time.process_time() - started) * 1000 / args.calls)
            runs.sort()
            print(f"  GET {target:32} {runs[0]:.2f}–{runs[min(1, len(runs) - 1)]:.2f} ms CPU per request (best two of {args.runs}); {len(queries)} queries:")
            for query in queries:
                print(f"      {query[:160]}")
    finally:
        _serve.stop_all(processes)


if __name__ == "__main__":
    main()
