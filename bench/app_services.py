"""Benchmark: the application stop/start that recover-db adds, on a compose project with 3 backend containers,
against the raw `docker stop` + `docker start` of the same containers, in the same run, on a Docker daemon of its
own (the tests' docker_world: private socket, vfs, images FROM scratch with a static busybox).

  ours  recover-db.yml -e confirm=true on a wrecked database, with pg_app_services naming the compose service:
        the time of the tasks it runs for the application (the plan's check, the stop, the start), read from
        the JSON callback's per-task start and end, so the restore itself is not counted
  raw   docker stop c1 c2 c3; docker start c1 c2 c3 (what runbook 002 types: docker-compose stop/start backend)
Each runs --repeat times (default 5), interleaved; medians are compared. Target: ours <= 1.3x raw.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

import psycopg  # noqa: E402
import yaml  # noqa: E402
from docker_world import DockerDaemon  # noqa: E402
from emergency import BIN, free_port  # noqa: E402

from sandbox.pgcluster import PgCluster  # noqa: E402

APP_TASKS = ("Check the application's services", "Stop the application", "Start the application")


def task_seconds(document: dict, names: tuple[str, ...]) -> dict[str, float]:
    """Wall seconds per task name (summed over hosts), from the ansible.posix.json callback's output."""
    spent: dict[str, float] = {}
    for play in document["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"].split(" : ", 1)[-1]
            if name not in names:
                continue
            duration = task["task"].get("duration", {})
            if duration.get("start") and duration.get("end"):
                start, end = (datetime.datetime.fromisoformat(duration[k].replace("Z", "+00:00"))
                              for k in ("start", "end"))
                spent[name] = spent.get(name, 0.0) + (end - start).total_seconds()
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rr-bench-app-", dir="/tmp"))
    work.chmod(0o755)  # the cluster runs as postgres
    cluster = PgCluster(work / "pg", free_port())
    cluster.init()
    cluster.start()
    daemon = DockerDaemon()
    try:
        project = "benchchat"
        containers = daemon.compose_service(project, "backend", 3)
        daemon.wait_healthy(containers)
        names = [c.name for c in containers]
        with psycopg.connect(**cluster.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chat")
        with psycopg.connect(**cluster.conninfo("chat"), autocommit=True) as conn:
            conn.execute((ROOT / "sandbox/seed_chat.sql").read_text())
        inventory = work / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"postgres": {"hosts": {"benchdb": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "pg_connection": {"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": "postgres",
                              "login_password": cluster.password},
            "pg_databases": ["chat"], "pg_backup_root": str(work / "backups"),
            "runbook_audit_log": str(work / "audit.jsonl"),
            "pg_app_services": [{"type": "compose", "project": project, "service": "backend"}],
            "app_docker_host": daemon.host, "app_state_dir": str(work / "app")}}}}}}))
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}

        def playbook(name: str, *extra: str, json_out: bool = False) -> subprocess.CompletedProcess:
            run_env = {**env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"} if json_out else env
            proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / name),
                                   *extra], cwd=ROOT, env=run_env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
            return proc

        playbook("backup-db.yml")
        docker = ["docker", "-H", daemon.host]
        ours, raw, per_task = [], [], []
        for _ in range(args.repeat):
            with psycopg.connect(**cluster.conninfo("chat"), autocommit=True) as conn:
                conn.execute("DELETE FROM chat_messages")  # a wreck after the last recovery from the same backup:
            proc = playbook("recover-db.yml", "-e", "confirm=true", "-e", "pg_recover_force=true",  # force it
                            json_out=True)
            spent = task_seconds(json.loads(proc.stdout[proc.stdout.index("{"):]), APP_TASKS)
            assert set(spent) == set(APP_TASKS), spent
            per_task.append(spent)
            ours.append(sum(spent.values()))
            assert daemon.running(project, "backend") == sorted(names)

            start = time.perf_counter()
            subprocess.run([*docker, "stop", *names], check=True, capture_output=True)
            subprocess.run([*docker, "start", *names], check=True, capture_output=True)
            raw.append(time.perf_counter() - start)
            daemon.wait_healthy(containers)

        ours_median, raw_median = statistics.median(ours), statistics.median(raw)
        print(f"app stop/start on a compose project with 3 backend containers, medians of {args.repeat}")
        for name in APP_TASKS:
            print(f"  ours: {name:<36} {statistics.median(t[name] for t in per_task):6.2f} s")
        print(f"  ours (recover-db's app tasks)           {ours_median:6.2f} s")
        print(f"  raw  (docker stop + docker start)       {raw_median:6.2f} s")
        print(f"  ratio ours/raw                          {ours_median / raw_median:6.2f}x   (target <= 1.3x)")
    finally:
        daemon.stop()
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
