# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Selective recovery: tables of one database, or the rows a bad statement deleted, brought back from a point in
time (a throwaway cluster replayed to it) or a logical backup (restored into a throwaway cluster), while the live
database keeps serving and keeps every later write.

Everything that decides what to write runs on the throwaway: the live database is only read (the keys it holds, and
for `replace` its rows) until the one transaction that writes. The operator's predicate never reaches the live
server; PostgreSQL checks it on the throwaway inside a read-only transaction.

Modes: `side` writes the source's rows to a new table beside the live one; `missing` inserts the rows the live table
lacks (by its key), never changing a row it has; `replace` makes the live table's content the source's, in place
(its OID, grants, indexes, triggers and the foreign keys that point at it stay), the previous content kept in a
table of its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    derived_name,
    utc_now,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_pitr import (
    archive_everything_until_now,
    recovery_plan,
    server_facts,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import restore_into, restore_size
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import (
    WORK_PREFIX,
    Archive,
    Target,
    Throwaway,
    check_free_space,
    claimed_directory,
    remove_leftovers,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    DatabaseError,
    create_restore_point,
    exclusive_run,
    pg_tool,
    restore_point_name,
    tied_to_this_process,
)

try:
    from psycopg import sql
    from psycopg.errors import UniqueViolation
except ImportError:  # reported by ConnParams.connect
    sql = None
    UniqueViolation = DatabaseError

PROCEDURE = "recover-rows"
KEYS_SCHEMA = "runbook_recover_rows"  # on the throwaway only
MODES = ("side", "missing", "replace")
SAMPLE = 5
THROWAWAY_OVERHEAD = 64 << 20
WORK_MEM = "256MB"  # the throwaway is ours alone: memory for the comparisons' hash joins


# -- input ------------------------------------------------------------------------------------------------
def check_predicate(where: str) -> str:
    """The predicate as given, or a refusal: one SQL expression, so no statement separator and no NUL."""
    where = (where or "").strip()
    if ";" in where:
        raise RunbookError(f"where={where!r} holds a semicolon: give one SQL expression (for example "
                           "created_at >= '2026-12-01'), not statements. Nothing was changed.")
    if "\x00" in where:
        raise RunbookError("where holds a NUL character: give one SQL expression. Nothing was changed.")
    return where


def split_table(name: str) -> tuple[str | None, str]:
    name = (name or "").strip()
    if not name:
        raise RunbookError("an empty table name was given: list tables as NAME or SCHEMA.NAME. Nothing was changed.")
    schema, dot, table = name.partition(".")
    if dot and (not schema or not table or "." in table):
        raise RunbookError(f"table {name!r} is not NAME or SCHEMA.NAME. Nothing was changed.")
    for part in ([schema, table] if dot else [name]):
        validate_name(part, "table name")
    return (schema, table) if dot else (None, name)


def source_stamp(backup_id: str | None, target: Target | None) -> str:
    """A short mark of the source for the side table's name, lower case so that the name needs no quotes: the same
    inputs give the same name."""
    if backup_id:
        mark = backup_id
    elif target.kind == "time":
        mark = compact_timestamp(target.moment)
    elif target.kind == "lsn":
        mark = "lsn_" + target.value.replace("/", "_")
    else:
        mark = re.sub(r"[^A-Za-z0-9]+", "_", target.value or "latest")[:40]
    return mark.lower()


def dependency_order(tables: list[str], parents: dict[str, set[str]]) -> list[str]:
    """`tables` with every table after the tables it references (among them); a cycle keeps the given order."""
    ordered, seen = [], set()

    def visit(name: str, path: tuple) -> None:
        if name in seen or name in path:
            return
        for parent in sorted(parents.get(name, ())):
            if parent in tables and parent != name:
                visit(parent, (*path, name))
        seen.add(name)
        ordered.append(name)

    for name in tables:
        visit(name, ())
    return ordered


# -- a table as the live database has it ----------------------------------------------------------------------
@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    parent: str  # schema.table
    parent_columns: list[str]


@dataclass
class Table:
    schema: str
    name: str
    oid: int
    columns: list[str]
    key: list[str]
    key_kind: str
    identity_always: bool
    sequences: dict[str, str]
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    referenced_by: list[ForeignKey] = field(default_factory=list)  # .parent holds the child table here

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def ident(self, name: str | None = None):
        return sql.Identifier(self.schema, name or self.name)


def _names(conn, relid: int, attnums: list[int]) -> list[str]:
    rows = conn.execute("SELECT attnum, attname FROM pg_attribute WHERE attrelid = %s AND attnum = ANY(%s)",
                        (relid, attnums)).fetchall()
    by_number = dict(rows)
    return [by_number[n] for n in attnums]


def resolve_table(conn, given: str, database: str) -> tuple[str, str, int]:
    schema, name = split_table(given)
    rows = conn.execute(
        """SELECT n.nspname, c.relname, c.oid::bigint, c.relkind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relname = %s AND (%s::text IS NULL OR n.nspname = %s)
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
           ORDER BY 1""", (name, schema, schema)).fetchall()
    tables = [r for r in rows if r[3] in ("r", "p")]
    if not tables:
        what = f"a {'view or other relation' if rows else 'relation'}"
        raise RunbookError(f"table {given!r} does not exist in database {database!r}"
                           + (f" (it is {what}, not a table)" if rows else "")
                           + ". List the tables to bring back as NAME or SCHEMA.NAME. Nothing was changed.")
    if len(tables) > 1:
        raise RunbookError(f"table {given!r} is in several schemas of {database!r} "
                           f"({', '.join(r[0] for r in tables)}): name it as SCHEMA.NAME. Nothing was changed.")
    return tables[0][0], tables[0][1], tables[0][2]


def describe_table(conn, schema: str, name: str, oid: int) -> Table:
    columns = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' ORDER BY attnum", (oid,)).fetchall()]
    key_row = conn.execute(
        """SELECT i.indisprimary, array_agg(k.attnum::int ORDER BY k.ord)
           FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
           GROUP BY i.indexrelid, i.indisprimary
           HAVING bool_and(a.attnotnull)
           ORDER BY i.indisprimary DESC, count(*), i.indexrelid LIMIT 1""", (oid,)).fetchone()
    key, kind = ([], "")
    if key_row:
        key, kind = _names(conn, oid, key_row[1]), ("primary key" if key_row[0] else "unique not-null key")
    always = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attidentity = 'a' "
                          "AND NOT attisdropped)", (oid,)).fetchone()[0]
    sequences = {}
    for column in columns:
        found = conn.execute("SELECT pg_get_serial_sequence(%s, %s)",
                             (sql.Identifier(schema, name).as_string(conn), column)).fetchone()[0]
        if found:
            sequences[column] = found
    table = Table(schema, name, oid, columns, key, kind, always, sequences)
    for conname, child, parent, conkey, confkey in conn.execute(
            """SELECT c.conname, c.conrelid::bigint, c.confrelid::bigint, c.conkey::int[], c.confkey::int[]
               FROM pg_constraint c WHERE c.contype = 'f' AND (c.conrelid = %s OR c.confrelid = %s)
               ORDER BY c.conname""", (oid, oid)).fetchall():
        if child == oid:
            table.foreign_keys.append(ForeignKey(conname, _names(conn, child, conkey), _qualified(conn, parent),
                                                 _names(conn, parent, confkey)))
        if parent == oid:
            table.referenced_by.append(ForeignKey(conname, _names(conn, parent, confkey), _qualified(conn, child),
                                                  _names(conn, child, conkey)))
    return table


