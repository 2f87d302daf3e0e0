# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL connection, held once: argument spec, psycopg connections, the environment for
pg_dump/pg_restore (the password goes in PGPASSWORD, never on a command line), the catalog
queries the modules share (a database's own state among them), and the advisory lock that keeps
two recoveries of one database apart."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    utc_now,
)
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import reported

try:
    import psycopg
    from psycopg import sql

    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    psycopg = None
    sql = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = exc

APPLICATION_NAME = "runbook.recovery"
# What a module catches besides RunbookError: any error the server or libpq reports.
DatabaseError = psycopg.Error if HAS_PSYCOPG else RuntimeError
# Every connection of ours: built-in objects first, temporary ones last, nobody's schema in between.
SAFE_SEARCH_PATH = "-c search_path=pg_catalog,pg_temp"


def describe_database_error(exc: Exception) -> str:
    return (f"PostgreSQL reported an error: {' '.join(str(exc).split())}. Nothing after this point was done; "
            "check the server log and the task's inputs.")


# How often a server checks that a session's client is still there (notice_a_lost_client).
CLIENT_CHECK = "2s"
_PG_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGDATABASE", "PGSERVICE",
           "PGOPTIONS", "PGCONNECT_TIMEOUT", "PGAPPNAME")


def failures_reported(module, *context: dict):
    """The outcome seam (outcome.reported) for a PostgreSQL, Redis or Docker module: a database error's message is
    written for a person. `context` adds facts to the failure's result."""
    return reported(module, lambda exc: describe_database_error(exc) if isinstance(exc, DatabaseError) else None,
                    *context)


def postgres_argument_spec() -> dict:
    return dict(
        login_host=dict(type="str", default="", aliases=["host"]),
        login_port=dict(type="int", default=5432, aliases=["port"]),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", default="", no_log=True),
        login_unix_socket=dict(type="str", default=""),
        connect_timeout=dict(type="int", default=10),
        maintenance_db=dict(type="str", default="postgres"),
    )


def run_application_name(run_id: str) -> str:
    """The application_name of the sessions of one task run (every try of it): ours (it starts with
    APPLICATION_NAME), and short enough for the server's 63 bytes."""
    return f"{APPLICATION_NAME} run {hashlib.sha256(run_id.encode()).hexdigest()[:16]}"


def ours(application_name: str) -> bool:
    return application_name == APPLICATION_NAME or application_name.startswith(APPLICATION_NAME + " run ")


def end_earlier_tries(params: ConnParams) -> int:
    """A try killed at its execution timeout leaves its sessions on the server until the server notices the lost
    client (CLIENT_CHECK, or never before PostgreSQL 14): the next try of the same run ends them first, and waits
    until they are gone, so it never queues behind its own earlier try's lock or overlaps it. Returns how many."""
    with params.connect() as conn:
        wait = ", 5000" if conn.info.server_version >= 140000 else ""
        return conn.execute(
            f"SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid{wait})) FROM "
            "pg_catalog.pg_stat_activity WHERE application_name = %s AND pid <> pg_catalog.pg_backend_pid()",
            (params.application_name,)).fetchone()[0]


def notice_a_lost_client(conn) -> None:
    """A session whose client was killed (a task stopped at its execution timeout) would keep running or waiting for
    a lock, holding its place in the lock queue, until it next wrote to the socket: from PostgreSQL 14 on the server
    checks every CLIENT_CHECK for a closed connection and ends the session."""
    if conn.info.server_version >= 140000:
        conn.execute(f"SET client_connection_check_interval = '{CLIENT_CHECK}'")
        if not conn.autocommit:
            conn.commit()


