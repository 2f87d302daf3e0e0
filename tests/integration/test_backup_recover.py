"""backup-db -> disaster -> recover-db on a real server, idempotency, and check mode."""

from __future__ import annotations

import json
import threading

from conftest import (
    Workspace,
    connect,
    create_chat_db,
    databases,
    disaster,
    flip_one_byte,
    schema_objects,
    table_fingerprints,
    table_held_locked,
    tree_state,
)


def test_round_trip_restores_every_table_exactly(workspace, pg, chat_db):
    before_rows = table_fingerprints(pg, chat_db)
    before_schema = schema_objects(pg, chat_db)

    backup = workspace.play("backup-db.yml")
    assert backup.rc == 0, backup.output
    [backup_id] = workspace.backups(chat_db)
    manifest = json.loads((workspace.backup_root / chat_db / backup_id / "manifest.json").read_text())
    assert {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]} == {
        "public.chat_messages": 8000, "public.chat_sessions": 2000, "public.users": 500}

    disaster(pg, chat_db)
    assert table_fingerprints(pg, chat_db) != before_rows

    recovery = workspace.play("recover-db.yml", confirm=True, backup="latest")
    assert recovery.rc == 0, recovery.output
    assert table_fingerprints(pg, chat_db) == before_rows
    assert schema_objects(pg, chat_db) == before_schema
    # The sequences continue where they were: a new row does not collide with a restored one.
    with connect(pg, chat_db) as conn:
        new_id = conn.execute("INSERT INTO users (email) VALUES ('new@example.com') RETURNING id").fetchone()[0]
    assert new_id == 501

    kept = [name for name in databases(pg) if name.startswith(f"{chat_db}__pre_recovery_")]
    assert len(kept) == 1, "the database as it was before the recovery is kept"
    assert "public.chat_sessions" not in table_fingerprints(pg, kept[0])  # the disaster, preserved for forensics

    [record] = [r for r in workspace.audit() if r["result"] == "recovered"]
    assert record["database"] == chat_db and record["backup"] == backup_id
    assert record["before"]["tables"]["public.chat_messages"] < 8000
    assert record["after"]["tables"]["public.chat_messages"] == 8000
    assert record["actor"] and record["at"]
    assert record["restore_point"]["name"].startswith("runbook-recover-db-") and record["restore_point"]["lsn"]


def test_recover_database_that_was_dropped(workspace, pg, chat_db):
    before_rows = table_fingerprints(pg, chat_db)
    assert workspace.play("backup-db.yml").rc == 0
    with connect(pg) as conn:
        conn.execute(f'DROP DATABASE "{chat_db}" WITH (FORCE)')
    recovery = workspace.play("recover-db.yml", confirm=True)
    assert recovery.rc == 0, recovery.output
    assert table_fingerprints(pg, chat_db) == before_rows