def describe_named(conn, qualified: str) -> Table:
    """describe_table of a table named SCHEMA.NAME (as a foreign key names its other side)."""
    schema, name = qualified.split(".", 1)
    oid = conn.execute("SELECT %s::regclass::oid::bigint", (sql.Identifier(schema, name).as_string(conn),)
                       ).fetchone()[0]
    return describe_table(conn, schema, name, oid)


def _qualified(conn, oid: int) -> str:
    schema, name = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE c.oid = %s", (oid,)).fetchone()
    return f"{schema}.{name}"


def _cols(names: list[str], alias: str | None = None):
    return sql.SQL(", ").join(sql.Identifier(alias, n) if alias else sql.Identifier(n) for n in names)


def _match(left: str, left_cols: list[str], right: str, right_cols: list[str]):
    return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(left, a), sql.Identifier(right, b))
                                 for a, b in zip(left_cols, right_cols, strict=True))


def key_query(table: Table, columns: list[str]):
    return sql.SQL("SELECT {} FROM ONLY {}").format(_cols(columns), table.ident())


def copy_rows(source_conn, query, target_conn, target, columns: list[str]) -> None:
    """Stream the rows of `query` on one server into `target` on another (COPY text format: types that differ in
    binary between clusters, such as composites, travel as text)."""
    out_sql = sql.SQL("COPY ({}) TO STDOUT").format(query)
    in_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(target, _cols(columns))
    with source_conn.cursor() as out_cur, target_conn.cursor() as in_cur:
        with out_cur.copy(out_sql) as out, in_cur.copy(in_sql) as inp:
            for chunk in out:
                inp.write(chunk)


class Pipe:
    """Bulk copies from the live database into the throwaway through two psql processes and an OS pipe: the rows
    stream at the speed of libpq, not of a Python loop over each row (the live table's keys can be millions)."""

    def __init__(self, live: ConnParams, database: str, work_dir: str):
        self.live, self.database, self.work_dir = live, database, work_dir
        self.source: ConnParams | None = None
        self.prefetched: dict[str, tuple] = {}
        self.loaded: dict[tuple, object] = {}  # (table, key columns) -> the table of the throwaway holding them
        self.scratch = self._claim = None

    @contextmanager
    def prefetching(self, queries: list[str]):
        """Read the live keys of `queries` into files while the source is being built (the replay takes seconds):
        the keys as they are when the run starts; a row the application deletes or adds later is a later write,
        which the run keeps either way (an insert never overwrites, a key read then stays present then)."""
        if queries:
            self.scratch, self._claim = claimed_directory(self.work_dir, f"{WORK_PREFIX}keys-")
            os.chmod(self.scratch, 0o700)
        try:
            for number, query in enumerate(queries):
                path = os.path.join(self.scratch, f"keys-{number}.copy")
                out = open(path, "wb")
                errors = tempfile.TemporaryFile()
                process = subprocess.Popen(tied_to_this_process([pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                                                 "-c", f"COPY ({query}) TO STDOUT"]),
                                           env=self._env(self.live), stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=errors)
                self.prefetched[query] = (process, path, out, errors)
            yield self
        finally:
            for process, _path, out, errors in self.prefetched.values():
                if process.poll() is None:
                    process.kill()
                process.wait()
                out.close()
                errors.close()
            if self.scratch:
                shutil.rmtree(self.scratch, ignore_errors=True)
                self._claim.close()

    def _env(self, params: ConnParams) -> dict:
        env = params.env(self.database)
        env["PGOPTIONS"] = "-c search_path=pg_catalog,pg_temp"  # every name below is qualified
        return env

    def copy(self, query: str, target: str) -> int:
        """COPY (query) from live into `target` on the throwaway (both already quoted SQL); the rows copied."""
        psql = pg_tool("psql")
        if query in self.prefetched:
            process, path, out, errors = self.prefetched[query]
            process.wait()
            out.flush()
            errors.seek(0)
            if process.returncode != 0:
                raise RunbookError("reading the live keys failed: "
                                   f"{errors.read().decode(errors='replace').strip() or 'no message'}. Nothing was "
                                   "changed.")
            with open(path, "rb") as keys:
                writer = subprocess.run(tied_to_this_process([psql, "-X", "-v", "ON_ERROR_STOP=1", "-c",
                                                              f"COPY {target} FROM STDIN"]),
                                        env=self._env(self.source), stdin=keys, capture_output=True, text=True,
                                        check=False)
            if writer.returncode != 0:
                raise RunbookError(f"loading the live keys into the throwaway cluster failed: "
                                   f"{writer.stderr.strip() or 'no message'}. Nothing was changed.")
            found = re.search(r"COPY (\d+)", writer.stdout)
            return int(found.group(1)) if found else 0
        return self._stream(self.live, query, target, "copying the live keys into the throwaway cluster")

    def select(self, query: str, target: str) -> int:
        """COPY (query) on the throwaway into `target` there: the query (which may hold the operator's predicate)
        runs in a read-only transaction, where PostgreSQL can plan it in parallel (an INSERT ... SELECT cannot)."""
        return self._stream(self.source, query, target, "selecting the rows at the source",
                            options=f" -c default_transaction_read_only=on -c work_mem={WORK_MEM}")

    def _stream(self, reader_params: ConnParams, query: str, target: str, what: str, options: str = "") -> int:
        psql = pg_tool("psql")
        reader_env = self._env(reader_params)
        reader_env["PGOPTIONS"] += options
        with tempfile.TemporaryFile() as reader_errors:
            reader = subprocess.Popen(tied_to_this_process([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                                            f"COPY ({query}) TO STDOUT"]),
                                      env=reader_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=reader_errors)
            try:
                writer = subprocess.run(tied_to_this_process([psql, "-X", "-v", "ON_ERROR_STOP=1", "-c",
                                                              f"COPY {target} FROM STDIN"]),
                                        env=self._env(self.source), stdin=reader.stdout, capture_output=True,
                                        text=True, check=False)
            finally:
                reader.stdout.close()
                reader.wait()
            reader_errors.seek(0)
            problem = reader_errors.read().decode(errors="replace").strip()
        if reader.returncode != 0 or writer.returncode != 0:
            raise RunbookError(f"{what} failed: {problem or writer.stderr.strip() or 'no message'}. Nothing was "
                               "changed.")
        found = re.search(r"COPY (\d+)", writer.stdout)
        return int(found.group(1)) if found else 0