@dataclass(frozen=True)
class ConnParams:
    host: str = ""
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    unix_socket: str = ""
    connect_timeout: int = 10
    maintenance_db: str = "postgres"
    # What pg_stat_activity shows for our sessions: APPLICATION_NAME, or run_application_name() for the sessions
    # of one Airflow task run, which a later try of that run can find and end.
    application_name: str = APPLICATION_NAME

    @classmethod
    def from_params(cls, params: dict) -> ConnParams:
        return cls(host=params.get("login_host") or "", port=int(params.get("login_port") or 5432),
                   user=params.get("login_user") or "postgres", password=params.get("login_password") or "",
                   unix_socket=params.get("login_unix_socket") or "",
                   connect_timeout=int(params.get("connect_timeout") or 10),
                   maintenance_db=params.get("maintenance_db") or "postgres")

    @property
    def where(self) -> str:
        return f"{self.host or self.unix_socket or 'the local socket'}:{self.port}"

    def _host(self) -> str:
        return self.host or self.unix_socket

    def kwargs(self, dbname: str | None = None, own_search_path: bool = True) -> dict:
        kwargs = dict(dbname=dbname or self.maintenance_db, port=self.port, user=self.user,
                      connect_timeout=self.connect_timeout, application_name=self.application_name)
        if own_search_path:
            kwargs["options"] = SAFE_SEARCH_PATH
        if self._host():
            kwargs["host"] = self._host()
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def env(self, dbname: str | None = None) -> dict:
        """Environment for a libpq client process; inherited PG* variables are replaced, not mixed."""
        env = {key: value for key, value in os.environ.items() if key not in _PG_ENV}
        env.update(PGPORT=str(self.port), PGUSER=self.user, PGDATABASE=dbname or self.maintenance_db,
                   PGCONNECT_TIMEOUT=str(self.connect_timeout), PGAPPNAME=self.application_name)
        if self._host():
            env["PGHOST"] = self._host()
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, dbname: str | None = None, autocommit: bool = True, own_search_path: bool = True):
        """A connection whose search_path is pg_catalog then pg_temp (SAFE_SEARCH_PATH): no object a database's
        owner creates is found by a name of ours, so nothing of theirs runs as us. `own_search_path=False` keeps
        the database's own search_path, for the operator's own SQL (a health probe)."""
        if not HAS_PSYCOPG:
            raise RunbookError(f"the Python library psycopg 3 is required on the managed host: {PSYCOPG_IMPORT_ERROR}")
        try:
            conn = psycopg.connect(**self.kwargs(dbname, own_search_path), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise RunbookError(
                f"cannot connect to PostgreSQL at {self.where} as {self.user!r} (database "
                f"{dbname or self.maintenance_db!r}): {reason}. Check that the server is running and that the "
                "connection settings (pg_connection in the inventory) are right.") from exc
        notice_a_lost_client(conn)
        return conn


def pg_tool(name: str) -> str:
    """Path of a PostgreSQL client program, preferring the newest installed major version."""
    found = shutil.which(name)
    candidates = sorted((p for p in _versioned_bindirs() if os.path.exists(os.path.join(p, name))), reverse=True)
    if candidates:
        return os.path.join(candidates[0], name)
    if found:
        return found
    raise RunbookError(f"{name} is not installed on this host: install the PostgreSQL client programs.")


def _versioned_bindirs() -> list[str]:
    base = "/usr/lib/postgresql"
    if not os.path.isdir(base):
        return []
    versions = [v for v in os.listdir(base) if v.isdigit()]
    return [os.path.join(base, v, "bin") for v in sorted(versions, key=int)]


def database_oid(conn, name: str) -> int | None:
    row = conn.execute("SELECT oid::bigint FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row[0] if row else None


def database_exists(conn, name: str) -> bool:
    return database_oid(conn, name) is not None


def user_tables(conn) -> list[tuple[str, str]]:
    """Every table whose rows pg_dump writes: ordinary and partition leaf tables outside the system
    schemas, excluding those that belong to extensions."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1, 2
        """).fetchall()
    return [tuple(row) for row in rows]  # (schema, name)


def count_rows(conn, tables, lock_timeout: str | None = None) -> dict[tuple[str, str], int | None]:
    """Each table's row count. With `lock_timeout` (a live database, autocommit), a table another session holds
    locked (a migration) is waited for no longer than that and counted as None instead of hanging the caller."""
    counts = {}
    if lock_timeout:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))
    for schema, name in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        try:
            counts[(schema, name)] = conn.execute(query).fetchone()[0]
        except psycopg.errors.LockNotAvailable:
            if not lock_timeout:
                raise
            counts[(schema, name)] = None
    return counts


def count_large_objects(conn) -> int:
    return conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]


def database_properties(conn, name: str) -> dict | None:
    """Everything a database carries outside its contents, as a backup's manifest records it and a
    recovery puts it back: encoding and locale, owner, connection limit, ALTER DATABASE SET settings,
    its ACL (None when never granted: PostgreSQL's defaults), its comment, and the settings of each role
    in it (ALTER ROLE ... IN DATABASE ... SET). pg_dump leaves all of these out without --create."""
    row = conn.execute(
        """
        SELECT to_jsonb(d), pg_encoding_to_char(d.encoding), r.rolname, pg_database_size(d.oid),
               coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                         WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}'),
               d.datacl IS NULL,
               coalesce((SELECT json_agg(json_build_object('grantor', gr.rolname, 'grantee', ge.rolname,
                                                           'privilege', a.privilege_type, 'grantable', a.is_grantable)
                                         ORDER BY a.n)
                         FROM aclexplode(d.datacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type,
                                                                         is_grantable, n)
                         JOIN pg_roles gr ON gr.oid = a.grantor
                         LEFT JOIN pg_roles ge ON ge.oid = a.grantee), '[]'),
               shobj_description(d.oid, 'pg_database'),
               coalesce((SELECT json_object_agg(r2.rolname, s.setconfig) FROM pg_db_role_setting s
                         JOIN pg_roles r2 ON r2.oid = s.setrole WHERE s.setdatabase = d.oid), '{}')
        FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s
        """, (name,)).fetchone()
    if row is None:
        return None
    columns, encoding, owner, size, settings, default_acl, acl, comment, role_settings = row
    return {"encoding": encoding,
            "collate": columns["datcollate"], "ctype": columns["datctype"],
            "locale_provider": columns.get("datlocprovider", "c"),
            "icu_locale": columns.get("daticulocale") or columns.get("datlocale"),
            "owner": owner, "size_bytes": size, "oid": int(columns["oid"]),
            "connection_limit": columns["datconnlimit"],
            "settings": _settings_dict(settings),
            "acl": None if default_acl else acl,
            "comment": comment,
            "role_settings": {role: _settings_dict(config) for role, config in role_settings.items()}}


