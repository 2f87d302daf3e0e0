"""Point-in-time recovery, end to end: a cluster archiving its WAL with Barman's cloud tools into the AWS
emulator's S3, base backups, and recover-db.yml taking one database (or the whole cluster) back to a second,
a restore point or an LSN, through real ansible-playbook runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import ROOT, connect, free_port
from pitr_world import ArchivedCluster, archive_now, make_database, open_world, server_now, utc_iso

from sandbox.pgcluster import PgCluster

# make integration hands each file to one worker (--dist loadfile): these tests share one archiving cluster, in
# order, and the last replaces its data.


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


def test_bad_archiving_input_is_refused_before_any_change(archived):
    settings = archived.rows("postgres", "SELECT name, setting FROM pg_settings WHERE name LIKE 'archive%'")
    slow = archived.workspace.play("setup-archiving.yml", pg_archive_timeout=600)
    assert slow.rc != 0 and slow.says("archive_timeout=600 is outside 1..60 seconds"), slow.output[-2000:]
    nowhere = archived.workspace.play("setup-archiving.yml", pg_archive_create_bucket=False, pg_archive={
        **archived.archive, "destination": f"s3://rr-missing-{uuid.uuid4().hex[:6]}/pg"})
    assert nowhere.rc != 0 and nowhere.says("does not exist: create it"), nowhere.output[-2000:]
    window = archived.workspace.play("base-backup.yml", pg_archive_recovery_window_days=0)
    assert window.rc != 0 and window.says("recovery_window_days=0"), window.output[-2000:]
    assert archived.rows("postgres", "SELECT name, setting FROM pg_settings WHERE name LIKE 'archive%'") == settings


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


def one_row_then_another(world: ArchivedCluster, prefix: str) -> tuple[str, str]:
    """A new database whose table t holds row 1 at the moment returned, and rows 1 and 2 after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    make_database(world, name, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    time.sleep(1.1)
    moment = utc_iso(server_now(world))
    time.sleep(1.1)
    with connect(world.cluster, name) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    return name, moment


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
        assert plan.says("would restore base backup") and plan.says("in the archive")
        # The plan changed nothing: the later writes are all there (at the target there were 200 rows of A only).
        assert dict(archived.rows(shop, "SELECT batch, count(*) FROM items GROUP BY batch")) == {"A": 100, "B": 100}
        assert not archived.work_dir.exists() or list(archived.work_dir.iterdir()) == [], \
            "the check mode left a throwaway cluster or a dump"

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


def test_a_database_recovery_killed_before_and_after_its_swap_is_settled_by_the_next_run(archived):
    """The crash matrix's point-in-time recovery of one database: killed (the whole run, RUNBOOK_CRASH_AT) once its
    staging database is complete but before the swap, then, by the next run, right after the swap: the run after
    finishes the second one (probes and records it) instead of recovering again, which would have kept its
    unprobed copy and let the trim take the database it replaced. Nothing is left: no staging database, no journal,
    no throwaway cluster or dump, one kept copy holding the rows from before."""
    name, moment = one_row_then_another(archived, "crashdb")
    ws, journals = archived.workspace, archived.workspace.backup_root / ".journals"

    for step in ("swapping", "probing"):
        ws.env["RUNBOOK_CRASH_AT"] = step
        try:
            killed = ws.play("recover-db.yml", database=name, target_time=moment, confirm=True)
        finally:
            ws.env.pop("RUNBOOK_CRASH_AT")
        assert killed.rc == -9 and len(list(journals.glob("*.json"))) == 1, (step, killed.output[-3000:])
    plan = ws.play("recover-db.yml", check=True, database=name, target_time=moment)
    assert plan.rc == 0 and plan.says("stopped at step probing: it will be finished or undone first"), \
        plan.output[-3000:]

    done = ws.play("recover-db.yml", database=name, target_time=moment, confirm=True)
    assert done.rc == 0, done.output[-4000:]  # finished, not recovered again: that would keep a second copy
    assert archived.rows(name, "SELECT n FROM t ORDER BY n") == [(1,)]
    with connect(archived.cluster) as conn:
        left = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) "
                                               "ORDER BY 1", (name + "__",)).fetchall()]
    assert len(left) == 1 and left[0].startswith(name + "__pre_recovery_"), left
    assert archived.rows(left[0], "SELECT n FROM t ORDER BY n") == [(1,), (2,)], "the replaced database is lost"
    assert list(journals.glob("*")) == [] and list(archived.work_dir.iterdir()) == []
    again = ws.play("recover-db.yml", database=name, target_time=moment, confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]