def test_second_runs_report_no_change(workspace, pg, chat_db):
    first = workspace.play("backup-db.yml", pg_backup_skip_if_newer_than="1h")
    assert first.rc == 0 and first.changed > 0, first.output
    second = workspace.play("backup-db.yml", pg_backup_skip_if_newer_than="1h")
    assert second.rc == 0 and second.changed == 0, second.output
    assert "is verified and newer than skip_if_newer_than" in second.output
    default = workspace.play("backup-db.yml")  # the playbook's default (1h) behaves the same
    assert default.rc == 0 and default.changed == 0, default.output
    assert len(workspace.backups(chat_db)) == 1
    forced = workspace.play("backup-db.yml", pg_backup_skip_if_newer_than="0")
    assert forced.rc == 0 and forced.changed > 0 and len(workspace.backups(chat_db)) == 2

    disaster(pg, chat_db)
    assert workspace.play("recover-db.yml", confirm=True).changed > 0
    rows_after_first = table_fingerprints(pg, chat_db)
    again = workspace.play("recover-db.yml", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output
    assert table_fingerprints(pg, chat_db) == rows_after_first
    assert len([d for d in databases(pg) if d.startswith(chat_db + "__pre_recovery_")]) == 1
    assert workspace.audit()[-1]["result"] == "unchanged"

    verify = workspace.play("verify-backups.yml")
    assert verify.rc == 0 and verify.changed == 0, verify.output


def test_check_mode_changes_nothing(workspace, pg, chat_db):
    def state():
        return (table_fingerprints(pg, chat_db), databases(pg), tree_state(workspace.backup_root),
                tree_state(workspace.audit_log.parent / "audit.jsonl"))

    empty = state()
    check = workspace.play("backup-db.yml", check=True)
    assert check.rc == 0 and check.changed > 0, check.output  # it says a backup would be taken
    assert state() == empty and workspace.backups(chat_db) == []

    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    before = state()
    for playbook, extra in (("backup-db.yml", {}), ("verify-backups.yml", {"verify_level": "restore"}),
                            ("recover-db.yml", {}), ("recover-db.yml", {"confirm": True})):
        run = workspace.play(playbook, check=True, **extra)
        assert run.rc == 0, run.output
        assert state() == before, f"{playbook} --check changed something"
    plan = workspace.play("recover-db.yml", "-v", check=True)
    assert "would restore backup" in plan.output and f"{chat_db}__pre_recovery_" in plan.output


def test_restore_level_verification_records_result(workspace, pg, chat_db):
    assert workspace.play("backup-db.yml").rc == 0
    run = workspace.play("verify-backups.yml", verify_level="restore")
    assert run.rc == 0, run.output
    [backup_id] = workspace.backups(chat_db)
    record = json.loads((workspace.backup_root / chat_db / backup_id / "verification.json").read_text())
    assert set(record["levels"]) == {"checksum", "catalog", "restore"}
    assert all(level["ok"] for level in record["levels"].values())
    assert not [d for d in databases(pg) if "__verify_" in d], "the scratch database is dropped"


def test_password_never_appears_in_output(workspace, pg):
    for run in (workspace.play("backup-db.yml", "-vvv"), workspace.play("recover-db.yml", "-vvv", check=True)):
        assert run.rc == 0, run.output
        assert pg.password not in run.output


def test_retention_keeps_newest_verified(workspace, pg, chat_db):
    for _ in range(3):
        assert workspace.play("backup-db.yml", pg_backup_keep_last=2, pg_backup_skip_if_newer_than="0").rc == 0
    assert len(workspace.backups(chat_db)) == 2
    newest = workspace.backups(chat_db)[-1]
    # Corrupt the newest: now the older one is the newest *verified*, and retention must keep it.
    flip_one_byte(workspace.backup_root / chat_db / newest)
    assert workspace.play("verify-backups.yml", backup=newest).rc != 0
    older_verified = workspace.backups(chat_db)[0]
    assert workspace.play("backup-db.yml", pg_backup_keep_last=1, pg_backup_skip_if_newer_than="0").rc == 0
    remaining = workspace.backups(chat_db)
    assert older_verified in remaining and len(remaining) == 2


def test_one_module_call_backs_up_and_verifies(workspace, chat_db):
    """The backup, its checksum verification and retention are one pg_backup call: nothing else touches the server
    or the dump (each further task would cost a module round trip, bench/backup_fixed_cost.py)."""
    run, tasks = workspace.play_json("backup-db.yml")
    assert run.rc == 0, run.output
    [backup_id] = workspace.backups(chat_db)
    [made] = tasks["Back up each database"]["testdb"]["results"]
    assert made["created"] and made["backup"]["id"] == backup_id
    assert made["verification"] == {"ok": True, "levels_run": ["checksum"], "problems": []}
    assert made["backup"]["verified"] and made["backup"]["level"] == "checksum"
    record = json.loads((workspace.backup_root / chat_db / backup_id / "verification.json").read_text())
    assert record["levels"]["checksum"]["ok"]
    module_tasks = [name for name, hosts in tasks.items()
                    if any(r.get("invocation") for h in hosts.values() for r in h.get("results", [h]))]
    assert module_tasks == ["Back up each database"], module_tasks


def test_every_database_is_planned_before_the_first_backup(pg, chat_db, tmp_path):
    """A run over several databases stops at a missing one before any backup is written, and otherwise backs up
    and verifies each."""
    second = create_chat_db(pg)
    for name in ("broken", "both"):
        (tmp_path / name).mkdir()
    broken = Workspace(pg, [chat_db, second, "no_such_db"], tmp_path / "broken")
    run = broken.play("backup-db.yml")
    assert run.rc != 0 and "database 'no_such_db' does not exist" in run.output, run.output
    assert tree_state(broken.backup_root) == {}, "nothing written, not even a directory"

    both = Workspace(pg, [chat_db, second], tmp_path / "both")
    run, tasks = both.play_json("backup-db.yml")
    assert run.rc == 0, run.output
    results = tasks["Back up each database"]["testdb"]["results"]
    assert [r["item"] for r in results] == [chat_db, second]
    assert all(r["created"] and r["verification"]["ok"] for r in results)
    assert [len(both.backups(name)) for name in (chat_db, second)] == [1, 1]


def test_deeper_verification_in_the_same_call(workspace, pg, chat_db):
    run, tasks = workspace.play_json("backup-db.yml", pg_backup_verify_level="restore")
    assert run.rc == 0, run.output
    [made] = tasks["Back up each database"]["testdb"]["results"]
    assert made["verification"]["levels_run"] == ["checksum", "catalog", "restore"]
    assert made["backup"]["level"] == "restore"
    assert not [d for d in databases(pg) if "__verify_" in d], "the scratch database is dropped"


def test_a_table_held_locked_fails_the_backup_after_the_lock_wait_naming_why(workspace, pg, chat_db):
    """A migration holds a table: the backup's own reads wait no longer than pg_dump would (lock_wait_timeout),
    then it fails saying why and what to do, with nothing written, and its session has left the server."""
    with table_held_locked(pg, chat_db, "chat_messages") as waiting_sessions:
        run = workspace.play("backup-db.yml", pg_backup_lock_wait_timeout="1s")
        waiting = waiting_sessions()
    assert run.rc != 0
    assert "waited lock_wait_timeout (1 s) for a table another session holds locked" in run.output, run.output
    assert "nothing was written" in run.output and "pg_sessions" in run.output
    assert waiting == 0
    assert workspace.backups(chat_db) == [] and not list((workspace.backup_root / chat_db).glob(".*"))


def test_a_retried_try_of_the_same_run_reports_the_backup_its_earlier_try_finished(workspace, pg, chat_db):
    """An Airflow try killed after its backup was published is retried: the retry (same RUNBOOK_RUN_ID) reports that
    backup and takes no second one; its verification, if the killed try never reached it, is done by the retry. Another
    run (another id) backs up as usual."""
    workspace.env["RUNBOOK_RUN_ID"] = "backup_postgres/scheduled__2026-12-07T01:00:00+00:00/backup[3]"
    first = workspace.play("backup-db.yml", pg_backup_skip_if_newer_than="0")
    assert first.rc == 0 and first.changed == 1, first.output
    [backup_id] = workspace.backups(chat_db)
    manifest = json.loads((workspace.backup_root / chat_db / backup_id / "manifest.json").read_text())
    assert manifest["run_id"] == workspace.env["RUNBOOK_RUN_ID"]
    # The killed try had published the backup but not yet recorded its verification.
    (workspace.backup_root / chat_db / backup_id / "verification.json").unlink()

    retried, tasks = workspace.play_json("backup-db.yml", pg_backup_skip_if_newer_than="0")
    assert retried.rc == 0, retried.output
    assert workspace.backups(chat_db) == [backup_id]
    [reported] = tasks["Back up each database"]["testdb"]["results"]
    assert reported["backup"]["id"] == backup_id and not reported["created"]
    assert "taken by an earlier try of this run" in reported["msg"]
    assert reported["backup"]["verified"] and reported["verification"]["ok"]
    again = workspace.play("backup-db.yml", pg_backup_skip_if_newer_than="0")
    assert again.rc == 0 and again.changed == 0 and workspace.backups(chat_db) == [backup_id], again.output

    workspace.env["RUNBOOK_RUN_ID"] = "backup_postgres/manual__2026-12-07T09:12:00+00:00/backup[3]"
    assert workspace.play("backup-db.yml", pg_backup_skip_if_newer_than="0").rc == 0
    assert len(workspace.backups(chat_db)) == 2


def test_a_rollback_without_the_recovered_database_drops_nothing(workspace, pg, chat_db):
    """state=rolled_back names the database its recovery swapped in (recovered_oid): without it, it would rename
    the live database away and drop it; with another database's oid it refuses the same way."""
    before_rows = table_fingerprints(pg, chat_db)
    with connect(pg) as conn:
        live_oid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (chat_db,)).fetchone()[0]
    playbook = workspace.base / "rollback.yml"
    args = {"database": chat_db, "state": "rolled_back", "backup_root": "{{ pg_backup_root }}"}
    task = {"runbook.recovery.pg_restore_db": args,
            "register": "rollback", "ignore_errors": True}
    playbook.write_text(json.dumps([{
        "hosts": "postgres", "gather_facts": False,
        "module_defaults": {"group/runbook.recovery.postgres": "{{ pg_connection }}"},
        "tasks": [{**task, "name": "without recovered_oid"},
                  {**task, "name": "with another database's oid",
                   "runbook.recovery.pg_restore_db": {**args, "recovered_oid": live_oid + 100000}}]}]))
    run, tasks = workspace.play_json(str(playbook))
    missing, other = tasks["without recovered_oid"]["testdb"], tasks["with another database's oid"]["testdb"]
    assert missing["failed"] and "needs recovered_oid" in missing["msg"], missing
    assert other["failed"] and "no longer the database this recovery swapped in" in other["msg"], other
    assert table_fingerprints(pg, chat_db) == before_rows
    with connect(pg) as conn:
        assert conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (chat_db,)).fetchone()[0] == live_oid
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s",
                            (f"{chat_db}__failed%",)).fetchone()[0] == 0


