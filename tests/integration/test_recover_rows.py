"""Selective recovery (recover-rows.yml), end to end on a cluster archiving its WAL into the AWS emulator: the rows a
bad statement deleted brought back while a client keeps writing, a table beside the live one, a table replaced in
place, a predicate, a logical backup as the source, foreign keys, and the refusals, through real ansible-playbook runs.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from conftest import connect
from pitr_world import make_database, open_world, server_now, utc_iso

SCHEMA = """
CREATE TABLE messages (id bigserial PRIMARY KEY, batch text NOT NULL, body text NOT NULL);
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text NOT NULL);
CREATE TABLE settings (k text PRIMARY KEY, v text NOT NULL);
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE posts (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users, title text NOT NULL);
CREATE TABLE loose (n int);
CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
"""


@pytest.fixture(scope="module")
def archived(aws_emulator, tmp_path_factory):
    yield from open_world(aws_emulator, tmp_path_factory, "rows")


@pytest.fixture(scope="module")
def db(archived):
    name = f"rows_{uuid.uuid4().hex[:6]}"
    make_database(archived, name, SCHEMA)
    return name


def moment(world) -> str:
    """A target time between what was committed before this call and what is committed after it."""
    time.sleep(0.3)
    now = utc_iso(server_now(world))
    time.sleep(0.3)
    return now


def leftovers(world) -> list:
    return list(world.work_dir.iterdir()) if world.work_dir.exists() else []


def rows(world, database: str, query: str) -> list:
    return [tuple(r) for r in world.rows(database, query)]


class Writer(threading.Thread):
    """The application: keeps inserting batch B into messages and into events, each row its own transaction, and
    remembers every id the server gave back."""

    def __init__(self, world, database: str):
        super().__init__(daemon=True)
        self.world, self.database = world, database
        self.messages, self.events, self.errors, self.halt = [], [], [], threading.Event()

    def run(self):
        with connect(self.world.cluster, self.database) as conn:
            while not self.halt.is_set():
                try:
                    self.messages.append(conn.execute("INSERT INTO messages (batch, body) VALUES ('B', 'later') "
                                                      "RETURNING id").fetchone()[0])
                    self.events.append(conn.execute("INSERT INTO events (note) VALUES ('later') RETURNING id")
                                       .fetchone()[0])
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                time.sleep(0.005)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def test_missing_rows_come_back_while_the_application_keeps_writing(archived, db):
    with connect(archived.cluster, db) as conn:
        conn.execute("INSERT INTO messages (batch, body) SELECT 'A', 'message ' || g FROM generate_series(1, 1000) g")
    batch_a = [r[0] for r in rows(archived, db, "SELECT id FROM messages WHERE batch = 'A' ORDER BY id")]
    target = moment(archived)
    writer = Writer(archived, db)
    writer.start()
    try:
        time.sleep(0.5)
        with connect(archived.cluster, db) as conn:  # the bad statement
            conn.execute("DELETE FROM messages WHERE batch = 'A' AND id % 2 = 0")
        plan = archived.workspace.play("recover-rows.yml", check=True, database=db, tables="messages", mode="missing",
                                       target_time=target)
        assert plan.rc == 0, plan.output[-3000:]
        assert plan.says("would insert 500 of the 1000 rows public.messages had and lacks now"), plan.output[-3000:]
        assert rows(archived, db, "SELECT count(*) FROM messages WHERE batch = 'A'") == [(500,)], "--check wrote"
        refused = archived.workspace.play("recover-rows.yml", database=db, tables="messages", mode="missing",
                                          target_time=target)
        assert refused.rc != 0 and refused.says("Not confirmed, nothing was changed"), refused.output[-3000:]

        run = archived.workspace.play("recover-rows.yml", database=db, tables="messages", mode="missing",
                                      target_time=target, confirm=True)
        assert run.rc == 0, run.output[-4000:]
        time.sleep(0.5)  # the application writes on after the recovery too
    finally:
        writer.stop()
    assert writer.errors == [] and len(writer.messages) > 20, writer.errors[:3]
    assert [r[0] for r in rows(archived, db, "SELECT id FROM messages WHERE batch = 'A' ORDER BY id")] == batch_a
    later = [r[0] for r in rows(archived, db, "SELECT id FROM messages WHERE batch = 'B' ORDER BY id")]
    assert later == sorted(writer.messages), "a row the application wrote is gone or new"
    assert rows(archived, db, "SELECT count(*) = count(DISTINCT id) FROM messages") == [(True,)]
    assert [r[0] for r in rows(archived, db, "SELECT id FROM events ORDER BY id")] == sorted(writer.events)
    # The sequence was never moved back: the next id is past every row's.
    with connect(archived.cluster, db) as conn:
        fresh = conn.execute("INSERT INTO messages (batch, body) VALUES ('C', 'next') RETURNING id").fetchone()[0]
        conn.execute("DELETE FROM messages WHERE batch = 'C'")
    assert fresh > max(batch_a + writer.messages)
    record = archived.workspace.audit()[-1]
    assert record["procedure"] == "recover-rows" and record["result"] == "acted"
    assert record["tables"][0]["written"] == 500 and record["restore_point"]["lsn"]

    again = archived.workspace.play("recover-rows.yml", database=db, tables="messages", mode="missing",
                                    target_time=target, confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    assert leftovers(archived) == [], "a throwaway cluster was left behind"


def test_a_key_the_application_writes_again_during_the_run_keeps_its_row(archived, db):
    """The application puts back one of the deleted keys itself while the source is being built (after the run read
    the live keys): the run inserts the other rows and leaves the application's row as it wrote it."""
    with connect(archived.cluster, db) as conn:
        conn.execute("INSERT INTO notes SELECT g, 'then' FROM generate_series(1, 100) g")
    target = moment(archived)
    with connect(archived.cluster, db) as conn:
        conn.execute("DELETE FROM notes WHERE id <= 50")

    def building() -> bool:  # the throwaway cluster's data directory is being restored
        return any((child / "data" / "PG_VERSION").exists() for child in leftovers(archived))

    wrote = threading.Event()

    def application():
        deadline = time.monotonic() + 120
        while not building() and time.monotonic() < deadline:
            time.sleep(0.01)
        if building():
            with connect(archived.cluster, db) as conn:
                conn.execute("INSERT INTO notes VALUES (7, 'written again by the application')")
            wrote.set()

    thread = threading.Thread(target=application, daemon=True)
    thread.start()
    run = archived.workspace.play("recover-rows.yml", database=db, tables="notes", mode="missing",
                                  target_time=target, confirm=True)
    thread.join(timeout=130)
    assert run.rc == 0, run.output[-3000:]
    assert wrote.is_set(), "the application's insert did not happen while the source was being built"
    assert rows(archived, db, "SELECT id FROM notes ORDER BY id") == [(i,) for i in range(1, 101)]
    assert rows(archived, db, "SELECT id, body FROM notes WHERE body <> 'then'") == [
        (7, "written again by the application")]
    assert archived.workspace.audit()[-1]["tables"][0]["written"] == 49


