"""A cluster archiving its WAL with Barman's cloud tools into a fresh bucket of the AWS emulator, with a
playbook workspace whose inventory holds the archive settings: shared by the point-in-time recovery tests."""

from __future__ import annotations

import datetime
import fcntl
import os
import sys
import time
import uuid
from pathlib import Path

import boto3
from conftest import ROOT, Workspace, connect, free_port

from sandbox.pgcluster import PgCluster

# Barman's cloud tools for every test: installed by the first setup-archiving.yml run, where the server's OS user
# can run them (the checkout may be unreadable to it).
TOOLS_DIR = "/tmp/runbook-recovery-tests/barman-cloud"


class ArchivedCluster:
    """A cluster of its own (normal durability settings: full_page_writes stays on), archiving into a fresh
    bucket of the emulator, with a workspace whose inventory holds the archive settings."""

    def __init__(self, emulator, base: Path, name: str = "pitr"):
        self.cluster = PgCluster(os.path.join("/tmp", f"rr-pitr-{uuid.uuid4().hex[:8]}"), free_port(),
                                 settings={"fsync": "off", "synchronous_commit": "off"})
        self.cluster.start()
        self.emulator = emulator
        self.bucket = f"rr-pitr-{uuid.uuid4().hex[:8]}"
        self.work_dir = self.cluster.base / "pitr-work"
        self.archive = {"destination": f"s3://{self.bucket}/pg", "server_name": name, "tools_dir": TOOLS_DIR,
                        "aws_dir": str(self.cluster.base / "aws")}
        self.workspace = Workspace(self.cluster, [], base)
        self.inventory()

    def inventory(self, **extra) -> None:
        env = self.emulator
        self.workspace.write_inventory(
            pg_archive=self.archive,
            pg_archive_aws={"endpoint_url": env["AWS_ENDPOINT_URL"], "region": env["AWS_DEFAULT_REGION"],
                            "access_key": env["AWS_ACCESS_KEY_ID"], "secret_key": env["AWS_SECRET_ACCESS_KEY"]},
            pg_archive_create_bucket=True,
            pg_archive_restart_command=[sys.executable, str(ROOT / "sandbox/pgcluster.py"), "restart",
                                        str(self.cluster.base), str(self.cluster.port)],
            pg_pitr_work_dir=str(self.work_dir),
            pg_pitr_stop_command=[sys.executable, str(ROOT / "sandbox/pgcluster.py"), "stop",
                                  str(self.cluster.base), str(self.cluster.port)],
            pg_pitr_start_command=[sys.executable, str(ROOT / "sandbox/pgcluster.py"), "start",
                                   str(self.cluster.base), str(self.cluster.port)],
            **extra)

    def s3(self):
        env = self.emulator
        return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def wal_keys(self) -> list[str]:
        prefix = f"pg/{self.archive['server_name']}/wals/"
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def rows(self, database: str, query: str):
        with connect(self.cluster, database) as conn:
            return conn.execute(query).fetchall()

    def destroy(self) -> None:
        self.cluster.destroy()


def open_world(aws_emulator, tmp_path_factory, name: str = "pitr"):
    """The body of a module's `archived` fixture: archiving set up by setup-archiving.yml (its run kept as
    world.first_setup), torn down after the module."""
    world = ArchivedCluster(aws_emulator, tmp_path_factory.mktemp(name), name)
    # Test files on other xdist workers set up their own clusters at the same time: the first run installs the
    # archive tools into their one shared virtualenv, the others wait for it rather than install over it.
    with open("/tmp/runbook-recovery-tests-archive-tools.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        first = world.workspace.play("setup-archiving.yml")
    assert first.rc == 0, first.output[-3000:]
    world.first_setup = first
    yield world
    world.destroy()


def make_database(world: ArchivedCluster, name: str, sql: str) -> None:
    with connect(world.cluster) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with connect(world.cluster, name) as conn:
        conn.execute(sql)


def utc_iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def server_now(world: ArchivedCluster) -> datetime.datetime:
    return world.rows("postgres", "SELECT clock_timestamp()")[0][0]


def archive_now(world: ArchivedCluster) -> str:
    """Switch to a new WAL segment and wait until the archiver has sent the one just finished: everything
    committed before is then in the archive (a drill replays only what is there). Its name."""
    with connect(world.cluster) as conn:
        conn.execute("SELECT txid_current()")
        name = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + 60
        while (conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0] or "") < name:
            assert time.monotonic() < deadline, f"{name} was not archived within 60 s"
            time.sleep(0.1)
    return name