def test_a_table_held_locked_during_the_plan_is_named_not_waited_for(workspace, pg, chat_db):
    """A migration holds a table while someone plans a recovery: the plan counts the other tables, names the locked
    one as not counted and finishes, instead of waiting behind the migration for as long as it runs."""
    assert workspace.play("backup-db.yml").rc == 0
    runs = []
    with table_held_locked(pg, chat_db, "chat_messages"):
        planner = threading.Thread(target=lambda: runs.append(workspace.play("recover-db.yml", check=True)))
        planner.start()
        planner.join(timeout=180)
        finished_while_locked = not planner.is_alive()
    planner.join()
    assert finished_while_locked, "the plan waited for the lock as long as the migration held it"
    [run] = runs
    assert run.rc == 0, run.output[-3000:]
    assert "public.chat_messages: held locked by another session" in run.output, run.output[-3000:]


def test_an_unwritable_audit_log_after_a_good_recovery_is_spooled_not_rolled_back(workspace, pg, chat_db):
    """The recovery worked but its record cannot be appended (the log's directory is a file): the database keeps the
    recovered rows, the run warns loudly and keeps the record in the spool; the next record written to that log
    appends the spooled one first, and the chain still verifies."""
    before_rows = table_fingerprints(pg, chat_db)
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    blocked = workspace.base / "blocked"
    blocked.write_text("not a directory")
    log = blocked / "audit.jsonl"
    workspace.env["RUNBOOK_AUDIT_SPOOL"] = str(workspace.base / "spool")
    recovery = workspace.play("recover-db.yml", confirm=True, runbook_audit_log=str(log))
    assert recovery.rc == 0, recovery.output[-3000:]
    assert "AUDIT RECORD NOT WRITTEN" in recovery.output and "was not undone" in recovery.output
    assert table_fingerprints(pg, chat_db) == before_rows  # recovered, and not rolled back
    [kept] = list((workspace.base / "spool").iterdir())
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    assert json.loads(kept.read_text())["record"]["result"] == "recovered"

    blocked.unlink()  # the log is fixed; the next record written to it brings the spooled one first
    again = workspace.play("recover-db.yml", confirm=True, runbook_audit_log=str(log))  # nothing to do: "unchanged"
    assert again.rc == 0 and "AUDIT RECORD NOT WRITTEN" not in again.output, again.output[-3000:]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["result"] for r in records] == ["recovered", "unchanged"], records
    assert "cannot append to the audit log" in records[0]["spooled"] and "spooled" not in records[1]
    assert not list((workspace.base / "spool").iterdir())
    verify = workspace.play("verify-audit.yml", audit_log=str(log))
    assert verify.rc == 0, verify.output[-2000:]
