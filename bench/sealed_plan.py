"""Benchmark: applying a sealed plan (`-e plan=FILE -e confirm=true`) against today's apply (`-e confirm=true`, which
plans and applies in one run), measured in the same run on the same servers, for the two procedures issue 23 names.

  emergency-shutdown  200 Lambda functions and 20 API stages in the AWS emulator; each run is followed by an
                      untimed resume. The plan file is made (untimed) before each plan-driven apply; its apply
                      resolves no selector again, but reads every planned resource again before it writes (a sealed
                      plan is never trusted unread).
  recover-db          the sandbox's chat database (scaled up by --rows messages) on a private cluster, from the
                      newest verified backup (force=true: the database holds that backup already, damaged since);
                      each run is preceded by an untimed damage (rows deleted).
Target: plan-driven apply <= 1.0x today's (the ratio printed is plan-driven / today's; medians of --repeat runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from emergency import build, emulator_env, free_port, start_emulator, state, timed  # noqa: E402

from sandbox.pgcluster import PgCluster  # noqa: E402

SEED_SQL = (ROOT / "sandbox" / "seed_chat.sql").read_text()


def shutdown_bench(base: Path, repeat: int, functions: int, stages: int) -> tuple[list[float], list[float]]:
    port = free_port()
    env = emulator_env(port)
    os.environ.update(env)
    emulator = start_emulator(port)
    try:
        reserved, apis = build(env, functions, stages)
        original = state(env, list(reserved), apis)
        inventory = base / "aws.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"aws": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "runbook_audit_log": str(base / "audit.jsonl"),
            "emergency_scopes": {"bench": {"lambda": {"prefixes": ["bench-fn-"]},
                                           "api_stages": [{"api": api, "stage": "prod"} for api in apis]}}}}}}}}))
        playbook = [str(BIN / "ansible-playbook"), "-i", str(inventory)]
        shutdown, resume = "playbooks/emergency-shutdown.yml", "playbooks/emergency-resume.yml"
        scope = ["-e", "shutdown_scope=bench"]
        today, sealed = [], []
        for _ in range(repeat):
            today.append(timed([*playbook, shutdown, *scope, "-e", "confirm=true"], env))
            timed([*playbook, resume, *scope, "-e", "confirm=true"], env)
            plan = base / "shutdown.json"
            timed([*playbook, shutdown, "--check", *scope, "-e", f"plan_out={plan}"], env)
            sealed.append(timed([*playbook, shutdown, "-e", f"plan={plan}", "-e", "confirm=true"], env))
            timed([*playbook, resume, *scope, "-e", "confirm=true"], env)
            assert state(env, list(reserved), apis) == original, "a resume did not restore every value"
            print(f"  emergency-shutdown: today {today[-1]:.2f}s, from a sealed plan {sealed[-1]:.2f}s", flush=True)
        return today, sealed
    finally:
        emulator.terminate()
        emulator.wait()


def recover_bench(base: Path, repeat: int, rows: int) -> tuple[list[float], list[float]]:
    cluster = PgCluster(base / "pg", free_port())
    cluster.start()
    try:
        with psycopg.connect(**cluster.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chat")
        with psycopg.connect(**cluster.conninfo("chat"), autocommit=True) as conn:
            conn.execute(SEED_SQL)
            seeded = conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
            conn.execute("INSERT INTO chat_messages (session_id, sender, content, created_at) SELECT session_id, "
                         "sender, repeat(content, 4), created_at FROM chat_messages, generate_series(1, %s)",
                         (max(rows // max(seeded, 1), 1),))
            count = conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
        inventory = base / "pg.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"postgres": {"hosts": {"db": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "pg_connection": {"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": "postgres",
                              "login_password": cluster.password},
            "pg_databases": ["chat"], "pg_backup_root": str(base / "backups"),
            "runbook_audit_log": str(base / "audit.jsonl")}}}}}}))
        inventory.chmod(0o600)
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOME": str(ROOT / ".ansible"),
               "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".ansible/collections")}
        playbook = [str(BIN / "ansible-playbook"), "-i", str(inventory)]
        timed([*playbook, "playbooks/backup-db.yml"], env)
        print(f"  chat: {count} messages, one verified backup", flush=True)

        def damage():
            with psycopg.connect(**cluster.conninfo("chat"), autocommit=True) as conn:
                conn.execute("DELETE FROM chat_messages WHERE id % 3 = 0")

        recover = "playbooks/recover-db.yml"
        today, sealed = [], []
        for _ in range(repeat):
            damage()
            # force: the database holds that backup already (the previous run restored it), damaged since.
            force = ["-e", "pg_recover_force=true"]
            today.append(timed([*playbook, recover, "-e", "confirm=true", "-e", "backup=latest", *force], env))
            damage()
            plan = base / "recover.json"
            timed([*playbook, recover, "--check", "-e", "backup=latest", "-e", f"plan_out={plan}", *force], env)
            sealed.append(timed([*playbook, recover, "-e", f"plan={plan}", "-e", "confirm=true", *force], env))
            with psycopg.connect(**cluster.conninfo("chat")) as conn:
                assert conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0] == count
            print(f"  recover-db: today {today[-1]:.2f}s, from a sealed plan {sealed[-1]:.2f}s", flush=True)
        return today, sealed
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--stages", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200000, help="about how many chat messages to recover")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="rr-bench-sealed-"))
    base.chmod(0o755)
    results = {"emergency-shutdown": shutdown_bench(base, args.repeat, args.functions, args.stages),
               "recover-db": recover_bench(base, args.repeat, args.rows)}
    print(f"\nmedians of {args.repeat} runs (target: plan-driven / today's <= 1.0)")
    worst = 0.0
    for name, (today, sealed) in results.items():
        ratio = statistics.median(sealed) / statistics.median(today)
        worst = max(worst, ratio)
        print(f"  {name:<20} today {statistics.median(today):6.2f}s  sealed plan {statistics.median(sealed):6.2f}s  "
              f"ratio {ratio:.2f}  {'met' if ratio <= 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
