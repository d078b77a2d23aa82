"""What moto's EC2 costs as its fleet grows: the context for bench/lifecycle_throughput.py.

    .venv/bin/python bench/moto_describe.py

Starts the same moto server as the lifecycle benchmark, launches 10, then 250, 500 and 1,000
machines, and times the two DescribeInstances calls a create makes: by instance id (waiting for
`running`) and by the `orchestrio:instance_pk` tag (finding a machine an earlier attempt launched).
moto scans every machine of the region for a tag filter; EC2 does not. Bounded: 1,000 machines,
ten calls of each kind per step, the server stopped at the end.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django  # noqa: E402
import _serve  # noqa: E402
from lifecycle_throughput import start_moto  # noqa: E402

IMAGE = "ami-0a1b2c3d4e5f67890"  # tests/instances/moto_amis.json


def timed(call, times: int = 10) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    import boto3

    processes: list = []
    try:
        url = start_moto(processes)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
        print(f"machine: {_django.machine()}; moto server (EC2), one process")
        ids: list[str] = []
        for fleet in (10, 250, 500, 1000):
            while len(ids) < fleet:
                count = min(100, fleet - len(ids))
                tags = [{"ResourceType": "instance", "Tags": [{"Key": "orchestrio:instance_pk", "Value": str(len(ids))}]}]
                launched = ec2.run_instances(ImageId=IMAGE, MinCount=count, MaxCount=count, InstanceType="t3.small", TagSpecifications=tags)
                ids += [machine["InstanceId"] for machine in launched["Instances"]]
            by_id = timed(lambda: ec2.describe_instances(InstanceIds=[ids[0]]))
            tag_filter = [{"Name": "tag:orchestrio:instance_pk", "Values": ["5"]}, {"Name": "instance-state-name", "Values": ["pending", "running"]}]
            by_tag = timed(lambda: ec2.describe_instances(Filters=tag_filter))
            print(f"{len(ids):5} machines: DescribeInstances by id p50 {by_id:6.1f} ms, by tag p50 {by_tag:6.1f} ms")
    finally:
        _serve.stop_all(processes)


if __name__ == "__main__":
    main()
