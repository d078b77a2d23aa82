"""Benchmark: where an API GET's time goes, in-process.

    .venv/bin/python bench/api_breakdown.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrio_bench .venv/bin/python bench/api_breakdown.py

Calls Django's `WSGIHandler` directly (no server, no socket to the client: what is left is the
application's own work) with a fresh request environ each time, and reports the p50 of: the bare
view of bench/urls.py (the same JSON, no authentication or database); a DRF view answering the
same JSON with nothing to check; one with the API's authentication and permission but no rate
limit; one with the rate limit too; `GET /api/v1/instances/{id}` itself; and then the parts on
their own: the token lookup, the rate-limit round trip (three counters) to a private
redis-server, the instance read, its serialization and rendering, and a `SELECT 1`. Last, what
each round trip costs inside a request: the token-authenticated DRF view again with the token
query, then the Redis round trip, replaced by its answer (a round trip costs more there than in a
loop of its own: the other process has gone to sleep in between). Bounded: fixed counts, every
process stopped at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402
import _serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    processes: list = []
    try:
        token, body = _django.api_bench(processes)
        from django.core.handlers.wsgi import WSGIHandler
        from django.db import connection
        from django.urls import clear_url_caches, path
        from rest_framework.permissions import AllowAny
        from rest_framework.response import Response
        from rest_framework.views import APIView

        from instances.api.serializers import InstanceSerializer
        from instances.selectors import live_instance_with_record
        from orchestrio.api import ratelimit
        from orchestrio.api.renderers import JSONRenderer
        from orchestrio.api.viewsets import TenantApiView
        from orchestrio import auth as token_auth
        from orchestrio.auth import resolve_token

        class Plain(APIView):
            authentication_classes: list = []
            permission_classes = [AllowAny]
            throttle_classes: list = []

            def get(self, request):
                return Response(body)

        class Authenticated(APIView):
            throttle_classes: list = []

            def get(self, request):
                return Response(body)

        class RateLimited(TenantApiView):
            def get(self, request):
                return Response(body)

        import bench.urls

        bench.urls.urlpatterns[:0] = [
            path("bench/drf", Plain.as_view()), path("bench/drf-auth", Authenticated.as_view()), path("bench/drf-auth-rate", RateLimited.as_view()),
        ]  # fmt: skip
        clear_url_caches()
        app = WSGIHandler()

        def call(target: str, authenticated: bool = True) -> str:
            environ = {
                "REQUEST_METHOD": "GET", "PATH_INFO": target, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
                "HTTP_HOST": "127.0.0.1:8000", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
                "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr,
            }  # fmt: skip
            if authenticated:
                environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            status = []
            b"".join(app(environ, lambda line, headers, *_: status.append(line)))
            return status[0]

        def p50(name: str, work, calls: int = args.calls) -> float:
            for _ in range(200):
                work()
            latencies = []
            for _ in range(calls):
                started = time.perf_counter()
                work()
                latencies.append((time.perf_counter() - started) * 1000)
            value = statistics.median(latencies)
            print(f"  {name:58}: {value * 1000:7.1f} µs")
            return value

        for target, authenticated in (("/bench/bare", False), ("/bench/drf", False), ("/bench/drf-auth", True), ("/bench/drf-auth-rate", True), ("/api/v1/instances/bench-api", True)):
            assert call(target, authenticated).startswith("200"), target
        print(f"machine: {_django.machine()}; database: {connection.vendor}; Redis: redis-server; DEBUG off; p50 of {args.calls} calls")
        print("whole requests (WSGIHandler):")
        bare = p50("bare view", lambda: call("/bench/bare", False))
        p50("DRF view, nothing checked", lambda: call("/bench/drf", False))
        p50("DRF view, token authentication and permission", lambda: call("/bench/drf-auth"))
        p50("DRF view, authentication, permission and rate limit", lambda: call("/bench/drf-auth-rate"))
        api = p50("GET /api/v1/instances/{id}", lambda: call("/api/v1/instances/bench-api"))
        print(f"  the API adds {1000 * (api - bare):.1f} µs to the bare view")
        print("its parts:")
        p50("token lookup (resolve_token)", lambda: resolve_token(token))
        counters = [
            ratelimit.Counter(group="endpoint", key="token:bench", rate="1000000000/m"),
            ratelimit.Counter(group="plan", key="token:bench", rate="1000000000/m"),
        ]  # fmt: skip
        p50("rate-limit round trip (2 counters, one pipeline)", lambda: ratelimit.count(counters))
        p50("instance read (live_instance_with_record)", lambda: live_instance_with_record(tenant="bench", instance_id="bench-api"))
        instance = live_instance_with_record(tenant="bench", instance_id="bench-api")
        p50("serializing the record", lambda: InstanceSerializer(instance).data)
        p50("rendering it (the API's JSONRenderer)", lambda: JSONRenderer().render(body))

        def select_one():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchall()

        p50("SELECT 1 (a database round trip)", select_one)
        print("inside a request (the token-authenticated DRF view, each twice, in turn):")
        resolved = resolve_token(token)
        stubs = {
            "as it is": {},
            "the token query replaced by its answer": {"resolve_token": lambda credentials: resolved},
        }
        real = {name: getattr(token_auth, name) for name in ("resolve_token",)}
        try:
            for _ in range(2):
                for label, stub in stubs.items():
                    for name, function in real.items():
                        setattr(token_auth, name, stub.get(name, function))
                    p50(label, lambda: call("/bench/drf-auth"))
        finally:
            for name, function in real.items():
                setattr(token_auth, name, function)
    finally:
        _serve.stop_all(processes)


if __name__ == "__main__":
    main()