# -- where the rows come from --------------------------------------------------------------------------------
class Source:
    """The database as it was at the source, in a throwaway cluster of its own: a base backup replayed to a target,
    or a logical backup restored."""

    def __init__(self, params: ConnParams, database: str, work_dir: str, jobs: int, backup_root: str | None,
                 backup: str | None, archive: Archive | None, target: Target | None, replay_timeout: float):
        self.params, self.database, self.work_dir, self.jobs = params, database, work_dir, jobs
        self.backup_root, self.backup_id, self.archive, self.target = backup_root, backup, archive, target
        self.replay_timeout = replay_timeout
        self.throwaway = None
        self.backup = None
        self.plan: dict = {}
        self.seconds: dict = {}  # the parts of building the source, for the result

    def resolve(self, conn) -> dict:
        """Which backup (and WAL) the source is, refusing one that cannot be: read-only, before anything runs."""
        facts = server_facts(conn)
        self.os_user = facts["os_user"] or "postgres"
        if self.backup_id:
            if not self.backup_root:
                raise RunbookError("backup_root is required to recover rows from a logical backup.")
            self.backup = LocalStore(self.backup_root).resolve(self.database, self.backup_id)
            self.plan = {"kind": "backup", "backup": self.backup.backup_id,
                         "backup_time": self.backup.manifest.get("finished_at"),
                         "restore_bytes": restore_size(self.backup)}
            return self.plan
        if self.archive is None:
            raise RunbookError("a point-in-time source needs the archive (pg_archive in the inventory, set up by "
                               "setup-archiving.yml). Nothing was changed.")
        self.archive.os_user = self.archive.os_user or facts["os_user"]
        plan = recovery_plan(self.archive, facts, self.target)
        self.plan = {"kind": "pitr", "target": plan["target"], "base_backup": plan["base_backup"]["id"],
                     "wal": {k: plan["wal"][k] for k in ("from", "to", "segments")}, "window": plan["window"],
                     "restore_bytes": plan["restore_bytes"]}
        return self.plan

    def describe(self) -> str:
        if self.plan.get("kind") == "backup":
            return f"logical backup {self.plan['backup']}"
        return (f"base backup {self.plan['base_backup']} + WAL {self.plan['wal']['from']}..{self.plan['wal']['to']} "
                f"replayed to {self.plan['target']}")

    @contextmanager
    def opened(self):
        """The throwaway cluster holding the database at the source, removed when the block ends."""
        remove_leftovers(self.work_dir, self.os_user)
        check_free_space(self.work_dir, int(self.plan["restore_bytes"] * 1.2) + THROWAWAY_OVERHEAD,
                         f"the source of {self.database} in a throwaway cluster", setting="pg_recover_rows_work_dir")
        if self.backup is not None:
            self.throwaway = Throwaway(self.work_dir, self.os_user, "postgres", None)
        else:
            self.throwaway = Throwaway(self.work_dir, self.archive.os_user, self.params.user, self.params.password)
        try:
            if self.backup is not None:
                self.throwaway.initialize()
                restore_into(self.throwaway.params(), self.backup, self.database, self.jobs, no_owner=True)
            else:
                mark = time.monotonic()
                if self.target.kind in ("time", "latest"):
                    with self.params.connect() as conn:  # a recent target: its WAL in the archive first
                        archive_everything_until_now(conn)
                self.seconds["archive_wait"], mark = round(time.monotonic() - mark, 3), time.monotonic()
                self.throwaway.create()
                self.throwaway.restore(self.archive, self.plan["base_backup"])
                self.throwaway.configure(self.archive, self.target)
                self.seconds["restore"], mark = round(time.monotonic() - mark, 3), time.monotonic()
                try:
                    self.seconds["replay"] = round(self.throwaway.start(self.replay_timeout), 3)
                except RunbookError as exc:
                    raise RunbookError(f"the replay to {self.target.describe()} failed, so nothing was changed: "
                                       f"{exc}") from exc
            yield self.throwaway.params()
        finally:
            self.throwaway.destroy()


