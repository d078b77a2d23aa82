"""Benchmark: instance creates end to end, through the API, two workers and the AWS provider.

    .venv/bin/python bench/lifecycle_throughput.py                     # 1,000 creates, SQLite (WAL)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrio_bench .venv/bin/python bench/lifecycle_throughput.py
    .venv/bin/python bench/lifecycle_throughput.py --creates 300 --worker-class rq.worker.Worker   # RQ's forking worker

Starts a private redis-server, one shared moto server (`ThreadedMotoServer`, in its own process)
standing in for EC2, a gunicorn web server as in the Procfile and `--workers` worker processes
(`manage.py rqworker default --worker-class orchestrio.worker.SimpleWorker`, the Procfile's
worker; `--worker-class rq.worker.Worker` for RQ's default, which forks a work horse per job). `--clients` threads POST the creates to
`/api/v1/instances` (region `iad`, a blueprint with an AMI, subnet and security group in moto);
each becomes an operation that a worker runs: RunInstances with its ClientToken and tags, wait
for `running`, record the machine (the readiness probe is off: moto's machines run no agent).
Reports the API's accept rate, end-to-end operations per second (first request to last
operation finished), and the queueing delay (operation created_at → started_at) p50/p99.
Bounded: fixed counts, a deadline for the operations to finish, every process stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402
import _serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MOTO = "import sys, time; from moto.server import ThreadedMotoServer; ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1])).start(); time.sleep(1e9)"


def start_moto(processes: list) -> str:
    port = _serve.free_port()
    env = {**os.environ, "MOTO_AMIS_PATH": str(ROOT / "tests" / "instances" / "moto_amis.json")}
    proc = subprocess.Popen([sys.executable, "-c", MOTO, str(port)], env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(proc)
    url = f"http://127.0.0.1:{port}"
    _serve.wait_up(url, proc, "/moto-api/")
    return url


def aws_network() -> dict:
    """What the blueprint needs in moto: the AMI of tests/instances/moto_amis.json, a subnet, a
    security group and an instance profile."""
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.0.0/17")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="orchestrio-agents", Description="agents", VpcId=vpc)["GroupId"]
    boto3.client("iam").create_instance_profile(InstanceProfileName="orchestrio-ssm")
    return {"image_id": "ami-0a1b2c3d4e5f67890", "subnet_ids": [subnet], "security_group_ids": [group], "iam_instance_profile": "orchestrio-ssm"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--deadline", type=int, default=900, help="seconds for the operations to finish")
    parser.add_argument("--worker-class", default="orchestrio.worker.SimpleWorker", help="the Procfile's (no fork per job); rq.worker.Worker forks per job")
    args = parser.parse_args()
    _serve.production_env()
    os.environ.update(
        RATE_LIMIT_WRITE="1000000/m", RATE_LIMIT_READ="1000000/m", ENABLED_PROVIDERS="local,aws", INSTANCE_READY_CHECK="0",
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
    )  # fmt: skip
    processes: list = []
    try:
        os.environ["REDIS_URL"] = _serve.start_redis(processes)
        os.environ["AWS_ENDPOINT_URL"] = start_moto(processes)
        _django.setup()
        from django.conf import settings

        from instances.models import Blueprint, Instance, Operation

        tenant, token = _django.tenant_with_token(api_requests_per_minute=None, max_instances=None, max_running_instances=None)
        Blueprint.objects.create(tenant=tenant, name="OnAws", key_name="", **aws_network())
        auth = {"Authorization": f"Bearer {token}"}

        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "orchestrio.settings"}
        base = _serve.start_web("gunicorn", env, processes)
        worker = [sys.executable, "manage.py", "rqworker", "default", "--worker-class", args.worker_class]
        for _ in range(args.workers):
            processes.append(subprocess.Popen(worker, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        accepted: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        numbers = iter(range(args.creates))

        def client() -> None:
            with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
                while True:
                    with lock:
                        n = next(numbers, None)
                    if n is None:
                        return
                    t = time.perf_counter()
                    response = http.post("/api/v1/instances", json={"instance_id": f"lc-{n:05d}", "blueprint_name": "OnAws", "region": "iad"})
                    with lock:
                        (accepted if response.status_code == 201 else failures).append(
                            (time.perf_counter() - t) * 1000 if response.status_code == 201 else f"{response.status_code} {response.text[:200]}"
                        )

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        posted = time.perf_counter() - started
        if failures:
            raise SystemExit(f"{len(failures)} creates refused, e.g. {failures[0]}")
        deadline = time.monotonic() + args.deadline
        unfinished = 0
        while unfinished := Operation.objects.filter(kind="create", status__in=["queued", "running"]).count():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # At the deadline, the figures of the operations that finished (and how many did not).
        ops = list(Operation.objects.filter(kind="create", finished_at__isnull=False).values("status", "created_at", "started_at", "finished_at", "error_message"))
        running = Instance.objects.filter(state="running", provider_instance_id__startswith="i-").count()
        failed = [op for op in ops if op["status"] != "succeeded"]
        first = min(op["created_at"] for op in ops)
        last = max(op["finished_at"] for op in ops)
        elapsed = (last - first).total_seconds()
        delays = [(op["started_at"] - op["created_at"]).total_seconds() * 1000 for op in ops if op["started_at"]]
        runs = [(op["finished_at"] - op["started_at"]).total_seconds() * 1000 for op in ops if op["started_at"]]
        db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(f"machine: {_django.machine()}; database: {db}; redis-server; moto server (EC2); gunicorn gthread 2x8; {args.workers} x `rqworker default --worker-class {args.worker_class}`")
        print(f"{args.creates} creates from {args.clients} client threads: accepted in {posted:.1f} s ({args.creates / posted:.0f}/s), POST p50 {statistics.median(accepted):.1f} ms, p99 {_serve.percentile(accepted, 99):.1f} ms")
        print(f"operations: {len(ops) - len(failed)} succeeded, {len(failed)} failed{' (e.g. ' + failed[0]['error_message'][:120] + ')' if failed else ''}; {running} instances running on moto machines")
        print(f"end to end: {elapsed:.1f} s from the first operation recorded to the last finished = {len(ops) / elapsed:.1f} operations/s")
        print(f"queueing delay (created_at -> started_at): p50 {statistics.median(delays):.0f} ms, p99 {_serve.percentile(delays, 99):.0f} ms")
        print(f"job run time (started_at -> finished_at): p50 {statistics.median(runs):.0f} ms, p99 {_serve.percentile(runs, 99):.0f} ms")
        # moto's DescribeInstances scans every machine of the region: its jobs slow as the fleet grows.
        in_order = [run for _, run in sorted(zip([op["finished_at"] for op in ops if op["started_at"]], runs))]
        for start in range(0, len(in_order), 250):
            chunk = in_order[start : start + 250]
            print(f"  job run time p50 of the operations {start + 1}-{start + len(chunk)} to finish: {statistics.median(chunk):.0f} ms")
        if unfinished:
            raise SystemExit(f"{unfinished} operations unfinished after {args.deadline}s (the figures above are of the finished ones)")
    finally:
        _serve.stop_all(processes)


if __name__ == "__main__":
    main()
