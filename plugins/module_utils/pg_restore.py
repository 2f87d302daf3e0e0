# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring a backup: into a fresh database with pg_restore -j, validated against the manifest;
and the safe recovery of a live database (stage, validate, swap by rename, probe, roll back)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.runbook.recovery.plugins.module_utils.backups import (
    Backup,
    LocalStore,
    checksum_files,
    dump_files,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    human_size,
    utc_now,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    count_rows,
    database_exists,
    database_properties,
    drop_database,
    pg_tool,
    server_data_directory_free,
    sql,
    terminate_connections,
    user_tables,
)

MARKER = "runbook.restored_backup"
STAGING_SUFFIX = "__recovery_staging"
KEPT_INFIX = "__pre_recovery_"
# The longest name derived from a database: <db>__pre_recovery_20261123T051200Z
MAX_DATABASE_NAME = 63 - len(KEPT_INFIX) - len("20261123T051200Z")


# -- verification building blocks --------------------------------------------------------------
def checksum_problems(backup: Backup, workers: int = 2) -> list[str]:
    """Every file named in the manifest has its size and sha256; no file is missing or extra."""
    expected = backup.manifest["files"]
    present = set(dump_files(backup.path))
    problems = [f"{name}: missing" for name in sorted(set(expected) - present)]
    problems += [f"{name}: not in the manifest" for name in sorted(present - set(expected))]
    actual = checksum_files(backup.path, sorted(set(expected) & present), workers=workers)
    for name, facts in sorted(actual.items()):
        if facts["sha256"] != expected[name]["sha256"] or facts["size"] != expected[name]["size"]:
            problems.append(f"{name}: sha256 {facts['sha256'][:12]}... differs from the manifest's "
                            f"{expected[name]['sha256'][:12]}...")
    return problems


def require_checksums(backup: Backup, problems: list[str] | None = None) -> None:
    problems = checksum_problems(backup) if problems is None else problems
    if problems:
        raise RunbookError(
            f"backup {backup.backup_id} of {backup.database!r} fails its checksum verification "
            f"({len(problems)} problem(s): {'; '.join(problems[:3])}). It will not be restored: choose another "
            "backup (backup=<id>; verify-backups.yml lists them) and keep this one for investigation.",
            problems=problems)


def catalog_problems(backup: Backup) -> list[str]:
    """pg_restore --list reads the table of contents; every table of the manifest has its data entry."""
    result = subprocess.run([pg_tool("pg_restore"), "--list", backup.path], capture_output=True, text=True)
    if result.returncode != 0:
        return [f"pg_restore --list failed: {result.stderr.strip()[-500:]}"]
    data_entries = set()
    for line in result.stdout.splitlines():
        if line.startswith(";") or " TABLE DATA " not in line:
            continue
        # "<id>; <oid> <oid> TABLE DATA <schema> <table> <owner>"
        fields = line.split(" TABLE DATA ", 1)[1].split()
        if len(fields) >= 2:
            data_entries.add((fields[0], fields[1]))
    return [f"{schema}.{name}: no TABLE DATA entry in the dump" for schema, name in backup.table_counts()
            if (schema, name) not in data_entries]


def count_problems(expected: dict, actual: dict) -> list[str]:
    problems = []
    for key, rows in sorted(expected.items()):
        got = actual.get(key)
        if got != rows:
            problems.append(f"{key[0]}.{key[1]}: {'missing' if got is None else f'{got} rows'}, manifest says {rows}")
    return problems


