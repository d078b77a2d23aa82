"""Set up Django for a benchmark: a throwaway SQLite database (or DATABASE_URL's) and the
embedded queue, migrated, in a temporary directory that is removed afterwards. A PostgreSQL
database (DATABASE_URL) is emptied and re-seeded with the catalogue first: give the benchmarks a
database of their own (`createdb -h 127.0.0.1 -U postgres orchestrio_bench`)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup() -> None:
    sys.path.insert(0, str(ROOT))
    workdir = tempfile.mkdtemp(prefix="orchestrio-bench-")
    # mkdtemp makes it 0700: the sandboxed instance (a uid of its own) must traverse it to reach
    # its agent, as tests/settings.py does for the suite's.
    os.chmod(workdir, 0o711)
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrio.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["ORCHESTRIO_VAR_DIR"] = workdir
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    if connection.vendor == "postgresql":
        from billing import catalogue as billing_catalogue
        from orchestrio.models import SubscriptionPlan
        from instances import catalogue as instance_catalogue
        from instances.models import Blueprint, InstancePlan, Region

        call_command("flush", interactive=False, verbosity=0)
        billing_catalogue.seed(SubscriptionPlan)
        instance_catalogue.seed(InstancePlan, Region, Blueprint)


def tenant_with_token(**plan_changes) -> tuple:
    """The benchmarks' tenant ("bench", on the Team plan changed by `plan_changes`) and an owner's
    API token for it (plaintext)."""
    from orchestrio.models import SubscriptionPlan
    from orchestrio import services
    from orchestrio.tenancy import Actor, Principal

    if plan_changes:
        SubscriptionPlan.objects.filter(pk="team").update(**plan_changes)
    tenant = services.tenant_create(tenant_id="bench", name="bench", owner_email="bench@example.com", plan_id="team", actor=Actor.system("bench"))
    owner = tenant.memberships.get().user
    _, token = services.api_token_create(principal=Principal(tenant=tenant, role="owner", user=owner), name="bench")
    return tenant, token


def api_bench(processes: list) -> tuple[str, dict]:
    """The common start of the API benchmarks (api_overhead, api_breakdown): production settings
    with the read rate limit out of the way (the plan's per-minute ceiling stays on, just high: its
    counter is part of the work), a private redis-server (appended to `processes`), Django, the
    tenant `bench` with an owner's token, and its running instance `bench-api`. The instance's API
    record is written to the file BENCH_BARE_JSON names, which bench/urls.py's bare view answers.
    Returns the token (plaintext) and the record."""
    import _serve

    _serve.production_env()
    os.environ["RATE_LIMIT_READ"] = "1000000000/m"
    record_dir = tempfile.mkdtemp(prefix="orchestrio-bench-record-")
    atexit.register(shutil.rmtree, record_dir, ignore_errors=True)
    record = Path(record_dir) / "record.json"
    os.environ["BENCH_BARE_JSON"] = str(record)
    os.environ["REDIS_URL"] = _serve.start_redis(processes)
    setup()
    from instances.api.serializers import InstanceSerializer
    from instances.models import Blueprint, Instance
    from instances.selectors import live_instance_with_record

    tenant, token = tenant_with_token(api_requests_per_minute=1_000_000_000)
    Instance.objects.create(
        instance_id="bench-api", tenant=tenant, blueprint=Blueprint.objects.get(name="OpenClaw", tenant=None), plan_id="openclaw-basic",
        region_id="local", provider="local", instance_type="t3.small", state="running", ip_address="127.0.0.1", port=9,
        labels={"env": "bench", "team": "core"},
    )  # fmt: skip
    # As the API reads and renders it (json round trip: the plain types a client gets back).
    body = json.loads(json.dumps(InstanceSerializer(live_instance_with_record(tenant=tenant, instance_id="bench-api")).data))
    record.write_text(json.dumps(body))
    return token, body


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"