# -- the procedure ------------------------------------------------------------------------------------------
class RowRecovery:
    def __init__(self, params: ConnParams, database: str, tables: list[str], source: Source, mode: str = "side",
                 where: str = "", with_parents: bool = False, lock_wait: float = 10, expect_source: dict | None = None):
        self.params, self.database, self.given, self.source = params, database, tables, source
        self.mode, self.where, self.with_parents, self.lock_wait = mode, where, with_parents, lock_wait
        self.expect_source = expect_source or {}
        self.pipe: Pipe | None = None
        self.result = {"changed": False, "database": database, "mode": mode, "tables": []}

    # checks that need no server
    def validate(self) -> None:
        validate_name(self.database)
        if self.mode not in MODES:
            raise RunbookError(f"mode={self.mode!r} is not known: use side (a table beside the live one), missing "
                               "(insert the rows the live table lacks) or replace. Nothing was changed.")
        if not self.given:
            raise RunbookError("name the tables to bring back: -e tables=chat_messages (or a list). Nothing was "
                               "changed.")
        for name in self.given:
            split_table(name)
        self.where = check_predicate(self.where)
        if self.where and self.mode == "replace":
            raise RunbookError("where cannot be given with mode=replace, which replaces the whole table: bring back "
                               "the matching rows with mode=missing, or look at them with mode=side. Nothing was "
                               "changed.")
        if self.lock_wait < 0:
            raise RunbookError(f"lock_wait={self.lock_wait} is negative. Nothing was changed.")

    def run(self, check_mode: bool) -> dict:
        self.validate()
        with exclusive_run(self.params, PROCEDURE, self.database, self.lock_wait):
            with self.params.connect(self.database) as live:
                tables = self._live_tables(live)
                self.result["source"] = self.source.resolve(live)
                # missing: the live tables' keys, read while the source is built
                keys = [key_query(t, t.key).as_string(live) for t in tables] if self.mode == "missing" else []
            self._compare_sealed()
            started = time.monotonic()
            seconds = self.result["seconds"] = {}
            self.pipe = Pipe(self.params, self.database, self.source.work_dir)
            with self.pipe.prefetching(keys), self.source.opened() as source_params, \
                    source_params.connect(self.database) as src:
                seconds["source"] = round(time.monotonic() - started, 3)
                seconds.update({f"source_{k}": v for k, v in self.source.seconds.items()})
                # The throwaway is ours alone: memory for the comparisons' hash joins, no wait for its disk.
                src.execute(f"SET TIME ZONE 'UTC'; SET work_mem = '{WORK_MEM}'; SET temp_buffers = '256MB'; "
                            "SET synchronous_commit = off")
                self.pipe.source = source_params
                self._check_source(src, tables)
                with self.params.connect(self.database) as live:
                    live.execute("SET TIME ZONE 'UTC'")
                    plans = self._plan(src, live, tables)
                seconds["plan"] = round(time.monotonic() - started - seconds["source"], 3)
                self.result["tables"] = [p.summary() for p in plans]
                needed = any(p.needed for p in plans)
                self.result["changed"] = needed
                if check_mode or not needed:
                    self.result["msg"] = self._message(plans, check_mode)
                    return self.result
                self._apply(src, plans)
                seconds["write"] = round(time.monotonic() - started - seconds["source"] - seconds["plan"], 3)
            self.result["tables"] = [p.summary() for p in plans]
            self.result["elapsed_seconds"] = round(time.monotonic() - started, 3)
            self.result["msg"] = self._message(plans, False)
            return self.result

    def _compare_sealed(self) -> None:
        planned = self.expect_source
        if not planned:
            return
        now = {k: self.result["source"].get(k) for k in ("kind", "backup", "base_backup", "target")}
        was = {k: planned.get(k) for k in now}
        if now != was:
            changed = ", ".join(f"{k}: {was[k]!r} then, {now[k]!r} now" for k in now if now[k] != was[k])
            raise RunbookError(f"the sealed plan no longer holds, so nothing was changed: its source resolves "
                               f"differently ({changed}). Make a new plan (--check -e plan_out=FILE) and review it.")

    def _live_tables(self, live) -> list[Table]:
        found, seen = [], set()
        for given in self.given:
            schema, name, oid = resolve_table(live, given, self.database)
            if oid in seen:
                continue
            seen.add(oid)
            table = describe_table(live, schema, name, oid)
            if self.mode == "missing" and not table.key:
                raise RunbookError(f"table {table.qualified} has no primary key or unique not-null key, so the rows it "
                                   "lacks cannot be told from the rows it has: use mode=side (a table beside it) "
                                   "and move the rows by hand. Nothing was changed.")
            found.append(table)
        order = dependency_order([t.qualified for t in found],
                                 {t.qualified: {fk.parent for fk in t.foreign_keys} for t in found})
        by_name = {t.qualified: t for t in found}
        return [by_name[name] for name in order]

    def _check_source(self, src, tables: list[Table]) -> None:
        """Each table at the source, its columns, and the predicate, which PostgreSQL checks there in a read-only
        transaction before anything is written live."""
        for table in tables:
            row = src.execute("SELECT to_regclass(%s) IS NOT NULL", (table.ident().as_string(src),)).fetchone()
            if not row[0]:
                raise RunbookError(f"table {table.qualified} did not exist at the source ({self.source.describe()}): "
                                   "nothing to bring it back from. Nothing was changed.")
            there = {r[0] for r in src.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table.ident().as_string(src),)).fetchall()}
            missing_key = [c for c in table.key if c not in there]
            if missing_key:
                raise RunbookError(f"the key of {table.qualified} ({', '.join(table.key)}) is not at the source: "
                                   "the table changed shape since. Nothing was changed.")
            table.absent_at_source = [c for c in table.columns if c not in there]
            table.columns = [c for c in table.columns if c in there]
            if self.where:
                try:
                    with read_only(src):
                        src.execute(sql.SQL("SELECT count(*) FROM ONLY {} WHERE ({})").format(
                            table.ident(), sql.SQL(self.where)))
                except DatabaseError as exc:
                    raise RunbookError(f"PostgreSQL rejects where={self.where!r} on {table.qualified}: "
                                       f"{' '.join(str(exc).split())}. Nothing was changed.") from exc

    # -- what to write, decided on the throwaway ---------------------------------------------------------------
    def _plan(self, src, live, tables: list[Table]) -> list:
        plans = {t.qualified: TablePlan(t, index) for index, t in enumerate(tables)}
        for plan in plans.values():
            plan.pipe = self.pipe
            if self.mode != "missing":  # missing counts the live rows as it copies their keys
                plan.rows_live = live.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(plan.table.ident())
                                              ).fetchone()[0]
            plan.rows_source = _count(src, plan.table, self.where)
        if self.mode == "side":
            for plan in plans.values():
                plan.plan_side(src, live, self.where, self.source)
            return list(plans.values())
        if self.mode == "replace":
            for plan in plans.values():
                plan.plan_replace(src, live)
            return list(plans.values())
        for plan in plans.values():
            plan.plan_missing(src, live, self.where)
        self._parents(src, live, plans)
        order = dependency_order(list(plans), {k: {fk.parent for fk in p.table.foreign_keys}
                                               for k, p in plans.items()})
        return [plans[name] for name in order]

    def _parents(self, src, live, plans: dict) -> None:
        """Every inserted row's parents must exist live, or be inserted before it: refuse naming the rows, or (with
        with_parents) bring the parents back from the source too, and theirs."""
        while True:
            grew = False
            for plan in list(plans.values()):
                for fk in plan.table.foreign_keys:
                    missing = plan.orphans(src, live, fk, plans.get(fk.parent))
                    if not missing:
                        continue
                    if not self.with_parents:
                        sample = ", ".join(str(m) for m in missing[:SAMPLE])
                        raise RunbookError(
                            f"{len(missing)} parent row(s) of {plan.table.qualified} are gone live: {fk.name} points "
                            f"at {fk.parent} ({', '.join(fk.parent_columns)}) = {sample}"
                            f"{' ...' if len(missing) > SAMPLE else ''}, which the rows to bring back need. Add "
                            f"{fk.parent} to tables, or bring the parents back with them (-e with_parents=true). "
                            "Nothing was changed.",
                            orphans=[list(m) if isinstance(m, tuple) else m for m in missing[:SAMPLE]])
                    parent = plans.get(fk.parent)
                    if parent is None:
                        table = describe_named(live, fk.parent)
                        self._check_source(src, [table])
                        parent = plans[fk.parent] = TablePlan(table, len(plans), brought_as_parent=True)
                        parent.pipe = self.pipe
                        parent.rows_live = live.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
                            table.ident())).fetchone()[0]
                        parent.rows_source = _count(src, table, "")
                        parent.start_selection(src, live)
                    if not parent.add_parents(src, fk, missing):
                        raise RunbookError(
                            f"{len(missing)} parent row(s) of {plan.table.qualified} are gone live and were not in "
                            f"{fk.parent} at the source either ({fk.name}: {', '.join(fk.parent_columns)} = "
                            f"{', '.join(str(m) for m in missing[:SAMPLE])}): choose another source, or bring the "
                            "rows back with mode=side. Nothing was changed.")
                    grew = True
            if not grew:
                return

    # -- the one transaction that writes -------------------------------------------------------------------
    def _apply(self, src, plans: list) -> None:
        # A named point in the WAL just before the write: a point-in-time recovery (or recover-rows) can undo it.
        name = restore_point_name(PROCEDURE, utc_now())
        try:
            with self.params.connect() as conn:
                self.result["restore_point"] = {"name": name, "lsn": create_restore_point(conn, name)}
        except DatabaseError as exc:
            self.result.setdefault("warnings", []).append(
                f"no restore point was made ({' '.join(str(exc).split())}): a point-in-time recovery cannot target "
                "this run by name.")
        with self.params.connect(self.database, autocommit=False) as live:
            live.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(max(self.lock_wait, 1) * 1000)}",))
            live.execute("SET LOCAL TIME ZONE 'UTC'")
            for plan in plans:
                if plan.needed:
                    plan.apply(src, live, self.mode)
            try:
                live.commit()
            except DatabaseError as exc:
                raise RunbookError(f"the write was refused at commit, so nothing was changed: {exc}") from exc
        if self.mode != "side":
            with self.params.connect(self.database) as live:
                for plan in plans:
                    if plan.written:
                        plan.sequences_moved = forward_sequences(live, plan.table)

    def _message(self, plans: list, check_mode: bool) -> str:
        would = "would " if check_mode else ""
        parts = [p.describe(would) for p in plans]
        if not any(p.needed for p in plans):
            return f"nothing to do: {'; '.join(parts)} (source: {self.source.describe()})"
        return f"from {self.source.describe()}: " + "; ".join(parts)


