"""db-maintenance, integrity-check and kill-long-queries on real servers."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from conftest import Workspace, connect, create_chat_db


def many_tables_db(cluster, tables: int = 10) -> str:
    name = f"maint_{uuid.uuid4().hex[:8]}"
    with connect(cluster) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with connect(cluster, name) as conn:
        for i in range(tables):
            conn.execute(f"CREATE TABLE t{i} (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)")
            conn.execute(f"INSERT INTO t{i} SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
        conn.execute("SELECT pg_stat_force_next_flush()")
    with connect(cluster, name) as conn:  # after the inserts are counted, so ANALYZE settles them
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_force_next_flush()")
    return name


def bloat(cluster, database: str, table: str) -> None:
    with connect(cluster, database) as conn:
        conn.execute(f"UPDATE {table} SET v = v || 'x'")
        conn.execute(f"DELETE FROM {table} WHERE id % 2 = 0")
        conn.execute("SELECT pg_stat_force_next_flush()")


def table_stats(cluster, database: str) -> dict[str, tuple[int, bool]]:
    time.sleep(0.3)
    with connect(cluster, database) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT relname, n_dead_tup, last_vacuum IS NOT NULL FROM pg_stat_user_tables").fetchall()}


def test_maintenance_vacuums_exactly_the_bloated_table(pg, tmp_path):
    database = many_tables_db(pg)
    bloat(pg, database, "t3")
    before = table_stats(pg, database)
    assert before["t3"][0] > 1000

    workspace = Workspace(pg, [database], tmp_path)
    check, tasks = workspace.play_json("db-maintenance.yml", check=True)
    assert check.rc == 0
    [planned] = tasks["VACUUM/ANALYZE the tables that need it"]["testdb"]["results"]
    assert [t["table"] for t in planned["tables"]] == ["t3"]
    assert table_stats(pg, database) == before, "--check vacuumed nothing"

    run, tasks = workspace.play_json("db-maintenance.yml")
    assert run.rc == 0 and run.changed > 0
    [done] = tasks["VACUUM/ANALYZE the tables that need it"]["testdb"]["results"]
    assert [(t["table"], t["dead_tuples_before"] > 1000, t["dead_tuples_after"]) for t in done["tables"]] == [
        ("t3", True, 0)]
    after = table_stats(pg, database)
    assert after["t3"] == (0, True)
    assert all(not vacuumed for name, (_dead, vacuumed) in after.items() if name != "t3")

    again = workspace.play("db-maintenance.yml")
    assert again.rc == 0 and again.changed == 0, again.output


def test_locked_table_is_skipped_not_waited_on(pg, tmp_path):
    database = many_tables_db(pg, tables=3)
    workspace = Workspace(pg, [database], tmp_path)
    with connect(pg, database) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        run, tasks = workspace.play_json("db-maintenance.yml", pg_maintenance_mode="all",
                                         pg_maintenance_lock_timeout="1s")
        elapsed = time.monotonic() - started
        assert run.rc == 0, run.output
        [result] = tasks["VACUUM/ANALYZE the tables that need it"]["testdb"]["results"]
        assert [t["table"] for t in result["skipped"]] == ["t1"]
        assert "lock_timeout=1s" in result["skipped"][0]["skip_reason"]
        assert sorted(t["table"] for t in result["tables"]) == ["t0", "t2"]
        assert holder.execute("SELECT count(*) FROM t1").fetchone()[0] == 2000  # the holder was never disturbed
        holder.execute("COMMIT")
    assert elapsed < 60


def test_integrity_reports_a_corrupt_index_and_passes_a_clean_database(private_pg, tmp_path):
    clean = create_chat_db(private_pg)
    damaged = f"damaged_{uuid.uuid4().hex[:6]}"
    with connect(private_pg) as conn:
        conn.execute(f'CREATE DATABASE "{damaged}"')
    with connect(private_pg, damaged) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, email text)")
        conn.execute("INSERT INTO accounts SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX accounts_email ON accounts (email)")
        conn.execute("CHECKPOINT")
        index_file = conn.execute("SELECT current_setting('data_directory') || '/' || "
                                  "pg_relation_filepath('accounts_email')").fetchone()[0]
    workspace = Workspace(private_pg, [clean, damaged], tmp_path)
    assert workspace.play("integrity-check.yml", database=clean).rc == 0

    private_pg.stop()
    with open(index_file, "r+b") as handle:  # garbage in the middle of block 2 of the index
        handle.seek(8192 * 2 + 2000)
        handle.write(b"\xde\xad\xbe\xef" * 256)
    private_pg.start()

    run, tasks = workspace.play_json("integrity-check.yml")
    assert run.rc != 0
    results = {r["item"]: r for r in tasks["Run amcheck on every table and index"]["testdb"]["results"]}
    assert results[clean]["corrupt"] == [] and not results[clean].get("failed")
    corrupt = results[damaged]["corrupt"]
    assert [c["relation"] for c in corrupt] == ["public.accounts_email"]
    assert "CORRUPTION" in results[damaged]["msg"]
    again = workspace.play("integrity-check.yml", database=clean)
    assert again.rc == 0 and again.changed == 0


def test_invalid_index_is_rebuilt(pg, tmp_path):
    database = many_tables_db(pg, tables=1)
    # A build cancelled while it waits for a writer's transaction leaves the invalid index behind, as a
    # CREATE INDEX CONCURRENTLY that failed in production does: the writer's open transaction holds it in its wait
    # (whatever the machine's speed) until its statement timeout cancels it.
    writer = connect(pg, database)
    writer.autocommit = False
    writer.execute("INSERT INTO t0 SELECT g, md5(g::text) FROM generate_series(2001, 2100) g")
    try:
        with connect(pg, database) as conn:
            conn.execute("SET statement_timeout = '1s'")
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("CREATE INDEX CONCURRENTLY t0_v ON t0 (v)")
    finally:
        writer.rollback()
        writer.close()
    with connect(pg, database) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't0_v'::regclass").fetchone() == (
            False,)
    workspace = Workspace(pg, [database], tmp_path)
    run, tasks = workspace.play_json("db-maintenance.yml")
    assert run.rc == 0
    [repair] = tasks["Rebuild invalid indexes concurrently"]["testdb"]["results"]
    assert repair["rebuilt"] == ["public.t0_v"]
    with connect(pg, database) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't0_v'::regclass").fetchone() == (True,)
    assert workspace.play("db-maintenance.yml").changed == 0


def test_a_rebuild_that_fails_after_another_succeeded_says_which_one_stands(pg, tmp_path):
    """The outcome seam for PostgreSQL: two invalid indexes, each left by a CREATE INDEX CONCURRENTLY that failed;
    one can be rebuilt now (its duplicate is gone), the other cannot (its expression fails on a row)."""
    database = many_tables_db(pg, tables=1)
    with connect(pg, database) as conn:
        conn.execute("INSERT INTO t0 SELECT 5000, v FROM t0 WHERE id = 1")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY t0_u ON t0 (v)")
        conn.execute("DELETE FROM t0 WHERE id = 5000")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("CREATE INDEX CONCURRENTLY t0_x ON t0 ((1 / (id - 5)))")
    workspace = Workspace(pg, [database], tmp_path)
    run = workspace.play("db-maintenance.yml")
    assert run.rc != 0 and run.says("could not rebuild 1 index(es): public.t0_x: division by zero (the copy the "
                                    "rebuild left, public.t0_x_ccnew, was dropped)"), run.output[-3000:]
    assert run.says(f"Changed before the failure and still in place: index public.t0_u of {database} rebuilt."), \
        run.output[-3000:]
    with connect(pg, database) as conn:
        valid = dict(conn.execute("SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
                                  "WHERE indrelid = 't0'::regclass AND indexrelid::regclass::text <> 't0_pkey'"))
    assert valid == {"t0_u": True, "t0_x": False}


class Sleeper(threading.Thread):
    """A session running pg_sleep, as an application would run a runaway query."""

    def __init__(self, cluster, application: str, seconds: int = 60):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(**cluster.conninfo(), autocommit=True, application_name=application)
        self.pid = self.conn.info.backend_pid
        self.seconds, self.error = seconds, None

    def run(self):
        try:
            self.conn.execute(f"SELECT pg_sleep({self.seconds})")
        except psycopg.Error as exc:
            self.error = exc


def active_pids(cluster) -> set[int]:
    with connect(cluster) as conn:
        return {r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE state = 'active'").fetchall()}


def assert_restore_point_before(cluster, restore_point: dict, procedure: str) -> None:
    """The run marked the WAL before it acted: a name that says what and when, at an LSN already written."""
    assert restore_point["name"].startswith(f"runbook-{procedure}-"), restore_point
    with connect(cluster) as conn:
        assert conn.execute("SELECT %s::pg_lsn <= pg_current_wal_lsn()", (restore_point["lsn"],)).fetchone()[0]


def test_runaway_query_is_cancelled_only_when_confirmed(pg, chat_db, tmp_path):
    workspace = Workspace(pg, [chat_db], tmp_path)
    runaway, reporting = Sleeper(pg, "chat-backend"), Sleeper(pg, "nightly-report")
    runaway.start()
    reporting.start()
    time.sleep(1.5)
    own = psycopg.connect(**pg.conninfo(), autocommit=True)
    try:
        check, tasks = workspace.play_json("kill-long-queries.yml", check=True, pg_sessions_max_duration="1s",
                                           pg_sessions_exclude_applications=["nightly-report"])
        assert check.rc == 0
        plan = tasks["Find long queries, idle transactions and blocking chains (changes nothing)"]["testdb"]
        assert [s["pid"] for s in plan["long_running"]] == [runaway.pid]
        # Sessions of other tests on this cluster (a WAL sender, another tool's query) may be excluded too.
        assert [s["pid"] for s in plan["excluded"] if s["why"] == "application 'nightly-report' is excluded"] \
            == [reporting.pid]
        assert {runaway.pid, reporting.pid} <= active_pids(pg), "--check touched nothing"

        refused = workspace.play("kill-long-queries.yml", pg_sessions_max_duration="1s",
                                 pg_sessions_exclude_applications=["nightly-report"])
        assert refused.rc != 0 and "Not confirmed" in refused.output
        assert runaway.pid in active_pids(pg)

        run = workspace.play("kill-long-queries.yml", pg_sessions_max_duration="1s", confirm=True,
                             pg_sessions_terminate_after="10m", pg_sessions_exclude_applications=["nightly-report"])
        assert run.rc == 0 and run.changed > 0, run.output
        runaway.join(timeout=10)
        assert isinstance(runaway.error, psycopg.errors.QueryCanceled)
        assert reporting.pid in active_pids(pg), "the excluded session survives"
        assert own.execute("SELECT 1").fetchone() == (1,), "the test's own session survives"
        record = workspace.audit()[-1]
        assert record["cancelled"] == [runaway.pid]
        assert_restore_point_before(pg, record["restore_point"], "kill-long-queries")
        again = workspace.play("kill-long-queries.yml", pg_sessions_max_duration="1s", confirm=True,
                               pg_sessions_exclude_applications=["nightly-report"])
        assert again.rc == 0 and again.changed == 0, again.output
    finally:
        own.close()
        with connect(pg) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                         ([reporting.pid, runaway.pid],))


def test_a_sealed_plan_cancels_the_sessions_it_found_and_leaves_later_ones_alone(pg, chat_db, tmp_path):
    """--check -e plan_out=FILE lists the runaway sessions by pid, backend start and query start; -e plan=FILE acts
    on those only: a query that went past the limit after the plan was made is not what anybody approved, so it is
    left alone and named."""
    workspace = Workspace(pg, [chat_db], tmp_path)
    planned = Sleeper(pg, "chat-backend")
    planned.start()
    time.sleep(1.5)
    later = None
    try:
        plan_file = tmp_path / "kill.json"
        made = workspace.play("kill-long-queries.yml", check=True, pg_sessions_max_duration="1s",
                              pg_sessions_terminate_after="10m", plan_out=str(plan_file))
        assert made.rc == 0, made.output
        later = Sleeper(pg, "chat-backend")
        later.start()
        time.sleep(1.5)
        assert {planned.pid, later.pid} <= active_pids(pg), "--check touched nothing"

        run, tasks = workspace.play_json("kill-long-queries.yml", plan=str(plan_file), confirm=True)
        assert run.rc == 0 and run.recap["testdb"]["changed"] > 0, run.output
        planned.join(timeout=10)
        assert isinstance(planned.error, psycopg.errors.QueryCanceled)
        assert later.pid in active_pids(pg), "a session the plan did not list was acted on"
        acted = tasks["Cancel, then terminate, past the thresholds"]["testdb"]
        assert [s["pid"] for s in acted["not_planned"]] == [later.pid]
        assert f"left alone pid {later.pid} (postgres, postgres): past the limits now, not in the plan" \
            in acted["lines"]
        record = workspace.audit()[-1]
        assert record["cancelled"] == [planned.pid] and record["terminated"] == []
    finally:
        with connect(pg) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                         ([planned.pid] + ([later.pid] if later else []),))


def test_query_past_terminate_after_is_terminated(pg, chat_db, tmp_path):
    workspace = Workspace(pg, [chat_db], tmp_path)
    runaway = Sleeper(pg, "chat-backend")
    runaway.start()
    time.sleep(2.5)
    run = workspace.play("kill-long-queries.yml", confirm=True, pg_sessions_max_duration="1s",
                         pg_sessions_terminate_after="2s")
    assert run.rc == 0, run.output
    runaway.join(timeout=10)
    assert isinstance(runaway.error, psycopg.errors.AdminShutdown)
    assert workspace.audit()[-1]["terminated"] == [runaway.pid]


def test_blocking_chain_is_reported_blocker_first(pg, chat_db, tmp_path):
    workspace = Workspace(pg, [chat_db], tmp_path)
    blocker = psycopg.connect(**pg.conninfo(chat_db), application_name="migration")
    blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # and stays idle in its transaction
    waiters, threads = [], []
    for _ in range(2):
        conn = psycopg.connect(**pg.conninfo(chat_db), autocommit=True)
        threads.append(threading.Thread(target=lambda c=conn: c.execute("SELECT count(*) FROM users"), daemon=True))
        threads[-1].start()
        waiters.append(conn)
    time.sleep(1)
    try:
        run, tasks = workspace.play_json("kill-long-queries.yml", check=True)
        assert run.rc == 0
        plan = tasks["Find long queries, idle transactions and blocking chains (changes nothing)"]["testdb"]
        [chain] = plan["blocking_chains"]
        assert chain["blocker"]["pid"] == blocker.info.backend_pid
        assert sorted(w["pid"] for w in chain["waiting"]) == sorted(c.info.backend_pid for c in waiters)
    finally:
        blocker.rollback()
        blocker.close()
        # The waiters' queries finish once the lock is gone; closing a connection while another thread still
        # executes on it crashes libpq (a segfault of the whole test worker).
        for thread in threads:
            thread.join(timeout=30)
        for conn in waiters:
            conn.close()


def test_an_idle_transaction_holding_a_lock_is_terminated_and_its_waiters_go_on(pg, chat_db, tmp_path):
    """A migration took a lock and went idle in its transaction; the application's query waits behind it. The
    confirmed run terminates the idle blocker (idle_in_transaction), never the waiting query, which then
    completes."""
    workspace = Workspace(pg, [chat_db], tmp_path)
    blocker = psycopg.connect(**pg.conninfo(chat_db), application_name="migration")
    blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # and stays idle in its transaction
    blocker_pid = blocker.info.backend_pid
    waiter = psycopg.connect(**pg.conninfo(chat_db), autocommit=True, application_name="chat-backend")
    counted = []
    thread = threading.Thread(target=lambda: counted.append(waiter.execute("SELECT count(*) FROM users")
                                                            .fetchone()[0]), daemon=True)
    thread.start()
    try:
        with connect(pg) as watcher:  # both in place: the blocker idle for over a second, the waiter behind it
            deadline = time.monotonic() + 30
            while watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE (pid = %s AND state = 'idle in transaction' "
                    "AND now() - state_change > interval '1.5 seconds') OR (pid = %s AND wait_event_type = 'Lock')",
                    (blocker_pid, waiter.info.backend_pid)).fetchone()[0] < 2:
                assert time.monotonic() < deadline, "the blocker and its waiter never both showed"
                time.sleep(0.1)
        run = workspace.play("kill-long-queries.yml", confirm=True, pg_sessions_idle_in_transaction="1s",
                             pg_sessions_max_duration="10m")
        assert run.rc == 0 and run.changed > 0, run.output[-3000:]
        thread.join(30)
        assert counted and counted[0] > 0, "the waiting query never completed"
        with pytest.raises(psycopg.OperationalError):
            blocker.execute("SELECT 1")
        record = workspace.audit()[-1]
        assert record["terminated"] == [blocker_pid], record
    finally:
        thread.join(30)
        blocker.close()
        waiter.close()


def test_a_database_owners_function_never_runs_as_the_integrity_checker(pg, tmp_path):
    """The owner of a database (no superuser) puts functions named like amcheck's in a schema named after the
    superuser, first on PostgreSQL's default search_path ("$user", public): the check calls amcheck's own, by
    schema, on a connection whose search_path holds nobody's schema, so the owner's code never runs as the
    superuser who checks (it would have made its owner a superuser)."""
    owner, database = f"mallory_{uuid.uuid4().hex[:6]}", f"owned_{uuid.uuid4().hex[:6]}"
    with connect(pg) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    with connect(pg, database) as conn:
        conn.execute("CREATE EXTENSION amcheck SCHEMA public")  # installed by the DBA, as usual
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, email text)")
        conn.execute("INSERT INTO accounts SELECT g, 'u' || g FROM generate_series(1, 100) g")
        conn.execute(f'CREATE SCHEMA postgres AUTHORIZATION "{owner}"')
        escalate = f"""BEGIN EXECUTE 'ALTER ROLE "{owner}" SUPERUSER'; END"""
        conn.execute(f"CREATE FUNCTION postgres.bt_index_check(regclass, boolean) RETURNS void "
                     f"LANGUAGE plpgsql AS $f$ {escalate} $f$")
        conn.execute(f"CREATE FUNCTION postgres.verify_heapam(regclass) RETURNS TABLE (blkno bigint, offnum int, "
                     f"msg text) LANGUAGE plpgsql AS $f$ {escalate} $f$")
    workspace = Workspace(pg, [database], tmp_path)
    run, tasks = workspace.play_json("integrity-check.yml", database=database)
    [result] = tasks["Run amcheck on every table and index"]["testdb"]["results"]
    with connect(pg) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()[0] is False
    assert run.rc == 0 and result["corrupt"] == [], run.output[-3000:]
    assert result["checked"]["indexes"] >= 1, result