def test_side_and_a_predicate_and_replace_in_place(archived, db):
    with connect(archived.cluster, db) as conn:
        conn.execute("INSERT INTO messages (batch, body) SELECT 'S', 'side ' || g FROM generate_series(1, 60) g")
        conn.execute("INSERT INTO settings VALUES ('a', '1'), ('b', '2')")
        conn.execute("INSERT INTO loose SELECT generate_series(1, 10)")
    at = {"messages": rows(archived, db, "SELECT id, batch, body FROM messages ORDER BY id"),
          "settings": rows(archived, db, "SELECT k, v FROM settings ORDER BY k")}
    target = moment(archived)
    with connect(archived.cluster, db) as conn:
        conn.execute("DELETE FROM messages WHERE id % 3 = 0")
        conn.execute("UPDATE settings SET v = '3' WHERE k = 'b'")
        conn.execute("INSERT INTO settings VALUES ('c', '4')")
        conn.execute("DELETE FROM settings WHERE k = 'a'")
        conn.execute("INSERT INTO events (note) VALUES ('after the target')")
    live_messages = rows(archived, db, "SELECT id, batch, body FROM messages ORDER BY id")
    events = rows(archived, db, "SELECT id, note FROM events ORDER BY id")

    # side: the table as it was, beside the live one, which is untouched; the same run again changes nothing.
    side = archived.workspace.play("recover-rows.yml", database=db, tables="messages", target_time=target,
                                   confirm=True)
    assert side.rc == 0, side.output[-3000:]
    stamp = target[:19].replace("-", "").replace(":", "").lower() + "z"  # the name needs no quotes
    assert rows(archived, db, f"SELECT id, batch, body FROM messages__recovered_{stamp} ORDER BY id") == \
        at["messages"]
    assert rows(archived, db, "SELECT id, batch, body FROM messages ORDER BY id") == live_messages
    again = archived.workspace.play("recover-rows.yml", database=db, tables="messages", target_time=target,
                                    confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]

    # a predicate: only the matching rows come back.
    chosen = archived.workspace.play("recover-rows.yml", database=db, tables="messages", mode="missing",
                                     target_time=target, where="id % 3 = 0 AND id % 2 = 1", confirm=True)
    assert chosen.rc == 0, chosen.output[-3000:]
    back = {r[0] for r in rows(archived, db, "SELECT id FROM messages")}
    deleted = {r[0] for r in at["messages"]} - {r[0] for r in live_messages}
    assert {i for i in deleted if i % 2 == 1} <= back and not {i for i in deleted if i % 2 == 0} & back

    # replace: the table's content is its content at the target, the current one kept; other tables keep theirs.
    replaced = archived.workspace.play("recover-rows.yml", database=db, tables="public.settings", mode="replace",
                                       target_time=target, confirm=True)
    assert replaced.rc == 0, replaced.output[-3000:]
    assert rows(archived, db, "SELECT k, v FROM settings ORDER BY k") == at["settings"]
    kept = [r[0] for r in rows(archived, db, "SELECT relname FROM pg_class WHERE relname LIKE "
                                             "'settings\\_\\_pre\\_recovery\\_%'")]
    assert len(kept) == 1 and rows(archived, db, f"SELECT k, v FROM {kept[0]} ORDER BY k") == [("b", "3"), ("c", "4")]
    assert rows(archived, db, "SELECT id, note FROM events ORDER BY id") == events
    twice = archived.workspace.play("recover-rows.yml", database=db, tables="settings", mode="replace",
                                    target_time=target, confirm=True)
    assert twice.rc == 0 and twice.changed == 0, twice.output[-3000:]


