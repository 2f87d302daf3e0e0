"""Benchmark: backing up a fleet (issue 15) three ways, on servers this script starts for itself.

  1. backup_postgres on make airflow-cluster's CeleryExecutor (2 workers, 2 slots each), triggered over REST;
  2. a shell loop of `ansible-playbook backup-db.yml -e database=NAME --limit HOST`, one database after another;
  3. one `ansible-playbook backup-db.yml` over the whole inventory.

Each prints its wall time and tasks (databases) per minute; then the ratios against the targets (the cluster run
<= 1.5x the single ansible-playbook, >= 3x faster than the loop), the median time from queued to running of a
task found by idle workers (target <= 2 s; runs of one database per server, fewer tasks than worker slots), and
the fixed cost of one backup-db.yml run (bench/backup_fixed_cost.py's measure_fixed_cost on a fleet database).

    python bench/fleet.py                 # 3 servers x 34 databases (102)
    python bench/fleet.py --shape 3x10 --loop-sample 10    # a quick look: the loop timed on 10, scaled up
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from backup_fixed_cost import free_port, measure_fixed_cost, report  # noqa: E402

from sandbox.airflow_cluster import AirflowCluster  # noqa: E402
from sandbox.sandbox import fleet_inventory, fleet_shape, private_fleet  # noqa: E402

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
ENV = {**os.environ, "ANSIBLE_HOME": str(ROOT / ".ansible"),
       "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".ansible" / "collections"), "ANSIBLE_NOCOLOR": "1"}


def playbook(inventory: Path, *args: str) -> None:
    subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(ROOT / "playbooks" / "backup-db.yml"), *args],
                   cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def cluster_run(airflow: AirflowCluster, inventory: Path) -> tuple[float, list[dict]]:
    airflow.set_variable("runbook_inventory", str(inventory))
    started = time.perf_counter()
    run_id = airflow.trigger("backup_postgres")
    run = airflow.wait_run("backup_postgres", run_id, timeout=3600, poll=0.5)
    wall = time.perf_counter() - started
    if run["state"] != "success":
        raise SystemExit(f"backup_postgres ended {run['state']}: see {airflow.home / 'logs'}")
    return wall, [ti for ti in airflow.task_instances("backup_postgres", run_id) if ti["task_id"] == "backup"]


def queued_to_running(tis: list[dict]) -> list[float]:
    return [(datetime.fromisoformat(ti["start_date"]) - datetime.fromisoformat(ti["queued_when"])).total_seconds()
            for ti in tis if ti.get("queued_when") and ti.get("start_date")]


def line(name: str, seconds: float, tasks: int, note: str = "") -> str:
    return f"  {name:<34} {seconds:8.1f} s  {tasks / seconds * 60:7.1f} tasks/min{note}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shape", default="3x34", help="SERVERSxDATABASES (default 3x34: 102 databases)")
    parser.add_argument("--loop-sample", type=int, default=0,
                        help="time the shell loop on this many databases and scale it up (0: all)")
    parser.add_argument("--idle-runs", type=int, default=3, help="runs of one database per server (idle workers)")
    args = parser.parse_args()
    servers_wanted, per_server = fleet_shape(args.shape)
    work = Path(tempfile.mkdtemp(prefix="rr-bench-fleet-"))
    servers, airflow, redis, metadata = [], None, None, None
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from conftest import RedisServer, new_cluster

    try:
        servers = private_fleet(servers_wanted, per_server, free_port, "rr-bench-pg")
        inventory = work / "fleet.yml"
        inventory.write_text(fleet_inventory(servers, per_server, work, header="bench/fleet.py's fleet.",
                                             pg_backup_skip_if_newer_than=0))
        hosts = {f"fleet-pg{n}": [f"s{n}_db{i:02d}" for i in range(1, per_server + 1)]
                 for n in range(1, servers_wanted + 1)}
        targets = [(host, db) for host, dbs in hosts.items() for db in dbs]
        idle = work / "idle.yml"  # one database per server: fewer tasks than the workers' 4 slots
        idle.write_text(fleet_inventory(servers, 1, work, header="One database per server.",
                                        pg_backup_skip_if_newer_than=0))

        metadata, redis = new_cluster(), RedisServer()
        airflow = AirflowCluster(home=work / "airflow", port=free_port(), metadata=metadata, redis_port=redis.port,
                                 inventory=str(inventory), environ={
                                     "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                                     "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
                                     "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp")})
        airflow.up()
        while "backup_postgres" not in {d["dag_id"] for d in airflow.call("GET", "/dags?limit=100")["dags"]}:
            time.sleep(2)

        latencies = []
        for _ in range(args.idle_runs):
            latencies += queued_to_running(cluster_run(airflow, idle)[1])
        cluster_wall, tis = cluster_run(airflow, inventory)
        workers = sorted({ti["hostname"] for ti in tis})

        sample = targets[:args.loop_sample] if args.loop_sample else targets
        started = time.perf_counter()
        for host, db in sample:
            playbook(inventory, "-e", f"database={db}", "--limit", host)
        loop_wall = (time.perf_counter() - started) * len(targets) / len(sample)

        started = time.perf_counter()
        playbook(inventory)
        single_wall = time.perf_counter() - started

        first = servers[0]
        connection = {"login_host": "127.0.0.1", "login_port": first.port, "login_user": first.user,
                      "login_password": first.password}
        fixed = measure_fixed_cost(connection, "s1_db01", work / "fixed-cost", repeat=3)

        count = len(targets)
        scaled = f"  (timed on {len(sample)}, scaled)" if len(sample) < count else ""
        print(f"\n== bench/fleet.py: {count} databases on {servers_wanted} servers "
              f"({os.cpu_count()} cores; pool of {2} per server)")
        print(line("cluster (2 workers x 2 slots)", cluster_wall, count, f"  workers: {', '.join(workers)}"))
        print(line("shell loop of ansible-playbook", loop_wall, count, scaled))
        print(line("one ansible-playbook", single_wall, count))
        ratio_single, ratio_loop = cluster_wall / single_wall, loop_wall / cluster_wall
        print(f"  cluster / one ansible-playbook   {ratio_single:5.2f}x  (target <= 1.5x: "
              f"{'met' if ratio_single <= 1.5 else 'not met'})")
        print(f"  loop / cluster                   {ratio_loop:5.2f}x  (target >= 3x: "
              f"{'met' if ratio_loop >= 3 else 'not met'})")
        median = statistics.median(latencies)
        print(f"  queued -> running, idle workers  {median:5.2f} s median of {len(latencies)} "
              f"(max {max(latencies):.2f} s; target <= 2 s: {'met' if median <= 2 else 'not met'})")
        print(report(fixed, " of s1_db01, a fleet database"))
        print(json.dumps({"databases": count, "cluster_s": round(cluster_wall, 2), "loop_s": round(loop_wall, 2),
                          "single_playbook_s": round(single_wall, 2), "queued_to_running_median_s": round(median, 2),
                          "fixed_cost_s": round(fixed["fixed_cost"], 3)}))
    finally:
        if airflow is not None:
            airflow.down()
        for server in [*servers, *([metadata] if metadata else [])]:
            server.destroy()
        if redis is not None:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
