"""recover-db faithful and exclusive: the database's own state (ACL, comment, settings, per-role settings), large
objects and extensions come back; one run per database at a time, even when a controller or a module is killed;
any name PostgreSQL accepts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import psycopg
import pytest
from conftest import ANSIBLE_PLAYBOOK, ROOT, connect, create_chat_db, databases, disaster, table_fingerprints

from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import kept_prefix, staging_name
from sandbox.pgcluster import process_alive

LOCK_CLASS = 0x72726563  # plugins/module_utils/postgres.py LOCK_CLASS: what a DBA would look for in pg_locks


def database_state(cluster, name: str) -> dict:
    """The rows a DBA compares: pg_database's ACL, owner and limit, pg_shdescription, pg_db_role_setting."""
    with connect(cluster) as conn:
        acl, owner, limit, comment = conn.execute(
            "SELECT datacl::text, pg_get_userbyid(datdba), datconnlimit, shobj_description(oid, 'pg_database') "
            "FROM pg_database WHERE datname = %s", (name,)).fetchone()
        settings = conn.execute(
            "SELECT coalesce(r.rolname, '(database)'), s.setconfig FROM pg_db_role_setting s "
            "JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE d.datname = %s ORDER BY 1", (name,)).fetchall()
    return {"acl": acl, "owner": owner, "connection_limit": limit, "comment": comment, "settings": settings}


def large_objects(cluster, name: str) -> dict[int, str]:
    with connect(cluster, name) as conn:
        return dict(conn.execute("SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1"))


def test_database_state_large_objects_and_extensions_come_back(workspace, pg, chat_db):
    app, reader = f"app_{uuid.uuid4().hex[:6]}", f"reader_{uuid.uuid4().hex[:6]}"
    with connect(pg) as conn:
        conn.execute(f'CREATE ROLE "{app}" LOGIN')
        conn.execute(f'CREATE ROLE "{reader}"')
        conn.execute(f'REVOKE CONNECT ON DATABASE "{chat_db}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT, TEMP ON DATABASE "{chat_db}" TO "{app}" WITH GRANT OPTION')
        conn.execute(f'SET ROLE "{app}"; GRANT CONNECT ON DATABASE "{chat_db}" TO "{reader}"; RESET ROLE')
        conn.execute(f"COMMENT ON DATABASE \"{chat_db}\" IS 'Chat history: données d''utilisateurs'")
        conn.execute(f"ALTER DATABASE \"{chat_db}\" SET work_mem = '8MB'")
        conn.execute(f'ALTER DATABASE "{chat_db}" SET search_path = "$user", public')
        conn.execute(f'ALTER DATABASE "{chat_db}" CONNECTION LIMIT 50')
        conn.execute(f"ALTER ROLE \"{app}\" IN DATABASE \"{chat_db}\" SET statement_timeout = '5s'")
    with connect(pg, chat_db) as conn:
        conn.execute("CREATE EXTENSION citext")
        conn.execute("CREATE TABLE handles (handle citext PRIMARY KEY)")
        conn.execute("INSERT INTO handles VALUES ('Alice'), ('BOB')")
        conn.execute("SELECT lo_from_bytea(0, 'hello'::bytea), lo_from_bytea(0, decode(repeat('ab', 300000), 'hex'))")
    state, objects, rows = database_state(pg, chat_db), large_objects(pg, chat_db), table_fingerprints(pg, chat_db)
    assert len(objects) == 2 and f"{reader}=c/{app}" in state["acl"]

    assert workspace.play("backup-db.yml").rc == 0
    [backup_id] = workspace.backups(chat_db)
    manifest = json.loads((workspace.backup_root / chat_db / backup_id / "manifest.json").read_text())
    assert manifest["large_objects"] == 2 and manifest["database_properties"]["comment"].startswith("Chat history")

    # The wreck: the database opened to everyone, its comment and settings changed, a large object gone, rows lost.
    with connect(pg) as conn:
        conn.execute(f'GRANT ALL ON DATABASE "{chat_db}" TO PUBLIC')
        conn.execute(f"COMMENT ON DATABASE \"{chat_db}\" IS 'oops'")
        conn.execute(f'ALTER ROLE "{app}" IN DATABASE "{chat_db}" RESET ALL')
    with connect(pg, chat_db) as conn:
        conn.execute("SELECT lo_unlink(min(oid)) FROM pg_largeobject_metadata")
    disaster(pg, chat_db)

    plan = workspace.play_json("recover-db.yml", check=True)[1]["Plan the recovery of " + chat_db]["testdb"]
    assert plan["plan"]["database_state_from"] == "backup" and plan["plan"]["cannot_carry"] == []
    recovery = workspace.play("recover-db.yml", confirm=True)
    assert recovery.rc == 0, recovery.output
    assert database_state(pg, chat_db) == state
    assert large_objects(pg, chat_db) == objects
    assert table_fingerprints(pg, chat_db) == rows
    with connect(pg, chat_db) as conn:  # the extension's type works: citext compares without case
        assert conn.execute("SELECT count(*) FROM handles WHERE handle = 'alice'").fetchone()[0] == 1

    # Dropped altogether: everything comes from the backup's manifest alone.
    with connect(pg) as conn:
        conn.execute(f'DROP DATABASE "{chat_db}" WITH (FORCE)')
    again = workspace.play("recover-db.yml", confirm=True)
    assert again.rc == 0, again.output
    assert database_state(pg, chat_db) == state and large_objects(pg, chat_db) == objects


