"""Benchmark: selective recovery (issue 26) against a whole-database point-in-time recovery to the same target,
measured in the same run on the same archive, printed as a ratio (python bench/recover_rows.py; --scale 5 for a quick
run).

Set-up (bench/pitr.py's): a cluster of its own, the AWS emulator of its own, archiving turned on by
playbooks/setup-archiving.yml (a first base backup), a pgbench database (scale 20, about 300 MB), then
--write-seconds of pgbench writes, archived. T is the server's time when they end. After T, the bad statement deletes
10% of pgbench_accounts, and the application goes on writing: --later-rows rows into pgbench_history.

  ours   recover-rows.yml -e mode=missing -e tables=pgbench_accounts -e target_time=T -e confirm=true
  whole  recover-db.yml -e database=bench -e target_time=T -e confirm=true      (the 10% deleted again first)

Target: ours <= 0.7x the whole-database recovery's time, and no later write lost (the whole-database recovery loses
every one of them). Each side is checked: every account back, and the later rows counted. --repeat rounds alternate
which side goes first; before each measure (untimed) the same damage and later writes are made again and the archiver
is caught up (bench/pitr.py's settle) after the database is vacuumed, so neither side waits for the WAL the other's
restore (or autovacuum after it) wrote. Medians compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pitr import DB, Bench, load, pg_bindir  # noqa: E402

LATER = "later write"


def bad_statement(bench: Bench) -> int:
    with bench.connect(DB) as conn:
        return conn.execute("DELETE FROM pgbench_accounts WHERE aid % 10 = 0").rowcount


def later_writes(bench: Bench, rows: int) -> None:
    with bench.connect(DB) as conn:
        conn.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler) "
                     "SELECT 1, 1, g, 0, clock_timestamp(), %s FROM generate_series(1, %s) g", (LATER, rows))


def state(bench: Bench) -> tuple[int, int]:
    with bench.connect(DB) as conn:
        accounts = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
        later = conn.execute("SELECT count(*) FROM pgbench_history WHERE filler = %s", (LATER,)).fetchone()[0]
    return accounts, later


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (default 20, about 300 MB)")
    parser.add_argument("--write-seconds", type=int, default=30, help="seconds of pgbench writes before T (30)")
    parser.add_argument("--later-rows", type=int, default=5000, help="rows the application writes after T (5000)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds, alternating which side goes first; medians compared (3)")
    parser.add_argument("--verbose", action="store_true", help="print each run's slowest tasks")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the whole run (0)")
    args = parser.parse_args()
    os.nice(args.nice)
    bench = Bench(args)
    print(f"recover-rows bench: scale {args.scale}, {args.write_seconds} s of writes before T; load {load()}",
          flush=True)
    try:
        bench.setup()
        subprocess.run([str(pg_bindir() / "pgbench"), "-N", "-c", "2", "-T", str(args.write_seconds), DB],
                       env=bench.cluster.env(), capture_output=True, check=True)
        time.sleep(0.5)
        with bench.connect() as conn:
            target = conn.execute("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                  "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").fetchone()[0]
        time.sleep(0.5)
        accounts = args.scale * 100000
        deleted = bad_statement(bench)
        later_writes(bench, args.later_rows)
        print(f"T = {target}; then {deleted} accounts deleted, {args.later_rows} rows written to pgbench_history",
              flush=True)

        ours_times, whole_times, ours_state, whole_state = [], [], None, None
        for round_number in range(args.repeat):
            order = ("ours", "whole") if round_number % 2 == 0 else ("whole", "ours")
            for side in order:
                if ours_state is not None or whole_state is not None:
                    bad_statement(bench)  # untimed: the same damage, and the same later writes, for every measure
                    later_writes(bench, args.later_rows)
                with bench.connect(DB) as conn:
                    # untimed: the database a whole-database recovery just restored is vacuumed now, not by
                    # autovacuum during the next measure (its WAL, hundreds of MB of page images after the
                    # checkpoint, queued in the archiver ahead of the next measure's own segment)
                    conn.execute("VACUUM (ANALYZE)")
                bench.settle()  # untimed: the archiver caught up with the previous measure's writes, as pitr.py does
                if side == "ours":
                    seconds, tasks = bench.play("recover-rows.yml", f"database={DB}", "tables=pgbench_accounts",
                                                "mode=missing", f"target_time={target}", "confirm=true")
                    ours_state = state(bench)
                    written = tasks.get("Build the source, decide on it, write in one transaction", (0, {}))[1]
                    ours_times.append(seconds)
                    print(f"  ours   {seconds:7.1f} s  recover-rows missing (module: {written.get('seconds')}); "
                          f"later rows kept {ours_state[1]}", flush=True)
                    assert ours_state[0] == accounts, f"ours: {ours_state[0]} accounts, expected {accounts}"
                else:
                    extra = ["pg_recover_force=true"] if whole_times else []
                    seconds, tasks = bench.play("recover-db.yml", f"database={DB}", f"target_time={target}",
                                                 "confirm=true", *extra)
                    whole_state = state(bench)
                    whole_times.append(seconds)
                    print(f"  whole  {seconds:7.1f} s  recover-db to T (database scope); later rows kept "
                          f"{whole_state[1]}", flush=True)
                if args.verbose:
                    slow = sorted(((s, n) for n, (s, _r) in tasks.items()), reverse=True)[:6]
                    print("         slowest tasks: " + ", ".join(f"{n} {s:.1f} s" for s, n in slow), flush=True)
                if side == "whole":
                    assert whole_state[0] == accounts, f"whole: {whole_state[0]} accounts, expected {accounts}"
                later_kept = state(bench)[1]
                # the later rows of this round: ours keeps them all, the whole-database recovery none
                assert (later_kept == args.later_rows) == (side == "ours") or args.later_rows == 0, later_kept
                with bench.connect(DB) as conn:  # the next round's later rows are counted alone
                    conn.execute("DELETE FROM pgbench_history WHERE filler = %s", (LATER,))

        ours, whole = statistics.median(ours_times), statistics.median(whole_times)
        ratio = ours / whole
        print(f"\nmedians of {args.repeat}: ours {ours:.1f} s, whole {whole:.1f} s; ratio ours/whole: {ratio:.2f}x "
              f"(target <= 0.70x): {'met' if ratio <= 0.7 else 'NOT met'}")
        print(f"later writes kept: ours {ours_state[1]} of {args.later_rows}, whole-database {whole_state[1]} of "
              f"{args.later_rows} (it loses every one)")
        return 0 if ratio <= 0.7 else 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