def switch_and_wait(world: ArchivedCluster, times: int = 1) -> str:
    """archive_now, `times` over: that many segments finished and archived."""
    for _ in range(times):
        name = archive_now(world)
    return name


def test_target_name_undoes_a_kill_long_queries_run(archived):
    notes = f"notes_{uuid.uuid4().hex[:6]}"
    make_database(archived, notes, "CREATE TABLE notes (body text NOT NULL); INSERT INTO notes VALUES ('before')")
    runaway = threading.Thread(target=lambda: _sleep_query(archived, notes), daemon=True)
    runaway.start()
    time.sleep(2)
    run = archived.workspace.play("kill-long-queries.yml", pg_sessions_max_duration="1s", confirm=True)
    assert run.rc == 0 and run.changed > 0, run.output[-3000:]
    runaway.join(timeout=10)
    point = archived.workspace.audit()[-1]["restore_point"]
    assert point["name"].startswith("runbook-kill-long-queries-")
    with connect(archived.cluster, notes) as conn:
        conn.execute("INSERT INTO notes VALUES ('after')")

    # Through a sealed plan: the restore point, the base backup and the WAL range are pinned by the check run; the
    # apply is given the plan alone.
    plan_file = archived.workspace.base / "pitr-plan.json"
    made = archived.workspace.play("recover-db.yml", check=True, database=notes, target_name=point["name"],
                                   plan_out=str(plan_file))
    assert made.rc == 0, made.output[-4000:]
    [(host, pinned)] = json.loads(plan_file.read_text())["resources"].items()
    assert point["name"] in pinned["target"] and pinned["base_backup"] and pinned["wal_missing"] == []
    assert archived.rows(notes, "SELECT body FROM notes ORDER BY 1") == [("after",), ("before",)]
    recover = archived.workspace.play("recover-db.yml", plan=str(plan_file), confirm=True)
    assert recover.rc == 0, recover.output[-4000:]
    assert archived.rows(notes, "SELECT body FROM notes") == [("before",)]

    # The LSN of the same restore point takes it to the same place (and the LSN form is validated).
    with connect(archived.cluster, notes) as conn:
        conn.execute("INSERT INTO notes VALUES ('after again')")
    by_lsn = archived.workspace.play("recover-db.yml", database=notes, target_lsn=point["lsn"], confirm=True)
    assert by_lsn.rc == 0, by_lsn.output[-4000:]
    assert archived.rows(notes, "SELECT body FROM notes") == [("before",)]


def _sleep_query(world: ArchivedCluster, database: str) -> None:
    try:
        with connect(world.cluster, database) as conn:
            conn.execute("SELECT pg_sleep(60)")
    except psycopg.Error:
        pass


@pytest.mark.parametrize(("extra", "says"), [
    ({"target_time": "2099-01-01T00:00:00Z"}, "is in the future"),
    ({"target_time": "2020-01-01T00:00:00Z"}, "is before the recoverable window"),
    ({"target_time": "2026-11-25T14:02:00"}, "it has no time zone"),
    ({"target_time": "yesterday at two"}, "it is not a date and time"),
    ({"target_lsn": "12345"}, "is not an LSN"),
    ({"target_time": "2026-11-25T14:02:00Z", "target_lsn": "0/3000000"}, "give one recovery target"),
    ({"scope": "cluster", "target": "latest"}, "Not confirmed, nothing was changed"),
])
def test_bad_input_is_refused_before_any_change(archived, extra, says):
    before = archived.rows("postgres", "SELECT datname FROM pg_database ORDER BY 1")
    pid = archived.cluster.pid()
    confirm = {} if extra.get("scope") == "cluster" else {"confirm": True}
    run = archived.workspace.play("recover-db.yml", database="postgres", **extra, **confirm)
    assert run.rc != 0 and run.says(says), run.output[-3000:]
    assert archived.rows("postgres", "SELECT datname FROM pg_database ORDER BY 1") == before
    assert archived.cluster.pid() == pid
    assert not archived.work_dir.exists() or list(archived.work_dir.iterdir()) == []


