"""Benchmark: our backup, recovery and restore-level verification against the raw tools, measured in
the same run on the same throwaway cluster, printed as ratios (make bench, BENCH_MB=300).

Data: a pgbench database plus a table of incompressible random bytes (--mb), so compression costs.
  backup        ours (pg_backup: snapshot, row counts, sha256, manifest)  vs  pg_dump -Fd -j2 at the same level
                                                                          vs  the runbooks' pg_dump | gzip
  recovery      ours (checksums, staging restore, row counts, ANALYZE, swap, probe)  vs  createdb + pg_restore -j2
  verification  ours (checksum + catalog + scratch restore + row counts)  vs  createdb + pg_restore -j2 + count(*)
Our numbers are the module logic (what the playbook's module runs); one playbook run is shown for its overhead.
Each measure runs --repeat times (default 5), interleaved, with a sync before each; medians are compared.
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
sys.path[:0] = [str(ROOT), str(ROOT / ".ansible" / "collections")]

import psycopg  # noqa: E402

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore  # noqa: E402
from ansible_collections.runbook.recovery.plugins.module_utils.pg_backup import BackupOptions, run_backup  # noqa: E402
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import (  # noqa: E402
    Recovery,
    catalog_problems,
    checksum_problems,
    verify_by_restore,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams, pg_tool  # noqa: E402
from sandbox.pgcluster import PgCluster, pg_bindir  # noqa: E402

DB = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def sh(command: str, env: dict) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, check=True, stdout=subprocess.DEVNULL)


def build_database(cluster: PgCluster, random_mb: int, scale: int) -> None:
    env = cluster.env()
    subprocess.run([str(pg_bindir() / "createdb"), DB], env=env, check=True)
    subprocess.run([str(pg_bindir() / "pgbench"), "-i", "-q", "-s", str(scale), DB], env=env, check=True,
                   capture_output=True)
    chunk = 1 << 20
    with psycopg.connect(**cluster.conninfo(DB), autocommit=True) as conn:
        conn.execute("CREATE TABLE random_blobs (id int PRIMARY KEY, payload bytea NOT NULL)")
        with conn.cursor().copy("COPY random_blobs (id, payload) FROM STDIN") as copy:
            for i in range(random_mb):
                copy.write_row((i, os.urandom(chunk)))
        conn.execute("VACUUM ANALYZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=int, default=300, help="size of the random-bytes table in MB (default 300)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (default 10, about 150 MB)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--level", type=int, default=1, help="compression level for ours and raw -Fd (default 1)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measure; the median is reported")
    parser.add_argument("--keep", action="store_true", help="keep the cluster and files for inspection")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="rr-bench-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg", free_port(), settings={"max_wal_size": "'4GB'", "checkpoint_timeout": "'30min'"})
    results: dict[str, float] = {}
    try:
        cluster.start()
        print(f"building: pgbench scale {args.scale} + {args.mb} MB of random bytes ...", flush=True)
        build_database(cluster, args.mb, args.scale)
        with psycopg.connect(**cluster.conninfo(DB)) as conn:
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        print(f"database size {size}; jobs={args.jobs}, compression level {args.level}\n", flush=True)

        env = cluster.env(DB)
        params = ConnParams(host="127.0.0.1", port=cluster.port, user="postgres", password=cluster.password)
        store = LocalStore(str(base / "backups"))
        pg_dump, pg_restore = pg_tool("pg_dump"), pg_tool("pg_restore")
        drop = f"{pg_bindir() / 'dropdb'} --if-exists --force"
        createdb = str(pg_bindir() / "createdb")

        def raw_dump_dir():
            shutil.rmtree(base / "raw_dir", ignore_errors=True)
            sh(f"{pg_dump} -Fd -j{args.jobs} -Z{args.level} -f {base}/raw_dir {DB}", env)

        def ours_backup():
            run_backup(params, store, BackupOptions(database=DB, jobs=args.jobs, compress_level=args.level,
                                                    keep_last=1), check_mode=False)

        def raw_dump_gzip():
            sh(f"{pg_dump} {DB} | gzip > {base}/runbook.sql.gz", env)

        count_all = ("psql -qAt -d bench_raw_verify -c \"SELECT count(*) FROM pgbench_accounts\" "
                     "-c \"SELECT count(*) FROM pgbench_branches\" -c \"SELECT count(*) FROM pgbench_tellers\" "
                     "-c \"SELECT count(*) FROM pgbench_history\" -c \"SELECT count(*) FROM random_blobs\"")

        def raw_verify():
            backup = store.resolve(DB, "latest")
            sh(f"{createdb} bench_raw_verify && {pg_restore} -j{args.jobs} -d bench_raw_verify {backup.path} && "
               f"{count_all} && {drop} bench_raw_verify", env)

        def ours_verify():
            backup = store.resolve(DB, "latest")
            problems = checksum_problems(backup) + catalog_problems(backup) + verify_by_restore(params, backup,
                                                                                                args.jobs)
            assert not problems, problems

        def raw_restore():
            backup = store.resolve(DB, "latest")
            sh(f"{createdb} bench_raw_restore && {pg_restore} -j{args.jobs} -d bench_raw_restore {backup.path}", env)

        def ours_recover():
            backup = store.resolve(DB, "latest")
            Recovery(params, store, DB, backup.backup_id, jobs=args.jobs, keep_previous=5, force=True).run()

        def drop_previous_rounds():
            """Untimed: a recovery in an incident starts without older kept copies to clean up."""
            with psycopg.connect(**cluster.conninfo(), autocommit=True) as conn:
                for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_\\_%' "
                                            "OR datname = 'bench_raw_restore'").fetchall():
                    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.close()
            subprocess.run(["psql", "-qc", "CHECKPOINT"], env=env, check=True)

        samples: dict[str, list[float]] = {}
        steps = [("raw_dump_dir", raw_dump_dir), ("ours_backup", ours_backup), ("raw_dump_gzip", raw_dump_gzip),
                 ("raw_verify", raw_verify), ("ours_verify", ours_verify),
                 ("raw_restore", raw_restore), ("ours_recover", ours_recover)]
        for round_number in range(args.repeat):
            # Alternate which side goes first, so page-cache warmth favours neither.
            for name, fn in (steps if round_number % 2 == 0 else list(reversed(steps))):
                if name in ("raw_restore", "ours_recover"):
                    drop_previous_rounds()
                os.sync()
                samples.setdefault(name, []).append(timed(fn))
            print(f"round {round_number + 1}/{args.repeat}: " + ", ".join(
                f"{n} {v[-1]:.2f}s" for n, v in samples.items()), flush=True)
        results.update({name: statistics.median(values) for name, values in samples.items()})

        # -- one playbook run, for the overhead a person sees ---------------------------------
        inventory = base / "inventory.yml"
        inventory.write_text(json.dumps({"all": {"children": {"postgres": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "pg_connection": {"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": "postgres",
                              "login_password": cluster.password},
            "pg_databases": [DB], "pg_backup_root": str(base / "backups"), "pg_backup_keep_last": 10,
            "pg_backup_skip_if_newer_than": "0", "pg_backup_compress_level": args.level,
            "pg_backup_jobs": args.jobs}}}}}}))
        os.sync()
        results["playbook_backup"] = timed(lambda: subprocess.run(
            [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
             str(ROOT / "playbooks/backup-db.yml")], cwd=ROOT, check=True, stdout=subprocess.DEVNULL))
    finally:
        if not args.keep:
            cluster.destroy()
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept: {base}")

    rows = [
        ("backup: ours / pg_dump -Fd -j", results["ours_backup"], results["raw_dump_dir"], "<= 1.10", 1.10),
        ("backup: pg_dump | gzip / ours (speed-up)", results["raw_dump_gzip"], results["ours_backup"], ">= 1.50",
         None),
        ("recovery: ours / createdb + pg_restore -j", results["ours_recover"], results["raw_restore"], "<= 1.25",
         1.25),
        ("verification: ours / restore + count", results["ours_verify"], results["raw_verify"], "<= 1.20", 1.20),
    ]
    print(f"\nmedians of {args.repeat} runs")
    print(f"{'measure':<44} {'a (s)':>8} {'b (s)':>8} {'a/b':>6}  target  met")
    for label, a, b, target, limit in rows:
        ratio = a / b
        met = ratio <= limit if limit is not None else ratio >= 1.5
        print(f"{label:<44} {a:8.2f} {b:8.2f} {ratio:6.2f}  {target}  {'yes' if met else 'NO'}")
    print(f"\nbackup-db.yml playbook, end to end (ansible start-up, plan, backup, checksum verification): "
          f"{results['playbook_backup']:.2f} s vs raw {results['raw_dump_dir']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