@contextmanager
def read_only(conn):
    """A read-only transaction on an autocommit connection (temporary tables may still be written in it)."""
    conn.execute("BEGIN READ ONLY")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _count(conn, table: Table, where: str) -> int:
    query = sql.SQL("SELECT count(*) FROM ONLY {}").format(table.ident())
    if where:
        query += sql.SQL(" WHERE ({})").format(sql.SQL(where))
    with read_only(conn):
        return conn.execute(query).fetchone()[0]


def forward_sequences(live, table: Table) -> dict:
    """Each sequence of the table's serial and identity columns at least at the column's highest value: never moved
    backwards. What moved, from -> to."""
    moved = {}
    for column, sequence in table.sequences.items():
        highest = live.execute(sql.SQL("SELECT max({}) FROM ONLY {}").format(sql.Identifier(column), table.ident())
                               ).fetchone()[0]
        if highest is None:
            continue
        last, called = live.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
            sql.SQL(sequence))).fetchone()
        if highest > last or (not called and highest >= last):
            live.execute("SELECT setval(%s::regclass, %s, true)", (sequence, highest))
            moved[column] = {"sequence": sequence, "from": last, "to": highest}
    return moved


class TablePlan:
    """One table's part: the rows to write, held on the throwaway in a temporary table of the session."""

    def __init__(self, table: Table, index: int, brought_as_parent: bool = False):
        self.table, self.index, self.brought_as_parent = table, index, brought_as_parent
        self.rows_source = self.rows_live = 0
        self.to_write = 0
        self.sample: list = []
        self.side_table = self.kept_table = None
        self.exists_same = False
        self.changes = {}
        self.written = 0
        self.sequences_moved = {}
        # unlogged, in our schema on the throwaway: filled by the pipe's own session
        self.selection = sql.Identifier(KEYS_SCHEMA, f"rows_{index}")
        self.pipe: Pipe | None = None

    @property
    def needed(self) -> bool:
        if self.side_table:  # the table as it was, even empty: a table that had no rows then says so
            return not self.exists_same
        return self.to_write > 0 or bool(self.changes and any(self.changes.values()))

    def summary(self) -> dict:
        out = {"table": self.table.qualified, "key": self.table.key, "key_kind": self.table.key_kind or None,
               "rows_source": self.rows_source, "rows_live": self.rows_live, "to_write": self.to_write,
               "sample_keys": self.sample, "written": self.written}
        if self.brought_as_parent:
            out["brought_as_parent"] = True
        if self.side_table:
            out["side_table"] = self.side_table
        if self.kept_table:
            out["kept_table"] = self.kept_table
        if self.changes:
            out["changes"] = self.changes
        if self.sequences_moved:
            out["sequences_moved"] = self.sequences_moved
        if getattr(self.table, "absent_at_source", None):
            out["columns_not_at_source"] = self.table.absent_at_source
        return out

    def describe(self, would: str) -> str:
        t = self.table.qualified
        if self.side_table:
            if self.exists_same:
                return f"{self.side_table} already holds the {self.rows_source} rows {t} had"
            return f"{would}write the {self.to_write} rows {t} had into {self.side_table} ({t} untouched)"
        if self.changes:
            c = self.changes
            if not self.needed:
                return f"{t} already holds the source's {self.rows_source} rows"
            return (f"{would}make {t} ({self.rows_live} rows) the source's {self.rows_source}: {c['delete']} deleted, "
                    f"{c['update']} updated, {c['insert']} inserted; the current rows kept as {self.kept_table}")
        done = self.written if not would else self.to_write
        sample = f" (keys {', '.join(map(str, self.sample))}{' ...' if self.to_write > len(self.sample) else ''})"
        parent = " as parents" if self.brought_as_parent else ""
        return (f"{would}insert {done} of the {self.rows_source} rows {t} had{parent} and lacks now"
                f"{sample if self.to_write else ''} ({self.rows_live} rows live, none changed)")

    def _key_sample(self, src, relation) -> list:
        key = self.table.key or self.table.columns[:1]
        rows = src.execute(sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT %s").format(
            _cols(key), relation, _cols(key)), (SAMPLE,)).fetchall()
        return [row[0] if len(row) == 1 else list(row) for row in rows]

    def _live_key_table(self, src, live, columns: list[str], table: Table | None = None):
        """The live table's values of `columns` (a key), copied into a table of the throwaway (unlogged, in a schema
        of ours there, so that the pipe's own session can fill it). The rows copied are the live row count."""
        table = table or self.table
        name = sql.Identifier(KEYS_SCHEMA, f"live_{table.oid}_{'_'.join(columns)}"[:63])
        marker = (table.qualified, tuple(columns))
        if marker in self.pipe.loaded:
            return name
        src.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(KEYS_SCHEMA)))
        src.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT {} FROM ONLY {} WITH NO DATA").format(
            name, _cols(columns), table.ident()))
        copied = self.pipe.copy(key_query(table, columns).as_string(live),
                                f"{name.as_string(src)} ({_cols(columns).as_string(src)})")
        src.execute(sql.SQL("ANALYZE {}").format(name))
        if table is self.table:
            self.rows_live = copied
        self.pipe.loaded[marker] = name
        return name

    def _select_into(self, src, query) -> None:
        """The rows of `query` into the selection. The query runs in a read-only transaction (the predicate only
        ever runs in one: here and in the checks)."""
        src.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(KEYS_SCHEMA)))
        src.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.selection))
        src.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT {} FROM ONLY {} WITH NO DATA").format(
            self.selection, _cols(self.table.columns), self.table.ident()))
        self.pipe.select(query.as_string(src), f"{self.selection.as_string(src)} "
                                               f"({_cols(self.table.columns).as_string(src)})")

    # side -----------------------------------------------------------------------------------------------------
    def plan_side(self, src, live, where: str, source: Source) -> None:
        t = self.table
        self.side_table = derived_name(t.name, f"__recovered_{source_stamp(source.backup_id, source.target)}")
        query = sql.SQL("SELECT {} FROM ONLY {} s").format(_cols(t.columns, "s"), t.ident())
        if where:
            query += sql.SQL(" WHERE ({})").format(sql.SQL(where))
        self._select_into(src, query)
        self.sample = self._key_sample(src, self.selection)
        self.to_write = self.rows_source
        exists = live.execute("SELECT to_regclass(%s) IS NOT NULL", (t.ident(self.side_table).as_string(live),)
                              ).fetchone()[0]
        if exists:
            if _fingerprint(live, t.ident(self.side_table), t.columns) != _fingerprint(src, self.selection, t.columns):
                raise RunbookError(f"{t.schema}.{self.side_table} exists and holds other rows than {t.qualified} had "
                                   "at the source: rename or drop it (it may be a person's work), then run again. "
                                   "Nothing was changed.")
            self.exists_same, self.to_write = True, 0

    # missing --------------------------------------------------------------------------------------------------
    def plan_missing(self, src, live, where: str) -> None:
        t = self.table
        keys = self._live_key_table(src, live, t.key)
        query = sql.SQL("SELECT {} FROM ONLY {} s WHERE NOT EXISTS (SELECT 1 FROM {} k WHERE {})").format(
            _cols(t.columns, "s"), t.ident(), keys, _match("k", t.key, "s", t.key))
        if where:
            query += sql.SQL(" AND ({})").format(sql.SQL(where))
        self._select_into(src, query)
        self._count_selection(src)

    def _count_selection(self, src) -> None:
        self.to_write = src.execute(sql.SQL("SELECT count(*) FROM {}").format(self.selection)).fetchone()[0]
        self.sample = self._key_sample(src, self.selection)

    def start_selection(self, src, live) -> None:
        """An empty selection (a parent table brought back only for its children's sake)."""
        empty = sql.SQL("SELECT {} FROM ONLY {} WHERE false")
        self._select_into(src, empty.format(_cols(self.table.columns), self.table.ident()))

    def orphans(self, src, live, fk: ForeignKey, parent) -> list:
        """Values of `fk` in the rows to write that no live row of the parent holds, nor a row written before."""
        if not self.to_write:
            return []
        parent_table = parent.table if parent else describe_named(live, fk.parent)
        keys = self._live_key_table(src, live, fk.parent_columns, parent_table)
        query = sql.SQL("SELECT DISTINCT {} FROM {} r WHERE {} AND NOT EXISTS (SELECT 1 FROM {} k WHERE {})").format(
            _cols(fk.columns, "r"), self.selection,
            sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier("r", c)) for c in fk.columns),
            keys, _match("k", fk.parent_columns, "r", fk.columns))
        if parent is not None:
            query += sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
                parent.selection, _match("p", fk.parent_columns, "r", fk.columns))
        rows = src.execute(query + sql.SQL(" ORDER BY 1")).fetchall()
        return [row[0] if len(row) == 1 else tuple(row) for row in rows]

    def add_parents(self, src, fk: ForeignKey, values: list) -> int:
        """The source's rows of this (parent) table that `values` of `fk` point at, added to the rows to write."""
        t = self.table
        wanted = sql.Identifier(f"rr_wanted_{self.index}")
        src.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM ONLY {} WITH NO DATA").format(
            wanted, _cols(fk.parent_columns), t.ident()))
        src.execute(sql.SQL("TRUNCATE {}").format(wanted))
        with src.cursor() as cur:
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(wanted, _cols(fk.parent_columns))) as copy:
                for value in values:
                    copy.write_row(value if isinstance(value, tuple) else (value,))
        src.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM ONLY {} s WHERE EXISTS (SELECT 1 FROM {} w WHERE {}) "
                            "AND NOT EXISTS (SELECT 1 FROM {} r WHERE {})").format(
            self.selection, _cols(t.columns), _cols(t.columns, "s"), t.ident(), wanted,
            _match("w", fk.parent_columns, "s", fk.parent_columns), self.selection,
            _match("r", t.key or fk.parent_columns, "s", t.key or fk.parent_columns)))
        before = self.to_write
        self._count_selection(src)
        return self.to_write - before

    # replace --------------------------------------------------------------------------------------------------
    def plan_replace(self, src, live) -> None:
        t = self.table
        self.kept_table = derived_name(t.name, f"__pre_recovery_{compact_timestamp(utc_now()).lower()}")
        self._select_into(src, sql.SQL("SELECT {} FROM ONLY {} s").format(_cols(t.columns, "s"), t.ident()))
        mirror = sql.Identifier(f"rr_mirror_{self.index}")
        src.execute(sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM ONLY {} WITH NO DATA").format(
            mirror, _cols(t.columns), t.ident()))
        copy_rows(live, sql.SQL("SELECT {} FROM ONLY {}").format(_cols(t.columns), t.ident()), src, mirror,
                  t.columns)
        self.changes = _differences(src, t, self.selection, mirror)
        self.to_write = self.changes["insert"] + self.changes["update"]
        self.sample = self._key_sample(src, self.selection)

    # the write ------------------------------------------------------------------------------------------------
    def apply(self, src, live, mode: str) -> None:
        t = self.table
        incoming = sql.Identifier(f"rr_in_{self.index}")
        live.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM ONLY {} WITH NO DATA").format(
            incoming, _cols(t.columns), t.ident()))
        copy_rows(src, sql.SQL("SELECT {} FROM {}").format(_cols(t.columns), self.selection), live, incoming,
                  t.columns)
        overriding = sql.SQL(" OVERRIDING SYSTEM VALUE") if t.identity_always else sql.SQL("")
        if mode == "side":
            live.execute(sql.SQL("CREATE TABLE {} AS SELECT {} FROM {}").format(
                t.ident(self.side_table), _cols(t.columns), incoming))
            self.written = live.execute(sql.SQL("SELECT count(*) FROM {}").format(t.ident(self.side_table))
                                        ).fetchone()[0]
            self._check(self.written == self.to_write, f"{self.side_table} holds {self.written} rows, the source "
                                                       f"{self.to_write}")
            return
        if mode == "missing":
            self.written = _insert_absent(live, t, incoming, overriding)
            absent = live.execute(sql.SQL("SELECT count(*) FROM {} i WHERE NOT EXISTS (SELECT 1 FROM ONLY {} l "
                                          "WHERE {})").format(incoming, t.ident(), _match("l", t.key, "i", t.key))
                                  ).fetchone()[0]
            self._check(absent == 0, f"{absent} of the rows to bring back are still not in {t.qualified}")
            return
        live.execute(sql.SQL("LOCK TABLE ONLY {} IN SHARE ROW EXCLUSIVE MODE").format(t.ident()))
        changes = _differences(live, t, incoming, sql.SQL("ONLY {}").format(t.ident()))
        self.changes = changes
        if not any(changes.values()):
            return
        self._refuse_children_of_deleted(live, incoming)
        live.execute(sql.SQL("CREATE TABLE {} AS TABLE {}").format(t.ident(self.kept_table), t.ident()))
        if t.key:
            match = _match("l", t.key, "i", t.key)
            live.execute(sql.SQL("DELETE FROM ONLY {} l WHERE NOT EXISTS (SELECT 1 FROM {} i WHERE {})").format(
                t.ident(), incoming, match))
            others = [c for c in t.columns if c not in t.key]
            if others:
                live.execute(sql.SQL("UPDATE ONLY {} l SET ({}) = ROW({}) FROM {} i WHERE {} AND ROW({}) IS DISTINCT "
                                     "FROM ROW({})").format(
                    t.ident(), _cols(others), _cols(others, "i"), incoming, match, _cols(others, "l"),
                    _cols(others, "i")))
            live.execute(sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {} i WHERE NOT EXISTS (SELECT 1 FROM ONLY {} l "
                                 "WHERE {})").format(t.ident(), _cols(t.columns), overriding, _cols(t.columns, "i"),
                                                     incoming, t.ident(), match))
        else:
            live.execute(sql.SQL("DELETE FROM ONLY {}").format(t.ident()))
            live.execute(sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {}").format(
                t.ident(), _cols(t.columns), overriding, _cols(t.columns), incoming))
        self.written = changes["insert"] + changes["update"] + changes["delete"]
        left = _differences(live, t, incoming, sql.SQL("ONLY {}").format(t.ident()))
        self._check(not any(left.values()), f"{t.qualified} still differs from the source ({left})")

    def _check(self, holds: bool, problem: str) -> None:
        """The check of the result, inside the write's transaction: when it fails, nothing is committed."""
        if not holds:
            raise RunbookError(f"the check after the write failed ({problem}), so the write was rolled back and "
                               "nothing was changed.")

    def _refuse_children_of_deleted(self, live, incoming) -> None:
        """A replace never deletes a row another table's row points at: that row's table keeps its later writes."""
        t = self.table
        for fk in t.referenced_by:
            child_schema, child_name = fk.parent.split(".", 1)
            child = sql.Identifier(child_schema, child_name)
            found = live.execute(sql.SQL(
                "SELECT {} FROM ONLY {} l WHERE NOT EXISTS (SELECT 1 FROM {} i WHERE {}) AND EXISTS "
                "(SELECT 1 FROM ONLY {} c WHERE {}) LIMIT %s").format(
                _cols(fk.columns, "l"), t.ident(), incoming, _match("l", fk.columns, "i", fk.columns), child,
                _match("c", fk.parent_columns, "l", fk.columns)), (SAMPLE,)).fetchall()
            if found:
                raise RunbookError(
                    f"replacing {t.qualified} would delete rows that {fk.parent} points at ({fk.name}: "
                    f"{', '.join(fk.columns)} = {', '.join(str(r[0] if len(r) == 1 else tuple(r)) for r in found)}): "
                    f"{fk.parent} keeps its later rows, so nothing was changed. Bring the rows back with "
                    "mode=missing, or add the child table to tables.")


