"""Benchmark: the fixed cost of one backup-db.yml run (issue 15), what a fleet pays once per database.

  fixed cost = wall time of `ansible-playbook playbooks/backup-db.yml -e database=NAME`
               - wall time of the raw `pg_dump -Fd -j2` of the same database at the same compression level
  target: <= 1.5 s, with the checksum verification of the new backup kept (the playbook's default).

`python bench/backup_fixed_cost.py` builds a pgbench database (scale 20, about 300 MB) on a throwaway cluster and
prints the medians of --repeat interleaved runs of each; --tasks adds one run's time per task (profile_tasks).
bench/fleet.py calls measure_fixed_cost() with a database of its own fleet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 1.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _libpq_env(connection: dict, database: str) -> dict:
    """The password goes in the child's environment, never on its command line."""
    return {**os.environ, "PGHOST": connection.get("login_host") or "127.0.0.1",
            "PGPORT": str(connection.get("login_port", 5432)), "PGUSER": connection.get("login_user", "postgres"),
            "PGPASSWORD": connection.get("login_password", ""), "PGDATABASE": database}


def write_inventory(path: Path, connection: dict, database: str, backup_root: Path, jobs: int,
                    compress_level: int) -> Path:
    """One local host backing up `database`; a new backup every run (skip_if_newer_than 0), default retention."""
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "pg_connection": connection, "pg_databases": [database], "pg_backup_root": str(backup_root),
            "pg_backup_skip_if_newer_than": "0", "pg_backup_jobs": jobs, "pg_backup_compress_level": compress_level}
    path.write_text(json.dumps({"all": {"children": {"postgres": {"hosts": {"bench": host}}}}}))
    path.chmod(0o600)
    return path


def _timed(command: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure_fixed_cost(connection: dict, database: str, work_dir: str | os.PathLike, repeat: int = 5, jobs: int = 2,
                       compress_level: int = 1, pg_dump: str | None = None) -> dict:
    """Medians of `repeat` interleaved runs of the raw dump and of backup-db.yml; `connection` is the inventory's
    pg_connection (login_host, login_port, login_user, login_password). Returns seconds:
    {"raw_dump", "playbook", "fixed_cost", "target", "met", "samples": {"raw_dump": [...], "playbook": [...]}}."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    backup_root, raw_dir = work / "backups", work / "raw-dump"
    inventory = write_inventory(work / "fixed-cost-inventory.json", connection, database, backup_root, jobs,
                                compress_level)
    pg_dump = pg_dump or shutil.which("pg_dump") or "pg_dump"
    raw_command = [pg_dump, "--format=directory", f"--jobs={jobs}", f"--compress={compress_level}",
                   f"--file={raw_dir}", database]
    playbook_command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                        str(ROOT / "playbooks" / "backup-db.yml"), "-e", f"database={database}"]
    env = _libpq_env(connection, database)
    samples: dict[str, list[float]] = {"raw_dump": [], "playbook": []}
    steps = [("raw_dump", lambda: _timed(raw_command, env)), ("playbook", lambda: _timed(playbook_command))]
    for round_number in range(repeat):
        # Alternate which goes first, so neither always finds the page cache warmer.
        for name, run in (steps if round_number % 2 == 0 else steps[::-1]):
            shutil.rmtree(raw_dir, ignore_errors=True)
            os.sync()
            samples[name].append(run())
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw, playbook = statistics.median(samples["raw_dump"]), statistics.median(samples["playbook"])
    return {"raw_dump": raw, "playbook": playbook, "fixed_cost": playbook - raw, "target": TARGET_SECONDS,
            "met": playbook - raw <= TARGET_SECONDS, "samples": samples}


def task_profile(connection: dict, database: str, work_dir: str | os.PathLike, jobs: int = 2,
                 compress_level: int = 1) -> str:
    """One more playbook run with the profile_tasks callback: the time of each task, slowest first."""
    work = Path(work_dir)
    inventory = write_inventory(work / "fixed-cost-inventory.json", connection, database, work / "backups", jobs,
                                compress_level)
    run = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                          str(ROOT / "playbooks" / "backup-db.yml"), "-e", f"database={database}"],
                         cwd=ROOT, env={**os.environ, "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"},
                         check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return run.stdout.rsplit("TASKS RECAP", 1)[-1].split("\n", 2)[-1].rstrip()


def report(result: dict, label: str = "") -> str:
    lines = [f"fixed cost of one backup-db.yml run{label} (medians of {len(result['samples']['playbook'])} runs)",
             f"  raw pg_dump -Fd -j2     {result['raw_dump']:6.2f} s",
             f"  backup-db.yml playbook  {result['playbook']:6.2f} s",
             f"  fixed cost              {result['fixed_cost']:6.2f} s   target <= {result['target']:.1f} s   "
             f"{'met' if result['met'] else 'NOT MET'}"]
    return "\n".join(lines)


def main() -> int:
    sys.path[:0] = [str(ROOT)]
    import psycopg

    from sandbox.pgcluster import PgCluster, pg_bindir

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (default 20, about 300 MB)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--level", type=int, default=1, help="compression level, the role's default (1)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; the medians are compared")
    parser.add_argument("--tasks", action="store_true", help="also print one run's time per task")
    parser.add_argument("--keep", action="store_true", help="keep the cluster and files for inspection")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="rr-fixed-cost-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg", free_port(), settings={"max_wal_size": "'4GB'", "checkpoint_timeout": "'30min'"})
    database = "bench"
    try:
        cluster.start()
        env = cluster.env()
        subprocess.run([str(pg_bindir() / "createdb"), database], env=env, check=True)
        print(f"building: pgbench -i -s {args.scale} ...", flush=True)
        subprocess.run([str(pg_bindir() / "pgbench"), "-i", "-q", "-s", str(args.scale), database], env=env,
                       check=True, capture_output=True)
        with psycopg.connect(**cluster.conninfo(database), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        print(f"database size {size}; jobs={args.jobs}, compression level {args.level}", flush=True)
        connection = {"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": "postgres",
                      "login_password": cluster.password}
        result = measure_fixed_cost(connection, database, base / "work", repeat=args.repeat, jobs=args.jobs,
                                    compress_level=args.level, pg_dump=str(pg_bindir() / "pg_dump"))
        print(json.dumps({k: [round(v, 2) for v in values] for k, values in result["samples"].items()}))
        print(report(result, f" of a {size} database"))
        if args.tasks:
            print(task_profile(connection, database, base / "work", jobs=args.jobs, compress_level=args.level))
        return 0
    finally:
        if args.keep:
            print(f"kept: {base} (port {cluster.port})")
        else:
            cluster.destroy()
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
