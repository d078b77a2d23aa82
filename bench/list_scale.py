"""Benchmark: listing instances when there are many.

    .venv/bin/python bench/list_scale.py                  # 10,000 in the tenant, 100,000 in the database
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrio_bench .venv/bin/python bench/list_scale.py
    .venv/bin/python bench/list_scale.py --tenant-instances 2000 --total 20000 --requests 200

Creates the rows with bulk_create (the measured tenant's instances carry unfinished operations and
custom domains here and there; the other tenants' rows fill the table), then on a gunicorn server
(Procfile settings, DEBUG off, a private redis-server) times sequential requests over one
keep-alive connection, in blocks of 100 taken in turn: `GET /api/v1/instances?limit=50` (the
first page), a deep page (`offset=5000`) and `GET /api/v1/instances/{id}` (so that the machine's
other work slows all three alike); reports p50/p99 and the ratio of the list's p50 to the single get's. Also prints the
database's plans for the list's queries (count, page of ids, records). Bounded: fixed
counts, timeouts, every process stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402
import _serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenant-instances", type=int, default=10_000)
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    _serve.production_env()
    os.environ["RATE_LIMIT_READ"] = "1000000000/m"
    processes: list = []
    try:
        os.environ["REDIS_URL"] = _serve.start_redis(processes)
        _django.setup()
        from django.conf import settings
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from domains.models import CustomDomain
        from instances.models import Blueprint, Instance, Operation
        from instances.selectors import instances_with_record_in_order, listed_instances, with_record
        from orchestrio.crypto import encrypt
        from orchestrio.models import Tenant

        postgres = connection.vendor == "postgresql"
        tenant, token = _django.tenant_with_token(api_requests_per_minute=1_000_000_000)
        auth = {"Authorization": f"Bearer {token}"}

        started = time.perf_counter()
        blueprint = Blueprint.objects.get(name="OpenClaw", tenant=None)
        key = encrypt("oak_bench")
        now = timezone.now()
        others = max(0, args.total - args.tenant_instances)
        tenants = [tenant] + Tenant.objects.bulk_create(
            [Tenant(id=f"other-{n:02d}", name=f"other {n}", plan_id="team") for n in range(max(1, -(-others // args.tenant_instances)))]
        )  # fmt: skip
        owners = [tenant] * args.tenant_instances + [tenants[1 + n // args.tenant_instances] for n in range(others)]
        batch = []
        for n, owner_tenant in enumerate(owners):
            batch.append(
                Instance(
                    instance_id=f"i-{owner_tenant.pk}-{n:06d}", tenant=owner_tenant, blueprint=blueprint, plan_id="openclaw-basic",
                    region_id="local", provider="local", instance_type="t3.small", state=["running", "stopped", "stopping"][n % 3],
                    ip_address="127.0.0.1", port=9, agent_key_encrypted=key, labels={"n": str(n)}, created_at=now - timedelta(seconds=n),
                )
            )  # fmt: skip
            if len(batch) == 5000:
                Instance.objects.bulk_create(batch)
                batch = []
        Instance.objects.bulk_create(batch)
        # Every instance was created by an operation that finished: the history the unfinished
        # operations are found among.
        for start in range(0, len(owners), 5000):
            Operation.objects.bulk_create(
                [Operation(instance_id=pk, tenant_id=tenant_id, kind="create", status="succeeded", requested_by="bench", requested_by_type="system", finished_at=now)
                 for pk, tenant_id in Instance.objects.order_by("pk").values_list("pk", "tenant_id")[start : start + 5000]]
            )  # fmt: skip
        mine = list(Instance.objects.filter(tenant=tenant, state="stopping").values_list("pk", flat=True))
        Operation.objects.bulk_create(
            [Operation(instance_id=pk, tenant=tenant, kind="stop", status="running", requested_by="bench", requested_by_type="system") for pk in mine],
            batch_size=5000,
        )  # fmt: skip
        CustomDomain.objects.bulk_create(
            [CustomDomain(instance_id=pk, tenant=tenant, domain=f"app{pk}.example.com", verification_token="t") for pk in mine[::4]], batch_size=5000
        )  # fmt: skip
        if postgres:
            with connection.cursor() as cursor:
                # What autovacuum leaves behind in production: statistics and the visibility map
                # (without it, counting the tenant's instances reads every heap page: 6 ms, not 1.5).
                cursor.execute("VACUUM ANALYZE")
        rows_seconds = time.perf_counter() - started

        listed = listed_instances(tenant=tenant).values_list("instance_id", flat=True)  # as the API's list reads them
        page = list(listed[:50])
        records = instances_with_record_in_order(tenant=tenant, instance_ids=page)
        assert [instance.instance_id for instance in records] == page
        plan = "\n".join((
            "the count:", listed.order_by().explain(), "the page's ids:", listed[:50].explain(),
            "the page's records:", with_record(Instance.objects.filter(instance_id__in=page, destroyed_at__isnull=True)).order_by().explain(),
        ))  # fmt: skip
        single_id = Instance.objects.filter(tenant=tenant).order_by("pk").values_list("instance_id", flat=True)[args.tenant_instances // 2]
        client = Client(HTTP_HOST="127.0.0.1")
        client.get("/api/v1/tenant", HTTP_AUTHORIZATION=auth["Authorization"])  # the token's first use writes last_used_at
        queries = {}
        for offset in (0, 5000):
            with CaptureQueriesContext(connection) as captured:
                check = client.get("/api/v1/instances", {"limit": 50, "offset": offset}, HTTP_AUTHORIZATION=auth["Authorization"]).json()
            assert check["count"] == args.tenant_instances and len(check["results"]) == 50, check.get("count")
            queries[offset] = len(captured)
        # As for 5 or 50 instances (tests/instances/test_list_queries.py): the token, the count, the page's ids, its records.
        assert queries[0] == queries[5000] == 4, queries

        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "orchestrio.settings"}
        base = _serve.start_web("gunicorn", env, processes)
        paths = {
            "single GET /instances/{id}": f"/api/v1/instances/{single_id}",
            "list ?limit=50": "/api/v1/instances?limit=50",
            "list ?limit=50&offset=5000": "/api/v1/instances?limit=50&offset=5000",
        }
        results = dict(zip(paths, _serve.load_blocks([(base + path, auth) for path in paths.values()], requests=args.requests)))
        db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(f"machine: {_django.machine()}; database: {db}; gunicorn gthread 2x8, DEBUG off, redis-server")
        print(f"rows: {args.tenant_instances} instances in the tenant ({len(mine)} with an unfinished operation, {len(mine[::4])} with a domain), {Instance.objects.count()} in the database; created in {rows_seconds:.1f} s")
        print(f"queries per page of 50 (first and at offset 5,000): {queries[0]}, {queries[5000]}")
        print("plans of the list's queries:\n  " + plan.replace("\n", "\n  "))
        print(f"{args.requests} sequential requests of each, in blocks of 100 taken in turn over one keep-alive connection:")
        for name, latencies in results.items():
            print(f"  {name:28}: p50 {statistics.median(latencies):6.2f} ms, p99 {_serve.percentile(latencies, 99):6.2f} ms")
        single = statistics.median(results["single GET /instances/{id}"])
        print(f"list p50 / single p50: {statistics.median(results['list ?limit=50']) / single:.2f}x (deep page {statistics.median(results['list ?limit=50&offset=5000']) / single:.2f}x)")
    finally:
        _serve.stop_all(processes)


if __name__ == "__main__":
    main()
