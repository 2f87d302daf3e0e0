"""The point-in-time recovery drill, `verify-backups.yml -e verify_level=pitr`: the newest base backup and every
archived WAL segment restored into a throwaway cluster, pg_amcheck on it, every table of each database's newest
logical backup present; RPO and RTO reported, the throwaway removed, a table the recovered copy lacks a failure."""

from __future__ import annotations

import uuid

import pytest
from conftest import connect
from pitr_world import ArchivedCluster, archive_now, open_world

# make integration hands each file to one worker (--dist loadfile): these tests share one archiving cluster.

DRILL = "Restore the newest base backup and all archived WAL, pg_amcheck, compare with the logical backups"


@pytest.fixture(scope="module")
def archived(aws_emulator, tmp_path_factory):
    yield from open_world(aws_emulator, tmp_path_factory, "drill")


def logically_backed_up(world: ArchivedCluster, sql: str) -> str:
    """A new database made with `sql`, the only one of the inventory, with a logical backup (backup-db.yml)."""
    name = f"drill_{uuid.uuid4().hex[:6]}"
    with connect(world.cluster) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with connect(world.cluster, name) as conn:
        conn.execute(sql)
    world.inventory(pg_databases=[name])
    backup = world.workspace.play("backup-db.yml")
    assert backup.rc == 0 and world.workspace.backups(name), backup.output[-3000:]
    return name


def test_the_drill_restores_checks_and_reports_rpo_and_rto(archived):
    shop = logically_backed_up(archived, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); "
                                         "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g")
    archive_now(archived)

    run, tasks = archived.workspace.play_json("verify-backups.yml", verify_level="pitr")
    assert run.rc == 0 and run.changed == 0, run.output[-4000:]
    drill = tasks[DRILL]["testdb"]
    assert isinstance(drill["rpo_seconds"], int | float) and 0 <= drill["rpo_seconds"] < 600, drill
    assert isinstance(drill["rto_seconds"], int | float) and drill["rto_seconds"] > 0, drill
    assert drill["ok"] and drill["amcheck"]["exit"] == 0 and drill["wal"]["missing"] == []
    [backup_id] = archived.workspace.backups(shop)
    assert drill["tables"]["databases"][shop] == {"logical_backup": backup_id, "tables": 1, "missing": [],
                                                  "rows_differ": 0}
    report = tasks["Report RPO and RTO"]["testdb"]["msg"]
    assert f"RPO {drill['rpo_seconds']} s" in report and f"RTO {drill['rto_seconds']} s" in report, report
    assert list(archived.work_dir.iterdir()) == [], "the throwaway cluster was left behind"

    # The plan (check mode) restores nothing and still gives the RPO.
    plan, tasks = archived.workspace.play_json("verify-backups.yml", check=True, verify_level="pitr")
    assert plan.rc == 0 and plan.changed == 0, plan.output[-3000:]
    assert tasks[DRILL]["testdb"]["rpo_seconds"] is not None and "rto_seconds" not in tasks[DRILL]["testdb"]
    assert "not measured (check mode)" in tasks["Report RPO and RTO"]["testdb"]["msg"]
    assert list(archived.work_dir.iterdir()) == []


def test_a_table_the_recovered_copy_lacks_fails_the_drill(archived):
    ledger = logically_backed_up(archived, "CREATE TABLE entries (n int); CREATE TABLE gone (n int); "
                                           "INSERT INTO gone VALUES (1)")
    with connect(archived.cluster, ledger) as conn:
        conn.execute("DROP TABLE gone")
    archive_now(archived)

    run = archived.workspace.play("verify-backups.yml", verify_level="pitr")
    [backup_id] = archived.workspace.backups(ledger)
    assert run.rc != 0, run.output[-4000:]
    assert run.says(f"{ledger}: table public.gone of backup {backup_id} is missing"), run.output[-4000:]
    assert run.says("RPO") and run.says("RTO")
    assert list(archived.work_dir.iterdir()) == [], "a failed drill left its throwaway cluster behind"


@pytest.mark.parametrize(("extra", "says"), [
    ({"verify_level": "bogus"}, "pg_verify_level must be one of: checksum, catalog, restore, pitr, got: bogus"),
    ({"verify_level": "pitr", "pg_verify_archive": {}}, "verify_level=pitr needs the archive"),
    ({"verify_level": "pitr", "backup": "20260101T000000Z"}, "backup=20260101T000000Z"),
])
def test_bad_input_fails_before_anything_runs(archived, extra, says):
    run = archived.workspace.play("verify-backups.yml", database="postgres", **extra)
    assert run.rc != 0 and run.says(says), run.output[-3000:]
    assert DRILL not in run.output, "the drill was reached"
    assert not archived.work_dir.exists() or list(archived.work_dir.iterdir()) == []