def test_a_gap_in_the_wal_is_refused_in_the_plan(archived):
    gapdb = f"gap_{uuid.uuid4().hex[:6]}"
    make_database(archived, gapdb, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    switch_and_wait(archived, times=3)
    s3 = archived.s3()
    keys = [k for k in archived.wal_keys() if k.rsplit("/", 1)[-1][:24].isalnum() and ".history" not in k]
    victim = keys[-2]
    body = s3.get_object(Bucket=archived.bucket, Key=victim)["Body"].read()
    s3.delete_object(Bucket=archived.bucket, Key=victim)
    try:
        run = archived.workspace.play("recover-db.yml", database=gapdb, target="latest", confirm=True)
        assert run.rc != 0 and run.says("the WAL archive has a gap"), run.output[-3000:]
        assert run.says(victim.rsplit("/", 1)[-1][:24])
        assert archived.rows(gapdb, "SELECT n FROM t") == [(1,)]
        assert not any(r.get("result") == "recovered" and r.get("database") == gapdb
                       for r in archived.workspace.audit())
    finally:
        s3.put_object(Bucket=archived.bucket, Key=victim, Body=body)


def test_a_throwaway_cluster_killed_during_replay_leaves_the_live_cluster_alone(archived):
    victimdb = f"victim_{uuid.uuid4().hex[:6]}"
    make_database(archived, victimdb, "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)")
    switch_and_wait(archived, times=4)  # segments to replay: the replay takes a moment
    varsfile = archived.workspace.base / "kill.json"
    varsfile.write_text(json.dumps({"database": victimdb, "target": "latest", "confirm": True}))
    command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(archived.workspace.inventory),
               "playbooks/recover-db.yml", "-e", f"@{varsfile}"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        pidfiles = archived.work_dir.glob("runbook-pitr-*/data/postmaster.pid") if archived.work_dir.exists() else []
        for pidfile in pidfiles:
            try:
                killed = int(pidfile.read_text().split("\n", 1)[0])
                os.kill(killed, signal.SIGKILL)
            except (OSError, ValueError):
                killed = None
            break
        time.sleep(0.02)
    output, _ = proc.communicate(timeout=300)
    assert killed, "never saw the throwaway cluster's postmaster"
    assert proc.returncode != 0, output[-3000:]
    assert "was not touched" in " ".join(output.split()), output[-3000:]
    assert archived.rows(victimdb, "SELECT count(*) FROM t") == [(1000,)]
    names = [r[0] for r in archived.rows("postgres", "SELECT datname FROM pg_database")]
    assert not [n for n in names if n.startswith(victimdb + "__")], names
    assert list(archived.work_dir.iterdir()) == [], "the throwaway cluster was not cleaned up"


def archive_findings(world: ArchivedCluster) -> dict[str, dict]:
    document = json.loads((world.workspace.base / "reports" / "health-latest.json").read_text())
    return {f["check"]: f for f in document["findings"]
            if f["check"] in ("archive_failing", "archive_lag_seconds", "base_backup_age_hours")}


def test_health_sweep_watches_the_archive_and_an_unreachable_bucket_is_critical(archived):
    healthy = archived.workspace.play("health-sweep.yml")
    assert healthy.rc == 0, healthy.output[-3000:]
    found = archive_findings(archived)
    assert {check: f["severity"] for check, f in found.items()} == {
        "archive_failing": "ok", "archive_lag_seconds": "ok", "base_backup_age_hours": "ok"}

    config = Path(archived.archive["aws_dir"]) / "config"
    original = config.read_text()
    config.write_text(original.replace(archived.emulator["AWS_ENDPOINT_URL"], f"http://127.0.0.1:{free_port()}"))
    try:
        with connect(archived.cluster) as conn:
            failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
            conn.execute("SELECT txid_current()")
            conn.execute("SELECT pg_switch_wal()")
            deadline = time.monotonic() + 60
            while conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0] == failed:
                assert time.monotonic() < deadline, "the archiver never tried the unreachable bucket"
                time.sleep(0.2)
            # PostgreSQL keeps serving while archiving fails.
            conn.execute("CREATE TABLE IF NOT EXISTS still_serving (n int)")
            conn.execute("INSERT INTO still_serving VALUES (1)")
        sweep = archived.workspace.play("health-sweep.yml")
        assert sweep.rc != 0 and "worst finding is CRITICAL" in sweep.output, sweep.output[-3000:]
        failing = archive_findings(archived)["archive_failing"]
        assert failing["severity"] == "critical" and "the archiver is failing" in failing["message"]
        assert archived.rows("postgres", "SELECT count(*) FROM still_serving")[0][0] >= 1
    finally:
        config.write_text(original)
    switch_and_wait(archived)  # the segments that waited reach the archive once it is back
    assert archived.workspace.play("health-sweep.yml").rc == 0


