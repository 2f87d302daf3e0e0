"""The servers every role's molecule scenario runs against: a PostgreSQL cluster with the seeded molecule_chat
database, a Redis and the AWS emulator, all under molecule_base (tests/molecule/host_vars/localhost.yml).

    python tests/molecule/world.py up BASE PG_PORT REDIS_PORT AWS_PORT [--reset postgres,redis,aws]

`up` starts what is not running, leaves alone what runs and is not named by --reset (with two lanes of scenarios,
another scenario may be using it), and puts each part named by --reset that it did not just create back to its
seeded state: every database but `postgres` dropped and molecule_chat seeded again, Redis
restarted from its original config file if a scenario rewrote it, the emulator emptied and seeded again. So
`make molecule` starts the servers once for all the scenarios, and each scenario's prepare resets only what it
uses (its platform's groups): the scenarios pass in any order. Prints one line per part.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sandbox.pgcluster import PgCluster, process_alive, wait_gone  # noqa: E402

DATABASE = "molecule_chat"
PARTS = ("postgres", "redis", "aws")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def postgres(base: Path, port: int, reset: bool) -> str:
    import psycopg
    from psycopg import sql

    cluster = PgCluster(base / "pg", port)
    created = cluster.init()  # a cluster that was only stopped keeps what earlier scenarios left in it
    started = cluster.start()
    if not (created or started or reset):
        # Running, and not this scenario's to reset: the other lane's scenario may be using (or resetting) it.
        return "running"
    with psycopg.connect(**cluster.conninfo(), autocommit=True) as conn:
        present = [name for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'")]
        dropped = present if reset and not created else []
        for name in dropped:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        seeded = DATABASE not in present or DATABASE in dropped
        if seeded:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    if seeded:
        with psycopg.connect(**cluster.conninfo(DATABASE), autocommit=True) as conn:
            conn.execute((ROOT / "sandbox" / "seed_chat.sql").read_text())
    state = "started" if started else "running"
    return f"{state}, reset (dropped {', '.join(dropped)})" if dropped else state


def redis_config(base: Path, port: int) -> str:
    # A real config file, so CONFIG REWRITE (redis_config) has one to rewrite.
    return (f"bind 127.0.0.1\nport {port}\ndaemonize yes\npidfile {base / 'redis' / 'redis.pid'}\n"
            f"dir {base / 'redis'}\nsave \"\"\nappendonly no\nmaxmemory 64mb\n")


def redis(base: Path, port: int, reset: bool) -> str:
    directory = base / "redis"
    config, pidfile = directory / "redis.conf", directory / "redis.pid"
    wanted = redis_config(base, port)
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        pid = None
    running = pid is not None and process_alive(pid)
    rewritten = not config.exists() or config.read_text() != wanted
    if running and not (reset and rewritten):
        return "running"
    if running:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=True, capture_output=True)
        wait_gone(pid)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    config.write_text(wanted)
    config.chmod(0o600)
    subprocess.run(["redis-server", str(config)], check=True, capture_output=True)
    wait_port(port)
    return "reset (restarted from its original config)" if running else "started"


def aws(base: Path, port: int, reset: bool) -> str:
    # sandbox.py reads its directory and ports when imported.
    os.environ.update(RUNBOOK_SANDBOX_DIR=str(base / "sandbox"), RUNBOOK_SANDBOX_AWS_PORT=str(port))
    from sandbox import sandbox

    os.environ.update(sandbox.aws_env())
    started = sandbox.start_aws()
    if not (started or reset):
        return "running"  # not this scenario's: the other lane's scenario may be using (or resetting) it
    if not started:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass
    sandbox.seed_aws()
    return "started" if started else "reset (emptied and seeded again)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("action", choices=["up"])
    parser.add_argument("base", type=Path)
    parser.add_argument("pg_port", type=int)
    parser.add_argument("redis_port", type=int)
    parser.add_argument("aws_port", type=int)
    parser.add_argument("--reset", default="", help=f"comma-separated parts to put back: {', '.join(PARTS)}")
    args = parser.parse_args(argv)
    reset = {part for part in args.reset.split(",") if part}
    if reset - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(reset - set(PARTS)))}")
    args.base.mkdir(parents=True, exist_ok=True)
    print(f"postgres  {postgres(args.base, args.pg_port, 'postgres' in reset)}", flush=True)
    print(f"redis     {redis(args.base, args.redis_port, 'redis' in reset)}", flush=True)
    print(f"aws       {aws(args.base, args.aws_port, 'aws' in reset)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