def _settings_dict(config: list[str]) -> dict:
    return dict(item.split("=", 1) for item in config or [])


# Settings whose value is a list of names: each element is its own literal (as pg_dump writes them),
# or `SET search_path = 'a, b'` would make one schema called "a, b".
_LIST_SETTINGS = frozenset({"local_preload_libraries", "search_path", "session_preload_libraries",
                            "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"})


def setting_value_sql(name: str, value: str):
    """The right-hand side of `SET name = ...` that stores exactly `value` as pg_db_role_setting shows it."""
    elements = split_setting_list(value) if name.lower() in _LIST_SETTINGS else []
    if not elements:  # a plain value, or an empty list (search_path = '', as secure schema usage advises)
        return sql.Literal("" if name.lower() in _LIST_SETTINGS else value)
    return sql.SQL(", ").join(sql.Literal(element) for element in elements)


def split_setting_list(value: str) -> list[str]:
    """'"$user", public' -> ['$user', 'public']: PostgreSQL's list syntax, double quotes undone."""
    elements, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and value[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            elements.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    if current.strip() or elements:
        elements.append(current.strip())
    return elements


def conninfo_dbname(name: str) -> str:
    """A --dbname argument that names exactly this database: a bare name holding '=' would be read
    as a connection string."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tied_to_this_process(command: list[str]) -> list[str]:
    """The command, started so that the kernel kills it if this module dies (SIGKILL, OOM): a pg_restore
    left running by a dead recovery would write into a database the next run is entitled to drop."""
    setpriv = _setpriv_with_pdeathsig()
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


@functools.lru_cache(maxsize=1)
def _setpriv_with_pdeathsig() -> str | None:
    """setpriv, when it knows --pdeathsig (util-linux 2.33 and later)."""
    setpriv = shutil.which("setpriv")
    if setpriv and subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True,
                                  check=False).returncode == 0:
        return setpriv
    return None


def terminate_connections(conn, database: str) -> int:
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,)).fetchall()
    return len(rows)


def drop_database(conn, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def restore_point_name(procedure: str, moment) -> str:
    """runbook-recover-db-20261125T140300Z: names what made it and when (at most 63 bytes)."""
    return f"runbook-{procedure}-{compact_timestamp(moment)}"[:63]


def create_restore_point(conn, name: str) -> str:
    """A named point in the WAL that a point-in-time recovery can stop at (`recovery_target_name`); its LSN."""
    return conn.execute("SELECT pg_create_restore_point(%s)::text", (name,)).fetchone()[0]


def server_identity(conn, database_oid: int) -> str:
    """`<system identifier>:<oid>`: a database's oid alone repeats across clusters (the first one made is 16384)."""
    system = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
    return f"{system}:{database_oid}"


def server_data_directory_free(conn) -> int | None:
    """Free bytes on the server's data directory when the server runs on this host and we may see it."""
    try:
        path = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
    except psycopg.Error:
        return None
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


# -- one run at a time --------------------------------------------------------------------------
# The first key of the advisory locks this collection takes ('rrec'); the second is hashtext(database).
LOCK_CLASS = 0x72726563
_HOLDER_TAG = "runbook.recovery lock holder: "
_APP_TAG = "runbook.recovery lock "


class RunLock:
    """The recovery lock of one database, held by this process.

    A session-level advisory lock on a connection of its own: PostgreSQL releases it the moment that
    connection ends, so it dies with the process that holds it (a SIGKILL, an OOM kill, a lost
    worker) and can never be left behind. Advisory locks belong to the database the session is in, so
    a lock is only ours when no session in any other database holds the same key. Who holds it
    (procedure, host, pid, start time) is in the text of the statement that took it, which
    pg_stat_activity keeps showing while the session idles, and in its application_name, which every
    role may read. It needs a real session: not through a pooler in transaction mode.
    """

    def __init__(self, params: ConnParams, procedure: str, database: str):
        self.params, self.database = params, database
        self.holder = {"procedure": procedure, "host": socket.gethostname(), "pid": os.getpid(),
                       "started_at": utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.conn = None
        self.backend = None

    def _execute(self, query: str, args: tuple = ()):
        """Every statement on the lock's connection carries the holder, since pg_stat_activity shows the last."""
        tag = sql.SQL("/* {} */ ").format(sql.SQL(_HOLDER_TAG + json.dumps(self.holder).replace("*/", "")))
        return self.conn.execute(tag + sql.SQL(query), args)

    def acquire(self, wait_seconds: float) -> None:
        self.conn = self.params.connect()
        # A server that closes idle sessions would take the lock away in the middle of a restore.
        self.conn.execute("SET idle_session_timeout = 0")
        self.conn.execute("SET idle_in_transaction_session_timeout = 0")
        self.conn.execute(sql.SQL("SET application_name = {}").format(sql.Literal(
            f"{_APP_TAG}{self.holder['pid']}@{self.holder['host']}"[:63])))
        self.backend = self.conn.info.backend_pid
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            if self._execute("SELECT pg_try_advisory_lock(%s::int4, hashtext(%s))",
                             (LOCK_CLASS, self.database)).fetchone()[0]:
                if self._execute(_OTHER_HOLDER, (LOCK_CLASS, self.database, self.backend)).fetchone() is None:
                    return
                self._execute("SELECT pg_advisory_unlock(%s::int4, hashtext(%s))", (LOCK_CLASS, self.database))
            if time.monotonic() >= deadline:
                found = lock_holder(self.conn, self.database, exclude=self.backend)
                raise RunbookError(
                    f"another run is working on database {self.database!r}: {describe_holder(found)}. Waited "
                    f"{wait_seconds:g}s. Nothing was changed: wait for that run to end (the lock goes with it, even "
                    "if it is killed), then run this again.", lock_holder=found)
            time.sleep(0.5)

    def require(self, before: str) -> None:
        """Refuse to go on unless this session still holds the lock (its connection may have been cut)."""
        try:
            held = self._execute(
                "SELECT pg_backend_pid() = %s AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND pid = pg_backend_pid() AND classid = %s::int4::oid AND objid = hashtext(%s)::oid)",
                (self.backend, LOCK_CLASS, self.database)).fetchone()[0]
        except DatabaseError:
            held = False
        if not held:
            raise RunbookError(f"this run lost the recovery lock of database {self.database!r} (its connection to "
                               f"the server was closed) and stopped before it would {before}; another run may be "
                               "working on it. Check the database, then run this again.")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()


@contextlib.contextmanager
def exclusive_run(params: ConnParams, procedure: str, database: str, wait_seconds: float):
    """Hold the recovery lock of `database` (see RunLock) for the block; waits up to `wait_seconds`,
    then refuses naming the holder."""
    lock = RunLock(params, procedure, database)
    try:
        lock.acquire(wait_seconds)
        yield lock
    finally:
        lock.release()


_OTHER_HOLDER = """
    SELECT a.pid, host(a.client_addr), to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           a.query, a.application_name
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = %s::int4::oid AND l.objid = hashtext(%s)::oid AND l.pid IS DISTINCT FROM %s::int4
    """


def lock_holder(conn, database: str, exclude: int | None = None) -> dict | None:
    """The session holding the recovery lock of `database` in any database of the server, but `exclude`."""
    row = conn.execute(_OTHER_HOLDER, (LOCK_CLASS, database, exclude)).fetchone()
    if row is None:
        return None
    backend, client, since, query, application = row
    found = {"backend_pid": backend, "client_addr": client or "unknown", "connected_at": since or "unknown"}
    if _HOLDER_TAG in (query or ""):
        with contextlib.suppress(ValueError):
            found.update(json.loads(query.split(_HOLDER_TAG, 1)[1].split(" */", 1)[0]))
    elif (application or "").startswith(_APP_TAG):  # the statement is hidden from roles without pg_read_all_stats
        pid, _at, host = application[len(_APP_TAG):].partition("@")
        found.update(procedure="a recovery", pid=pid, host=host, started_at="(unknown)")
    return found


def describe_holder(found: dict | None) -> str:
    if found is None:
        return "it has just ended"
    who = (f"{found['procedure']} run by pid {found['pid']} on host {found['host']}, started {found['started_at']}"
           if "pid" in found else "an unknown client")
    return f"{who} (PostgreSQL backend {found['backend_pid']} from {found['client_addr']})"