# -- the whole cluster (last: it replaces the data directory) ------------------------------------------------
def test_cluster_round_trip_and_a_failed_probe_puts_the_old_directory_back(archived):
    clusterdb = f"whole_{uuid.uuid4().hex[:6]}"
    make_database(archived, clusterdb, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    time.sleep(1.1)
    moment = server_now(archived)
    time.sleep(1.1)
    with connect(archived.cluster, clusterdb) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("CREATE TABLE only_after_the_target (n int)")
    data = archived.cluster.data
    siblings = sorted(p.name for p in data.parent.iterdir())

    # The check mode plans the whole-cluster recovery and touches nothing: the server keeps running on its
    # directory, the later writes stay, nothing is moved, restored or journalled.
    plan = archived.workspace.play("recover-db.yml", scope="cluster", target_time=utc_iso(moment), confirm=True,
                                   check=True)
    assert plan.rc == 0 and plan.says(f"would stop the server, move {data} aside"), plan.output[-4000:]
    assert archived.cluster.running() and archived.rows(clusterdb, "SELECT n FROM t ORDER BY n") == [(1,), (2,)]
    assert sorted(p.name for p in data.parent.iterdir()) == siblings
    assert not archived.work_dir.exists() or list(archived.work_dir.iterdir()) == [], \
        "the check mode left a journal, a throwaway cluster or a dump"

    # A probe that only the current cluster passes: the recovered one fails it, the old directory comes back.
    failing = archived.workspace.play("recover-db.yml", scope="cluster", target_time=utc_iso(moment), confirm=True,
                                      pg_recover_health_query="SELECT count(*) FROM only_after_the_target")
    assert failing.rc != 0 and failing.says("The old data directory is back in place"), failing.output[-4000:]
    assert archived.rows(clusterdb, "SELECT n FROM t ORDER BY n") == [(1,), (2,)]
    assert sorted(p.name for p in data.parent.glob("data.failed_pitr_*")), "the failed attempt is kept for a look"

    run = archived.workspace.play("recover-db.yml", scope="cluster", target_time=utc_iso(moment), confirm=True)
    assert run.rc == 0, run.output[-4000:]
    assert archived.rows(clusterdb, "SELECT n FROM t ORDER BY n") == [(1,)]
    again = archived.workspace.play("recover-db.yml", scope="cluster", target_time=utc_iso(moment), confirm=True)
    assert again.rc == 0 and again.changed == 0 and again.says("the cluster already holds"), again.output[-3000:]
    kept = sorted(data.parent.glob("data.pre_pitr_*"))
    assert kept, "the previous data directory is kept"
    # The recovered cluster serves and archives on its new timeline, whose history file links it to the base
    # backups of the old one: the health sweep finds its archive this server's, recoverable.
    assert archived.rows("postgres", "SELECT timeline_id FROM pg_control_checkpoint()")[0][0] >= 2
    switch_and_wait(archived)
    archived.workspace.play("health-sweep.yml")
    report = json.loads((archived.workspace.base / "reports" / "health-latest.json").read_text())
    identity = [f for f in report["findings"] if f["check"] == "archive_identity"]
    assert identity and {f["severity"] for f in identity} == {"ok"}, identity


def test_a_cluster_recovery_killed_mid_run_is_undone_by_the_next_run(archived):
    """The crash matrix's cluster recovery: SIGKILL (the whole run) reaches no exception handler. Killed at each of
    its steps in turn (before the stop, with the server stopped, with its directory moved aside, while restoring,
    replaying and probing a new one, and once finished but not yet recorded), each run is found by the next,
    through the journal in the work directory, and undone before anything else (the check mode and the health
    sweep say so first), or, when it had finished, recorded instead of recovered again. Nothing is left: no
    journal, no half-restored directory, one kept previous directory."""
    assert archived.workspace.play("base-backup.yml").rc == 0
    clusterdb, moment = one_row_then_another(archived, "crash")
    data = archived.cluster.data
    kept_before = set(data.parent.glob("data.pre_pitr_*"))
    failed_before = set(data.parent.glob("data.failed_pitr_*"))  # an earlier test's failed probe, kept for a look
    journal = archived.work_dir / "cluster-pitr.journal.json"
    ws = archived.workspace

    def recover(crash_at: str | None = None, check: bool = False):
        if crash_at:
            ws.env["RUNBOOK_CRASH_AT"] = crash_at
        try:
            return ws.play("recover-db.yml", scope="cluster", target_time=moment, confirm=True, check=check)
        finally:
            ws.env.pop("RUNBOOK_CRASH_AT", None)

    running = recover(crash_at="stopping")  # killed before it stopped anything: the next run only closes its journal
    assert running.rc == -9 and journal.exists() and archived.cluster.running(), running.output[-3000:]
    stopped = recover(crash_at="moving")  # killed with the server stopped, its directory still in place
    assert stopped.rc == -9 and journal.exists() and not archived.cluster.running(), stopped.output[-3000:]
    plan = recover(check=True)
    assert plan.rc == 0 and plan.says("an interrupted cluster recovery"), plan.output[-3000:]
    sweep = ws.play("health-sweep.yml")
    assert sweep.rc != 0 and sweep.says("was killed at step moving: run recover-db.yml"), sweep.output[-3000:]
    assert not archived.cluster.running(), "the check mode changed something"

    # Each next run undoes the one before (starts the server on its directory), then is killed itself, a step later.
    for step in ("restoring", "replaying", "probing"):
        moved = recover(crash_at=step)
        assert moved.rc == -9 and journal.exists(), (step, moved.output[-3000:])
        assert json.loads(journal.read_text())["step"] == step
        assert set(data.parent.glob("data.pre_pitr_*")) - kept_before, "the directory was not moved aside"
        assert archived.cluster.running() == (step == "probing"), step  # up on the new directory, not yet probed

    finished = recover(crash_at="finished")  # undoes the one killed while probing, recovers, killed at the end
    assert finished.rc == -9 and json.loads(journal.read_text())["step"] == "finished", finished.output[-3000:]
    kept_now = set(data.parent.glob("data.pre_pitr_*"))

    done = recover()  # only records what the last one reached: it does not recover again
    assert done.rc == 0, done.output[-4000:]
    assert set(data.parent.glob("data.pre_pitr_*")) == kept_now, "the cluster was recovered a second time"
    [record] = [r for r in ws.audit() if r.get("result") == "recovered" and r.get("undone_interrupted")]
    assert record["undone_interrupted"]["step"] == "finished" and record["scope"] == "cluster", record
    assert archived.rows(clusterdb, "SELECT n FROM t ORDER BY n") == [(1,)]
    assert not journal.exists() and set(data.parent.glob("data.failed_pitr_*")) == failed_before
    assert len(set(data.parent.glob("data.pre_pitr_*")) - kept_before) == 1  # this recovery's, kept as always
    assert not list(data.parent.glob("*.walspool"))