def test_a_backup_from_before_the_state_was_recorded_still_restores_and_the_plan_says_so(workspace, pg, chat_db):
    assert workspace.play("backup-db.yml").rc == 0
    [backup_id] = workspace.backups(chat_db)
    path = workspace.backup_root / chat_db / backup_id / "manifest.json"
    manifest = json.loads(path.read_text())
    old = {key: manifest["database_properties"][key] for key in ("encoding", "collate", "ctype", "owner",
                                                                 "size_bytes", "settings")}
    manifest.update(format=1, database_properties=old)
    del manifest["large_objects"]
    path.write_text(json.dumps(manifest))  # what a backup written by the previous release holds
    with connect(pg) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{chat_db}\" IS 'kept from the current database'")
    before = table_fingerprints(pg, chat_db)
    disaster(pg, chat_db)

    plan = workspace.play("recover-db.yml", "-v", check=True)
    assert plan.rc == 0 and plan.says(f"comment: not recorded by backup {backup_id}"), plan.output
    run = workspace.play("recover-db.yml", confirm=True)
    assert run.rc == 0, run.output
    assert table_fingerprints(pg, chat_db) == before
    assert database_state(pg, chat_db)["comment"] == "kept from the current database"


# -- one run at a time ------------------------------------------------------------------------
def lock_holder(cluster, database: str) -> dict | None:
    with connect(cluster) as conn:
        row = conn.execute(
            "SELECT a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.classid = %s::int4::oid AND l.objid = hashtext(%s)::oid", (LOCK_CLASS, database)
        ).fetchone()
    return json.loads(row[0].split("holder: ", 1)[1].split(" */", 1)[0]) if row else None


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_controller(workspace, **extra) -> subprocess.Popen:
    """ansible-playbook in a process group of its own, as a shell or a CI runner starts it."""
    varsfile = workspace.base / f"extra-{uuid.uuid4().hex[:6]}.json"
    varsfile.write_text(json.dumps(extra))
    return subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", str(workspace.inventory), str(ROOT / "playbooks/recover-db.yml"),
                             "-e", f"@{varsfile}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(workspace.base)},
                            start_new_session=True)