# -- restoring into a new database -----------------------------------------------------------
def create_database(conn, name: str, properties: dict | None, owner: str | None) -> None:
    query = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if properties:
        query += sql.SQL(" ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(properties["encoding"]), sql.Literal(properties["collate"]), sql.Literal(properties["ctype"]))
    if owner and conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone():
        query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
    conn.execute(query)


def restore_into(params: ConnParams, backup: Backup, target: str, jobs: int, owner: str | None = None,
                 no_owner: bool = False) -> dict:
    """Create `target` and pg_restore the backup into it; validate every table's row count against
    the manifest. On any failure `target` is dropped and the error says why."""
    with params.connect() as conn:
        if database_exists(conn, target):
            raise RunbookError(f"database {target!r} already exists; it is not ours to replace.")
        create_database(conn, target, backup.manifest.get("database_properties"), owner)
        try:
            command = [pg_tool("pg_restore"), f"--jobs={jobs}", "--exit-on-error", f"--dbname={target}"]
            if no_owner:
                command += ["--no-owner", "--no-privileges"]
            with tempfile.TemporaryFile() as stderr:
                result = subprocess.run([*command, backup.path], env=params.env(target), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=stderr)
                stderr.seek(0)
                errors = stderr.read().decode(errors="replace").strip()
            if result.returncode != 0:
                how = f"killed by signal {-result.returncode}" if result.returncode < 0 else f"exit {result.returncode}"
                raise RunbookError(f"pg_restore of backup {backup.backup_id} into {target!r} failed ({how}): "
                                   f"{errors[-1200:] or 'no message'}")
            expected = backup.table_counts()
            with params.connect(target) as restored:
                problems = count_problems(expected, count_rows(restored, expected))
            if problems:
                raise RunbookError(f"the restore of backup {backup.backup_id} into {target!r} does not match the "
                                   f"manifest: {'; '.join(problems[:5])}", problems=problems)
            return {"tables": len(expected), "rows": sum(expected.values())}
        except BaseException:
            drop_database(conn, target)
            raise


def scratch_name(database: str) -> str:
    return f"{database[:40]}__verify_{os.urandom(3).hex()}"


def verify_by_restore(params: ConnParams, backup: Backup, jobs: int) -> list[str]:
    """Restore into a scratch database, compare every table's row count, drop the scratch."""
    scratch = scratch_name(backup.database)
    try:
        restore_into(params, backup, scratch, jobs, no_owner=True)
    except RunbookError as exc:
        return exc.details.get("problems") or [str(exc)]
    with params.connect() as conn:
        drop_database(conn, scratch)
    return []


# -- recovery of a live database -------------------------------------------------------------
def _snapshot(params: ConnParams, conn, database: str) -> dict:
    """What a person would check before and after: does it exist, its size, its tables' row counts."""
    props = database_properties(conn, database)
    if props is None:
        return {"exists": False}
    state = {"exists": True, "size": human_size(props["size_bytes"]), "restored_backup": props["settings"].get(MARKER)}
    try:
        with params.connect(database) as db:
            counts = count_rows(db, user_tables(db))
        state["tables"] = {f"{s}.{n}": rows for (s, n), rows in counts.items()}
    except RunbookError as exc:
        state["error"] = str(exc)
    return state


def _is_local(params: ConnParams) -> bool:
    return params.host in ("", "localhost", "127.0.0.1", "::1") or params.host.startswith("/")


class Recovery:
    """Stage -> validate -> ANALYZE -> swap -> probe -> (roll back), for one database."""

    def __init__(self, params: ConnParams, store: LocalStore, database: str, backup: str, jobs: int = 2,
                 keep_previous: int = 2, health_query: str = "SELECT 1", force: bool = False,
                 no_owner: bool = False, swap_timeout: float = 30):
        self.params, self.store, self.database, self.wanted = params, store, database, backup
        self.jobs, self.keep_previous, self.health_query = jobs, keep_previous, health_query
        self.force, self.no_owner, self.swap_timeout = force, no_owner, swap_timeout
        self.staging = database + STAGING_SUFFIX
        self.result = {"changed": False, "database": database, "swapped": False, "rolled_back": False}

    def validate(self) -> None:
        validate_name(self.database, max_length=MAX_DATABASE_NAME)
        if self.jobs < 1:
            raise RunbookError(f"jobs={self.jobs} is not allowed: use 1 or more parallel pg_restore workers.")
        if self.keep_previous < 0:
            raise RunbookError(f"keep_previous={self.keep_previous} is negative: use 0 or more kept databases.")

    # -- plan (check mode and preflight) ---------------------------------------------------
    def plan(self, verify_checksums: bool = True) -> tuple[Backup, dict]:
        self.validate()
        backup = self.store.resolve(self.database, self.wanted)
        self.result["backup"] = backup.summary()
        with self.params.connect() as conn:
            before = _snapshot(self.params, conn, self.database)
            if backup.database != self.database:
                raise RunbookError(f"backup {backup.backup_id} belongs to {backup.database!r}, not {self.database!r}.")
            current = before.get("restored_backup")
            needed = self.force or current != backup.backup_id
            plan = {"needed": needed, "backup": backup.backup_id, "database": self.database,
                    "staging_database": self.staging,
                    "keep_current_as": self.kept_name() if before["exists"] else None,
                    "connections_to_terminate": self._connections(conn),
                    "tables": len(backup.manifest["tables"]),
                    "rows": sum(t["rows"] for t in backup.manifest["tables"])}
            if needed:
                if verify_checksums:
                    require_checksums(backup)
                self._check_server_space(conn, backup)
        self.result.update(before=before, plan=plan)
        if not needed:
            self.result["msg"] = (f"database {self.database} already holds backup {backup.backup_id}: nothing to do "
                                  "(force=true restores it again)")
        else:
            action = f"keep the current database as {plan['keep_current_as']}" if before["exists"] else \
                "create it (it does not exist now)"
            self.result["msg"] = (f"would restore backup {backup.backup_id} ({plan['tables']} tables, {plan['rows']} "
                                  f"rows) into {self.staging}, validate it, {action}, and swap it in as "
                                  f"{self.database}")
        self.result["changed"] = needed
        return backup, plan

    def kept_name(self) -> str:
        return f"{self.database}{KEPT_INFIX}{compact_timestamp(utc_now())}"

    def _connections(self, conn) -> int:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (self.database,)).fetchone()[0]

    def _check_server_space(self, conn, backup: Backup) -> None:
        if not _is_local(self.params):
            return
        free = server_data_directory_free(conn)
        props = backup.manifest.get("database_properties") or {}
        needed = int((props.get("size_bytes") or 0) * 1.1)
        if free is not None and free < needed:
            raise RunbookError(f"the server's data directory has {human_size(free)} free; restoring backup "
                               f"{backup.backup_id} beside the current database needs about {human_size(needed)}. "
                               "Free space on the server first; nothing was changed.")

    # -- apply -----------------------------------------------------------------------------
    def run(self) -> dict:
        backup, plan = self.plan(verify_checksums=False)
        if not plan["needed"]:
            return self.result
        started = time.monotonic()
        with self.params.connect() as conn:
            self._drop_leftover_staging(conn)
            owner = None
            current = database_properties(conn, self.database)
            if current:
                owner = current["owner"]
            elif backup.manifest.get("database_properties"):
                owner = backup.manifest["database_properties"]["owner"]
        # The checksums are verified while pg_restore runs (both read the same files); nothing is
        # swapped unless they pass, and a failed check drops the staging database.
        with ThreadPoolExecutor(max_workers=1) as pool:
            checked = pool.submit(checksum_problems, backup)
            try:
                self.result["restore"] = restore_into(self.params, backup, self.staging, self.jobs, owner=owner,
                                                      no_owner=self.no_owner)
            except RunbookError:
                require_checksums(backup, checked.result())  # a damaged file explains the failure best
                raise
        try:
            require_checksums(backup, checked.result())
            self._prepare_staging(current, backup)
            kept = self._swap(plan["keep_current_as"])
        except BaseException:
            with self.params.connect() as conn:
                drop_database(conn, self.staging)
            raise
        self.result.update(changed=True, swapped=True, kept_database=kept)
        try:
            self._probe()
        except RunbookError as exc:
            self.rollback(kept)
            raise RunbookError(f"{exc} The recovery was rolled back: {self.database} is the database it was before "
                               "(the restored copy was dropped).", **self.result) from exc
        with self.params.connect() as conn:
            self.result["removed_previous"] = self._trim_kept(conn, keep=kept)
            self.result["after"] = _snapshot(self.params, conn, self.database)
        self.result["elapsed_seconds"] = round(time.monotonic() - started, 3)
        self.result["msg"] = (f"{self.database} now holds backup {backup.backup_id}; the previous database is kept as "
                              f"{kept}" if kept else f"{self.database} created from backup {backup.backup_id}")
        return self.result

    def _drop_leftover_staging(self, conn) -> None:
        """A staging database left by an interrupted run is ours (reserved name): start clean."""
        if database_exists(conn, self.staging):
            drop_database(conn, self.staging)

    def _prepare_staging(self, current: dict | None, backup: Backup) -> None:
        """Database-level settings the dump does not carry, then statistics, before anyone connects."""
        settings = dict((current or backup.manifest.get("database_properties") or {}).get("settings") or {})
        settings.pop(MARKER, None)
        settings[MARKER] = backup.backup_id
        with self.params.connect() as conn:
            for name, value in settings.items():
                conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(self.staging), sql.Identifier(name), sql.Literal(value)))
        with self.params.connect(self.staging) as staging:
            staging.execute("ANALYZE")

    def _swap(self, kept: str | None) -> str | None:
        """Rename current -> kept and staging -> current in one transaction, after closing every
        session on both; new connections to the current database are refused meanwhile."""
        deadline = time.monotonic() + self.swap_timeout
        swapped = False
        with self.params.connect() as conn:
            exists = database_exists(conn, self.database)
            if exists:
                self._allow_connections(conn, self.database, False)
            try:
                while not swapped:
                    self.result["terminated_connections"] = (
                        terminate_connections(conn, self.database) + terminate_connections(conn, self.staging))
                    try:
                        with conn.transaction():
                            if exists:
                                self._rename(conn, self.database, kept)
                            self._rename(conn, self.staging, self.database)
                        swapped = True
                    except Exception as exc:  # "is being accessed by other users": sessions still closing
                        if "being accessed" not in str(exc) or time.monotonic() > deadline:
                            raise RunbookError(f"could not swap {self.staging} into place: {exc}") from exc
                        time.sleep(0.2)
            finally:
                if exists:
                    self._allow_connections(conn, kept if swapped else self.database, True)
        return kept if exists else None

    @staticmethod
    def _rename(conn, old: str, new: str) -> None:
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))

    @staticmethod
    def _allow_connections(conn, name: str, allow: bool) -> None:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")))

    def _probe(self) -> None:
        try:
            with self.params.connect(self.database) as conn:
                conn.execute("SET statement_timeout = '30s'")
                conn.execute(self.health_query).fetchall()
        except RunbookError:
            raise
        except Exception as exc:
            raise RunbookError(f"the SQL health probe on the recovered {self.database} failed: "
                               f"{' '.join(str(exc).split())}.") from exc

    def rollback(self, kept: str | None) -> None:
        """Put the kept database back under the original name and drop the restored one."""
        with self.params.connect() as conn:
            if kept and not database_exists(conn, kept):
                raise RunbookError(f"cannot roll back: the kept database {kept!r} no longer exists.")
            failed = f"{self.database[:40]}__failed_{os.urandom(3).hex()}"
            terminate_connections(conn, self.database)
            if kept:
                terminate_connections(conn, kept)
            with conn.transaction():
                if database_exists(conn, self.database):
                    self._rename(conn, self.database, failed)
                if kept:
                    self._rename(conn, kept, self.database)
            drop_database(conn, failed)
        self.result.update(rolled_back=True, swapped=False, changed=True)

    def _trim_kept(self, conn, keep: str | None) -> list[str]:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname DESC",
            (self.database + KEPT_INFIX,)).fetchall()]
        doomed = [n for n in names if n != keep][max(0, self.keep_previous - (1 if keep else 0)):]
        for name in doomed:
            drop_database(conn, name)
        return doomed
