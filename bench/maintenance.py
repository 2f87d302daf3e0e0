"""Benchmark: targeted VACUUM/ANALYZE against `vacuumdb --analyze`, and a health sweep over 50 databases
(make bench-maintenance).

  maintenance   100 tables, 1 bloated; ours (pg_maintenance: the bloated table only) vs vacuumdb --analyze
                (every table); both remove the same dead tuples. Target: ours >= 5x less time.
  health sweep  pg_health over 50 databases of one cluster (module logic, and the whole health-sweep.yml
                playbook). Target: under 15 s.
Each maintenance measure runs --repeat times on fresh bloat; medians are compared.
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

from ansible_collections.runbook.recovery.plugins.module_utils.health import merge_thresholds, postgres_findings  # noqa: E402
from ansible_collections.runbook.recovery.plugins.module_utils.pg_maintenance import Thresholds, maintain  # noqa: E402
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams  # noqa: E402
from sandbox.pgcluster import PgCluster, pg_bindir  # noqa: E402

DB = "maint"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_tuples(cluster: PgCluster, table: str) -> int:
    with psycopg.connect(**cluster.conninfo(DB), autocommit=True) as conn:
        time.sleep(0.2)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", (table,)).fetchone()[0]


def bloat(cluster: PgCluster, rows: int) -> None:
    with psycopg.connect(**cluster.conninfo(DB), autocommit=True) as conn:
        conn.execute(f"UPDATE t042 SET v = v || 'x' WHERE id <= {rows // 2}")
        conn.execute(f"DELETE FROM t042 WHERE id > {rows - rows // 4}")
        conn.execute(f"INSERT INTO t042 SELECT g, md5(g::text) FROM generate_series({rows - rows // 4 + 1}, {rows}) g")
        conn.execute("SELECT pg_stat_force_next_flush()")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tables", type=int, default=100)
    parser.add_argument("--rows", type=int, default=20000, help="rows per table")
    parser.add_argument("--databases", type=int, default=50, help="databases for the health sweep")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="rr-bench-maint-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg", free_port(), settings={"autovacuum": "off"})
    try:
        cluster.start()
        subprocess.run([str(pg_bindir() / "createdb"), DB], env=cluster.env(), check=True)
        with psycopg.connect(**cluster.conninfo(DB), autocommit=True) as conn:
            for i in range(args.tables):
                conn.execute(f"CREATE TABLE t{i:03d} (id int PRIMARY KEY, v text)")
                conn.execute(f"INSERT INTO t{i:03d} SELECT g, md5(g::text) FROM generate_series(1, {args.rows}) g")
            conn.execute("SELECT pg_stat_force_next_flush()")
        with psycopg.connect(**cluster.conninfo(DB), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # a settled database, as autovacuum would have left it
        print(f"{args.tables} tables x {args.rows} rows; t042 is the bloated one\n", flush=True)

        params = ConnParams(host="127.0.0.1", port=cluster.port, user="postgres", password=cluster.password)
        ours, raw = [], []
        for _ in range(args.repeat):
            bloat(cluster, args.rows)
            before = dead_tuples(cluster, "t042")
            started = time.perf_counter()
            result = maintain(params, DB, "needed", Thresholds(), "5s", None, check_mode=False)
            ours.append(time.perf_counter() - started)
            assert [t["table"] for t in result["tables"]] == ["t042"], result["tables"]
            ours_removed = before - dead_tuples(cluster, "t042")

            bloat(cluster, args.rows)
            before = dead_tuples(cluster, "t042")
            started = time.perf_counter()
            subprocess.run([str(pg_bindir() / "vacuumdb"), "--analyze", "--quiet", DB], env=cluster.env(), check=True)
            raw.append(time.perf_counter() - started)
            raw_removed = before - dead_tuples(cluster, "t042")
            print(f"ours {ours[-1]:.2f}s removed {ours_removed} dead tuples; vacuumdb --analyze {raw[-1]:.2f}s "
                  f"removed {raw_removed}", flush=True)

        for i in range(args.databases):
            subprocess.run([str(pg_bindir() / "createdb"), "-T", DB, f"app{i:02d}"], env=cluster.env(), check=True)
        names = [f"app{i:02d}" for i in range(args.databases)]
        started = time.perf_counter()
        findings = postgres_findings(params, names, merge_thresholds({}))
        sweep_module = time.perf_counter() - started

        inventory = base / "inventory.json"
        inventory.write_text(json.dumps({"all": {"children": {"postgres": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "pg_connection": {"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": "postgres",
                              "login_password": cluster.password},
            "pg_databases": names, "runbook_report_dir": str(base / "reports")}}}}}}))
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                        str(ROOT / "playbooks/health-sweep.yml")], cwd=ROOT, stdout=subprocess.DEVNULL,
                       env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
        sweep_playbook = time.perf_counter() - started
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)

    ours_median, raw_median = statistics.median(ours), statistics.median(raw)
    speedup = raw_median / ours_median
    print(f"\nmedians of {args.repeat} runs")
    print(f"maintenance: vacuumdb --analyze {raw_median:.2f}s / ours {ours_median:.2f}s = {speedup:.1f}x less time "
          f"(target >= 5x: {'yes' if speedup >= 5 else 'NO'})")
    print(f"health sweep over {args.databases} databases: module {sweep_module:.2f}s ({len(findings)} findings), "
          f"health-sweep.yml end to end {sweep_playbook:.2f}s (target < 15 s: "
          f"{'yes' if sweep_playbook < 15 else 'NO'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
