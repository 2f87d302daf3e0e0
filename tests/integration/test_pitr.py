"""Point-in-time recovery, end to end: a cluster archiving its WAL with Barman's cloud tools into the AWS
emulator's S3, base backups, and recover-db.yml taking one database (or the whole cluster) back to a second,
a restore point or an LSN, through real ansible-playbook runs."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from conftest import connect
from pitr_world import ArchivedCluster, open_world, server_now, utc_iso

from sandbox.pgcluster import PgCluster


@pytest.fixture(scope="module")
def archived(aws_emulator, tmp_path_factory):
    yield from open_world(aws_emulator, tmp_path_factory)


# -- archiving ------------------------------------------------------------------------------------------
def test_archiving_is_on_and_idempotent(archived):
    """The first run restarted the server (archive_mode changed) and took a base backup; WAL reaches S3; a
    second run changes nothing and restarts nothing; --check plans nothing."""
    assert archived.first_setup.says("restarted the server (for archive_mode)")
    settings = dict(archived.rows("postgres", "SELECT name, setting FROM pg_settings WHERE name IN "
                                  "('archive_mode', 'archive_timeout')"))
    assert settings == {"archive_mode": "on", "archive_timeout": "60"}
    assert archived.wal_keys(), "no WAL segment reached the bucket"
    pid_before = archived.cluster.pid()
    second = archived.workspace.play("setup-archiving.yml")
    assert second.rc == 0 and second.changed == 0, second.output[-3000:]
    assert archived.cluster.pid() == pid_before, "a run with nothing to change restarted the server"
    check = archived.workspace.play("setup-archiving.yml", check=True)
    assert check.rc == 0 and check.changed == 0, check.output[-3000:]


def test_base_backup_playbook_and_archive_check(archived):
    run, tasks = archived.workspace.play_json("base-backup.yml", pg_archive_base_backup_skip_if_newer_than=0)
    assert run.rc == 0, run.output[-3000:]
    result = tasks["Take a base backup, apply the recovery window, check the archive"]["testdb"]
    assert result["created"] and len(result["backups"]) >= 2 and result["gaps"] == []
    again = archived.workspace.play("base-backup.yml")
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]


# -- one database --------------------------------------------------------------------------------------
class Writer(threading.Thread):
    """A client writing to another database of the cluster in a loop, counting what was committed."""

    def __init__(self, cluster: PgCluster, database: str):
        super().__init__(daemon=True)
        self.cluster, self.database = cluster, database
        self.committed, self.errors, self.halt = 0, [], threading.Event()

    def run(self):
        with connect(self.cluster, self.database) as conn:
            while not self.halt.is_set():
                try:
                    conn.execute("INSERT INTO ticks (at) VALUES (clock_timestamp())")
                    self.committed += 1
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def make_database(world: ArchivedCluster, name: str, sql: str) -> None:
    with connect(world.cluster) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with connect(world.cluster, name) as conn:
        conn.execute(sql)


def test_one_database_back_to_a_second_while_the_cluster_serves(archived):
    shop, busy = f"shop_{uuid.uuid4().hex[:6]}", f"busy_{uuid.uuid4().hex[:6]}"
    make_database(archived, shop, "CREATE TABLE items (id int PRIMARY KEY, batch text NOT NULL)")
    make_database(archived, busy, "CREATE TABLE ticks (at timestamptz NOT NULL)")
    writer = Writer(archived.cluster, busy)
    writer.start()
    try:
        with connect(archived.cluster, shop) as conn:
            conn.execute("INSERT INTO items SELECT g, 'A' FROM generate_series(1, 200) g")
        time.sleep(1.1)
        moment = server_now(archived)
        time.sleep(1.1)
        with connect(archived.cluster, shop) as conn:
            conn.execute("INSERT INTO items SELECT g, 'B' FROM generate_series(1001, 1100) g")
            conn.execute("DELETE FROM items WHERE batch = 'A' AND id % 2 = 0")
        target = utc_iso(moment)

        plan = archived.workspace.play("recover-db.yml", check=True, database=shop, target_time=target)
        assert plan.rc == 0, plan.output[-3000:]
        assert plan.says("would restore base backup") and plan.says("all in the archive")
        assert archived.rows(shop, "SELECT count(*) FROM items")[0][0] == 200  # the plan changed nothing

        run = archived.workspace.play("recover-db.yml", database=shop, target_time=target, confirm=True)
        assert run.rc == 0, run.output[-4000:]
    finally:
        writer.stop()
    batches = dict(archived.rows(shop, "SELECT batch, count(*) FROM items GROUP BY batch"))
    assert batches == {"A": 200}, batches
    assert writer.errors == [] and writer.committed > 50
    assert archived.rows(busy, "SELECT count(*) FROM ticks")[0][0] == writer.committed
    assert list(archived.work_dir.iterdir()) == [], "the throwaway cluster or the dump was left behind"
    record = [r for r in archived.workspace.audit() if r.get("result") == "recovered"][-1]
    assert record["target"] == f"time {target}" and record["restore_point"]["lsn"]
    assert record["after"]["restored_backup"] == f"pitr:time={target}"

    again = archived.workspace.play("recover-db.yml", database=shop, target_time=target, confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