def test_from_a_logical_backup_and_parents_brought_back_when_asked(archived, db):
    with connect(archived.cluster, db) as conn:
        conn.execute("INSERT INTO users VALUES (1, 'ann'), (7, 'bob')")
        conn.execute("INSERT INTO posts (user_id, title) SELECT u, 'post ' || g FROM generate_series(1, 3) g, "
                     "unnest(ARRAY[1, 7]) u")
    posts = rows(archived, db, "SELECT id, user_id, title FROM posts ORDER BY id")
    backup = archived.workspace.play("backup-db.yml", database=db, pg_databases=[db])
    assert backup.rc == 0, backup.output[-3000:]
    with connect(archived.cluster, db) as conn:
        conn.execute("DELETE FROM posts WHERE user_id = 7")
        conn.execute("DELETE FROM users WHERE id = 7")

    orphaned = archived.workspace.play("recover-rows.yml", database=db, tables="posts", mode="missing",
                                       backup="latest", confirm=True)
    assert orphaned.rc != 0, orphaned.output[-3000:]
    assert orphaned.says("parent row(s) of public.posts are gone live") and orphaned.says("public.users (id) = 7")
    assert rows(archived, db, "SELECT count(*) FROM posts") == [(3,)]

    # A sealed plan pins the backup `latest` stood for: a newer backup (taken after the damage) changes nothing.
    sealed = archived.workspace.base / "rows-plan.json"
    plan = archived.workspace.play("recover-rows.yml", check=True, database=db, tables="posts", mode="missing",
                                   backup="latest", with_parents=True, plan_out=str(sealed))
    assert plan.rc == 0 and plan.says("would insert 3 of the 6 rows public.posts had"), plan.output[-3000:]
    assert plan.says("would insert 1 of the 2 rows public.users had as parents"), plan.output[-3000:]
    newer = archived.workspace.play("backup-db.yml", database=db, pg_databases=[db], pg_backup_skip_if_newer_than=0)
    assert newer.rc == 0, newer.output[-3000:]
    run = archived.workspace.play("recover-rows.yml", plan=str(sealed), confirm=True)
    assert run.rc == 0 and run.changed, run.output[-3000:]
    assert rows(archived, db, "SELECT id, user_id, title FROM posts ORDER BY id") == posts
    assert rows(archived, db, "SELECT id, name FROM users ORDER BY id") == [(1, "ann"), (7, "bob")]


@pytest.mark.parametrize(("extra", "says"), [
    ({"tables": "nosuch"}, "table 'nosuch' does not exist in database"),
    ({"tables": "loose", "mode": "missing"}, "has no primary key or unique not-null key"),
    ({"tables": "messages", "where": "true; DROP TABLE messages"}, "holds a semicolon"),
    ({"tables": "messages", "where": "no_such_column > 1"}, "PostgreSQL rejects where="),
    ({"tables": "messages", "target_time": "2001-01-01T00:00:00Z"}, "is before the recoverable window"),
    ({"tables": "messages", "target_time": "2026-12-01T00:00:00Z", "backup": "latest"}, "Give one source"),
])
def test_bad_input_is_refused_before_any_change(archived, db, extra, says):
    before = rows(archived, db, "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM pg_class)")
    audit = len(archived.workspace.audit())
    arguments = {"target_time": utc_iso(server_now(archived)), **extra}
    run = archived.workspace.play("recover-rows.yml", database=db, confirm=True, **arguments)
    assert run.rc != 0 and run.says(says), run.output[-3000:]
    assert rows(archived, db, "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM pg_class)") == before
    assert leftovers(archived) == [], "a throwaway cluster was left behind"
    assert all(r["result"] == "failed" for r in archived.workspace.audit()[audit:])
