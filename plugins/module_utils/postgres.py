# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL connection, held once: argument spec, psycopg connections, the environment for
pg_dump/pg_restore (the password goes in PGPASSWORD, never on a command line), and the catalog
queries the modules share."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, failure_details

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


def describe_database_error(exc: Exception) -> str:
    return (f"PostgreSQL reported an error: {' '.join(str(exc).split())}. Nothing after this point was done; "
            "check the server log and the task's inputs.")
_PG_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGDATABASE", "PGSERVICE",
           "PGOPTIONS", "PGCONNECT_TIMEOUT", "PGAPPNAME")


@contextlib.contextmanager
def failures_reported(module, *context: dict):
    """The two expected kinds of failure, each mapped to one fail_json with a message for a person;
    anything else is a bug and keeps its traceback. `context` adds facts to a RunbookError's result."""
    try:
        yield
    except RunbookError as exc:
        module.fail_json(msg=str(exc), **failure_details(*context, exc.details))
    except DatabaseError as exc:
        module.fail_json(msg=describe_database_error(exc))


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


@dataclass(frozen=True)
class ConnParams:
    host: str = ""
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    unix_socket: str = ""
    connect_timeout: int = 10
    maintenance_db: str = "postgres"

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

    def kwargs(self, dbname: str | None = None) -> dict:
        kwargs = dict(dbname=dbname or self.maintenance_db, port=self.port, user=self.user,
                      connect_timeout=self.connect_timeout, application_name=APPLICATION_NAME)
        if self._host():
            kwargs["host"] = self._host()
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def env(self, dbname: str | None = None) -> dict:
        """Environment for a libpq client process; inherited PG* variables are replaced, not mixed."""
        env = {key: value for key, value in os.environ.items() if key not in _PG_ENV}
        env.update(PGPORT=str(self.port), PGUSER=self.user, PGDATABASE=dbname or self.maintenance_db,
                   PGCONNECT_TIMEOUT=str(self.connect_timeout), PGAPPNAME=APPLICATION_NAME)
        if self._host():
            env["PGHOST"] = self._host()
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, dbname: str | None = None, autocommit: bool = True):
        if not HAS_PSYCOPG:
            raise RunbookError(f"the Python library psycopg 3 is required on the managed host: {PSYCOPG_IMPORT_ERROR}")
        try:
            return psycopg.connect(**self.kwargs(dbname), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise RunbookError(
                f"cannot connect to PostgreSQL at {self.where} as {self.user!r} (database "
                f"{dbname or self.maintenance_db!r}): {reason}. Check that the server is running and that the "
                "connection settings (pg_connection in the inventory) are right.") from exc


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


def database_exists(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


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
    return [(schema, name) for schema, name in rows]


def count_rows(conn, tables) -> dict[tuple[str, str], int]:
    counts = {}
    for schema, name in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        counts[(schema, name)] = conn.execute(query).fetchone()[0]
    return counts


def database_properties(conn, name: str) -> dict | None:
    row = conn.execute(
        """
        SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, r.rolname,
               pg_database_size(d.oid),
               coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                         WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}')
        FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s
        """, (name,)).fetchone()
    if row is None:
        return None
    encoding, collate, ctype, owner, size, settings = row
    return {"encoding": encoding, "collate": collate, "ctype": ctype, "owner": owner, "size_bytes": size,
            "settings": dict(item.split("=", 1) for item in settings)}


def terminate_connections(conn, database: str) -> int:
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,)).fetchall()
    return len(rows)


def drop_database(conn, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


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
