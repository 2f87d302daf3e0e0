"""Benchmark: retention on 300 CloudWatch log groups, against the runbook's way (one `aws logs
put-retention-policy` per group in a shell loop), in the same emulator, in the same run.

  ours   playbooks/rotate-logs.yml (the log group play): one paginated listing, the changes on a thread pool
  loop   `for g in ...; do aws logs put-retention-policy --log-group-name $g --retention-in-days N; done`
Each run sets a retention different from the one before, so every group changes every time. Target: ours >= 10x.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import yaml
from emergency import BIN, emulator_env, free_port, start_emulator, timed

DAYS = [30, 60, 90, 120, 150, 180, 365, 400, 545, 731]


def retentions(env: dict) -> set:
    logs = boto3.session.Session(region_name=env["AWS_DEFAULT_REGION"]).client(
        "logs", endpoint_url=env["AWS_ENDPOINT_URL"])
    found = set()
    for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix="/aws/lambda/bench-"):
        found.update(g.get("retentionInDays") for g in page["logGroups"])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (the CLI loop takes minutes)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="rr-bench-logs-"))
    port = free_port()
    env = emulator_env(port)
    os.environ.update(env)
    emulator = start_emulator(port)
    try:
        logs = boto3.session.Session(region_name="us-east-1").client("logs", endpoint_url=env["AWS_ENDPOINT_URL"])
        names = [f"/aws/lambda/bench-fn-{i:03d}" for i in range(args.groups)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: logs.create_log_group(logGroupName=n), names))
        inventory = base / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"aws": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "log_retention_prefixes": ["/aws/lambda/bench-"]}}}}}}))
        aws = shlex.quote(str(BIN / "aws"))
        print(f"{args.groups} log groups in the emulator\n", flush=True)
        days = iter(DAYS * 4)
        ours, loop = [], []
        for _run in range(args.repeat):
            wanted = next(days)
            ours.append(timed([str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/rotate-logs.yml",
                               "-e", f"log_retention_days={wanted}"], env))
            assert retentions(env) == {wanted}, "our run left a group without the retention"
            wanted = next(days)
            script = base / "loop.sh"
            script.write_text("set -e\n" + "".join(
                f"{aws} logs put-retention-policy --log-group-name {n} --retention-in-days {wanted}\n" for n in names))
            loop.append(timed(["bash", str(script)], env))
            assert retentions(env) == {wanted}
            print(f"ours {ours[-1]:.2f}s, CLI loop {loop[-1]:.2f}s", flush=True)
        ratio = statistics.median(loop) / statistics.median(ours)
        print(f"\nmedians of {args.repeat}: CLI loop {statistics.median(loop):.1f}s / "
              f"ours {statistics.median(ours):.2f}s = {ratio:.1f}x faster (target >= 10x: "
              f"{'met' if ratio >= 10 else 'NOT met'})")
        print(json.dumps({"log_retention_ratio": round(ratio, 1), "ours_s": round(statistics.median(ours), 2)}))
        return 0
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