def _insert_absent(live, table: Table, incoming, overriding) -> int:
    """Insert the incoming rows, never changing a row the live table has; the rows inserted. The rows were chosen
    because the live table lacked their keys, so a plain insert is tried first (about twice as fast as ON CONFLICT's
    speculative insertion); when the application has inserted one of those keys since, that insert is undone and
    ON CONFLICT DO NOTHING leaves the application's row as it is."""
    columns = _cols(table.columns)
    insert = sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {}").format(table.ident(), columns, overriding, columns,
                                                                       incoming)
    live.execute("SAVEPOINT runbook_recover_rows")
    try:
        rows = live.execute(insert).rowcount
    except UniqueViolation:
        live.execute("ROLLBACK TO SAVEPOINT runbook_recover_rows")
        rows = live.execute(insert + sql.SQL(" ON CONFLICT DO NOTHING")).rowcount
    live.execute("RELEASE SAVEPOINT runbook_recover_rows")
    return rows


def _differences(conn, table: Table, wanted, current) -> dict:
    """Rows to delete from `current`, update in it and insert into it so that it holds `wanted` (by key; without a
    key, the whole table when the two differ as multisets)."""
    cols = table.columns
    if table.key:
        match = _match("c", table.key, "w", table.key)
        others = [c for c in cols if c not in table.key]
        delete = conn.execute(sql.SQL("SELECT count(*) FROM {} c WHERE NOT EXISTS (SELECT 1 FROM {} w WHERE {})")
                              .format(current, wanted, match)).fetchone()[0]
        insert = conn.execute(sql.SQL("SELECT count(*) FROM {} w WHERE NOT EXISTS (SELECT 1 FROM {} c WHERE {})")
                              .format(wanted, current, match)).fetchone()[0]
        update = 0
        if others:
            update = conn.execute(sql.SQL("SELECT count(*) FROM {} w JOIN {} c ON {} WHERE ROW({}) IS DISTINCT FROM "
                                          "ROW({})").format(wanted, current, match, _cols(others, "w"),
                                                            _cols(others, "c"))).fetchone()[0]
        return {"delete": delete, "update": update, "insert": insert}
    same = conn.execute(sql.SQL("SELECT NOT EXISTS ((SELECT {0} FROM {1} EXCEPT ALL SELECT {0} FROM {2}) UNION ALL "
                                "(SELECT {0} FROM {2} EXCEPT ALL SELECT {0} FROM {1}))").format(
        _cols(cols), wanted, current)).fetchone()[0]
    if same:
        return {"delete": 0, "update": 0, "insert": 0}
    counts = [conn.execute(sql.SQL("SELECT count(*) FROM {}").format(r)).fetchone()[0] for r in (current, wanted)]
    return {"delete": counts[0], "update": 0, "insert": counts[1]}


def _fingerprint(conn, relation, columns: list[str]) -> tuple[int, str]:
    """Row count and a digest of the rows' text, in an order that does not depend on the server."""
    return tuple(conn.execute(sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\")), '') FROM "
        "(SELECT ROW({})::text AS r FROM {}) x").format(_cols(columns), relation)).fetchone())