def restore_processes(database: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "pg_restore" in cmdline and database in cmdline and process_alive(int(pid)):
            found.append(int(pid))
    return found


def test_a_killed_controller_cannot_let_a_second_run_in(workspace, pg, chat_db):
    gate = f"gate_{uuid.uuid4().hex[:8]}"
    with connect(pg, chat_db) as conn:  # restored with the rest: the SQL probe below waits while the role exists
        conn.execute("CREATE FUNCTION wait_while_role_exists(name) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
                     "WHILE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) LOOP PERFORM pg_sleep(0.1); END LOOP; "
                     "RETURN true; END $$")
    add_bulk(pg, chat_db)  # pg_restore runs for seconds: the kill lands mid-restore
    before = table_fingerprints(pg, chat_db)
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    staging = f"{chat_db}__recovery_staging"

    # The module outlives its controller (Ansible runs it in a session of its own). Its SQL probe waits for a
    # role this test holds, so the first run is still busy, for sure, while the second one starts.
    with connect(pg) as gatekeeper:
        gatekeeper.execute(f'CREATE ROLE "{gate}"')
        first = start_controller(workspace, confirm=True,
                                 pg_recover_health_query=f"SELECT wait_while_role_exists('{gate}')")
        wait_for(lambda: restore_processes(chat_db), 60, "pg_restore into the staging database")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        holder = lock_holder(pg, chat_db)
        assert holder and holder["procedure"] == "recover-db" and process_alive(holder["pid"])

        second = workspace.play("recover-db.yml", confirm=True, pg_recover_lock_wait=0)
        assert second.rc != 0 and second.changed == 0, second.output
        assert second.says(f"another run is working on database '{chat_db}': recover-db run by pid {holder['pid']} "
                           f"on host {holder['host']}, started {holder['started_at']}"), second.output
        assert process_alive(holder["pid"]), "the first run goes on undisturbed"
        gatekeeper.execute(f'DROP ROLE "{gate}"')

    wait_for(lambda: not process_alive(holder["pid"]), 60, "the first run's module to finish by itself")
    assert lock_holder(pg, chat_db) is None
    assert table_fingerprints(pg, chat_db) == before, "the database holds exactly the backup's contents"
    assert not [d for d in databases(pg) if d.startswith(staging)] and not restore_processes(chat_db)
    third = workspace.play("recover-db.yml", confirm=True)
    assert third.rc == 0 and third.changed == 0, third.output  # it already holds that backup


def add_bulk(cluster, database: str) -> None:
    """Enough rows that pg_restore runs for a few seconds."""
    with connect(cluster, database) as conn:
        conn.execute("CREATE TABLE bulk AS SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 6) AS payload "
                     "FROM generate_series(1, 400000) AS i")
        conn.execute("CREATE INDEX bulk_payload ON bulk (payload)")


def test_a_killed_module_takes_its_restore_and_its_lock_with_it(workspace, pg, chat_db):
    add_bulk(pg, chat_db)
    before = table_fingerprints(pg, chat_db)
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    staging = f"{chat_db}__recovery_staging"

    first = start_controller(workspace, confirm=True)
    wait_for(lambda: restore_processes(chat_db), 60, "pg_restore into the staging database")
    holder = lock_holder(pg, chat_db)
    os.kill(holder["pid"], signal.SIGKILL)  # an OOM kill of the module
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    wait_for(lambda: not restore_processes(chat_db), 10, "pg_restore to die with its module")
    wait_for(lambda: lock_holder(pg, chat_db) is None, 10, "the lock to go with the module")
    assert staging in databases(pg), "a half-restored staging database is left behind"

    recovery = workspace.play("recover-db.yml", confirm=True, pg_recover_lock_wait=0)
    assert recovery.rc == 0, recovery.output
    assert table_fingerprints(pg, chat_db) == before
    assert staging not in databases(pg)


def test_a_run_that_loses_its_lock_stops_before_the_swap(workspace, pg, chat_db):
    add_bulk(pg, chat_db)
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    damaged = table_fingerprints(pg, chat_db)
    run = start_controller(workspace, confirm=True)
    wait_for(lambda: restore_processes(chat_db), 60, "pg_restore into the staging database")
    with connect(pg) as conn:  # the lock's connection is cut, as a server timeout or a network failure would
        conn.execute("SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' "
                     "AND l.classid = %s::int4::oid AND l.objid = hashtext(%s)::oid", (LOCK_CLASS, chat_db))
    run.wait(timeout=300)
    assert run.returncode != 0
    assert table_fingerprints(pg, chat_db) == damaged, "nothing was swapped in"
    assert not [d for d in databases(pg) if d.startswith(chat_db + "__")], "its staging database was dropped"
    audit = workspace.audit()[-1]
    assert audit["result"] == "failed" and "lost the recovery lock" in audit["error"], audit


def test_a_staging_database_of_a_live_run_is_never_dropped(workspace, pg, chat_db):
    """Another run holds the lock (here: a session that took it as a run does) and has a staging database."""
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, chat_db)
    staging = f"{chat_db}__recovery_staging"
    holder = {"procedure": "recover-db", "host": "other-host", "pid": 4242, "started_at": "2026-11-25T03:00:00Z"}
    with psycopg.connect(**pg.conninfo(), autocommit=True) as live:
        live.execute(f'CREATE DATABASE "{staging}"')
        live.execute(f"/* runbook.recovery lock holder: {json.dumps(holder)} */ "
                     "SELECT pg_try_advisory_lock(%s::int4, hashtext(%s))", (LOCK_CLASS, chat_db))
        started = time.monotonic()
        run = workspace.play("recover-db.yml", confirm=True, pg_recover_lock_wait=2)
        assert run.rc != 0 and run.changed == 0, run.output
        assert time.monotonic() - started >= 2, "it waited the time it was given"
        assert run.says("recover-db run by pid 4242 on host other-host, started 2026-11-25T03:00:00Z")
        assert staging in databases(pg)
        check = workspace.play("recover-db.yml", check=True, pg_recover_lock_wait=0)
        assert check.rc != 0 and check.says("another run is working on database"), check.output
    with connect(pg) as conn:
        conn.execute(f'DROP DATABASE "{staging}"')


# -- names ----------------------------------------------------------------------------------------
def name_of(kind: str) -> str:
    unique = f"données_{uuid.uuid4().hex[:6]}"
    return unique if kind == "short" else unique + "_" + "l" * (63 - len(unique.encode()) - 1)


@pytest.mark.parametrize("kind", ["short", "63 bytes"])  # 63 bytes: every derived name is shortened with a hash
def test_any_name_postgres_accepts_is_backed_up_and_recovered(workspace, pg, kind):
    name = name_of(kind)
    assert len(name.encode()) == 63 or kind == "short"
    create_chat_db(pg, name)
    workspace.write_inventory(pg_databases=[name])
    before = table_fingerprints(pg, name)
    assert workspace.play("backup-db.yml").rc == 0
    assert len(workspace.backups(name)) == 1
    disaster(pg, name)
    run = workspace.play("recover-db.yml", confirm=True)
    assert run.rc == 0, run.output
    assert table_fingerprints(pg, name) == before
    [kept] = [d for d in databases(pg) if d.startswith(kept_prefix(name))]
    assert kept_prefix(name) + "2" in kept[:len(kept_prefix(name)) + 1], kept  # <prefix><timestamp>
    assert staging_name(name) not in databases(pg)
    again = workspace.play("recover-db.yml", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output
