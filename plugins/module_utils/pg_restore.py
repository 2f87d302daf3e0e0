# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring a backup: into a fresh database with pg_restore -j, validated against the manifest;
and the safe recovery of a live database (stage, validate, carry the database's own state across,
swap by rename, probe, roll back), one run per database at a time under an advisory lock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.backups import (
    Backup,
    LocalStore,
    checksum_files,
    dump_files,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    derived_name,
    human_size,
    utc_now,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.journal import Journal
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record, record_undo
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import (
    Throwaway,
    check_free_space,
    remove_leftovers,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    conninfo_dbname,
    count_large_objects,
    count_rows,
    database_exists,
    database_oid,
    database_properties,
    drop_database,
    exclusive_run,
    pg_tool,
    server_data_directory_free,
    server_identity,
    setting_value_sql,
    sql,
    terminate_connections,
    tied_to_this_process,
    user_tables,
)

# Where recoveries made before the restored backup was recorded in the store kept it: read, never written.
LEGACY_MARKER = "runbook.restored_backup"
STAGING_SUFFIX = "__recovery_staging"
KEPT_INFIX = "__pre_recovery_"
_TIMESTAMP_LENGTH = len("20261123T051200Z")
# What a database carries besides its contents, in the words of the plan.
CARRIED = ("owner", "connection limit", "ALTER DATABASE SET settings", "ACL (GRANT/REVOKE on the database)",
           "comment", "ALTER ROLE ... IN DATABASE ... SET settings")


JOURNALS = ".journals"  # under the backup store: where a recovery's journal lives, beside its backups


def recovery_journal(store_root: str, params: ConnParams, database: str) -> Journal:
    """The journal of the recovery of `database` on the server `params` reaches (on the host it runs on)."""
    server = hashlib.sha256(f"{params.host or params.unix_socket}:{params.port}".encode()).hexdigest()[:8]
    return Journal(os.path.join(store_root, JOURNALS, f"recover-db-{database}-{server}.json"))


def interrupted_recoveries(store_root: str) -> list[dict]:
    """The journals of recoveries killed mid-run (their process is gone), for the health sweep."""
    directory = os.path.join(store_root, JOURNALS)
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith("recover-db-") and n.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = (Journal(os.path.join(directory, name)).interrupted() for name in names)
    return [entry for entry in found if entry is not None]


def staging_name(database: str) -> str:
    return derived_name(database, STAGING_SUFFIX)


def kept_prefix(database: str) -> str:
    """<db>__pre_recovery_ (shortened with a hash for a long name); a timestamp follows."""
    return derived_name(database, KEPT_INFIX + "0" * _TIMESTAMP_LENGTH)[:-_TIMESTAMP_LENGTH]


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
    result = subprocess.run([pg_tool("pg_restore"), "--list", backup.path], capture_output=True, text=True, check=False)
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
        if properties.get("locale_provider") == "i" and properties.get("icu_locale"):
            query += sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(properties["icu_locale"]))
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
            command = [pg_tool("pg_restore"), f"--jobs={jobs}", "--exit-on-error",
                       f"--dbname={conninfo_dbname(target)}"]
            if no_owner:
                command += ["--no-owner", "--no-privileges"]
            with tempfile.TemporaryFile() as stderr:
                result = subprocess.run(tied_to_this_process([*command, backup.path]), env=params.env(target),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, check=False)
                stderr.seek(0)
                errors = stderr.read().decode(errors="replace").strip()
            if result.returncode != 0:
                how = f"killed by signal {-result.returncode}" if result.returncode < 0 else f"exit {result.returncode}"
                raise RunbookError(f"pg_restore of backup {backup.backup_id} into {target!r} failed ({how}): "
                                   f"{errors[-1200:] or 'no message'}")
            expected = backup.table_counts()
            with params.connect(target) as restored:
                problems = count_problems(expected, count_rows(restored, expected))
                if "large_objects" in backup.manifest:
                    found = count_large_objects(restored)
                    if found != backup.manifest["large_objects"]:
                        problems.append(f"large objects: {found}, manifest says {backup.manifest['large_objects']}")
            if problems:
                raise RunbookError(f"the restore of backup {backup.backup_id} into {target!r} does not match the "
                                   f"manifest: {'; '.join(problems[:5])}", problems=problems)
            return {"tables": len(expected), "rows": sum(expected.values())}
        except BaseException:
            drop_database(conn, target)
            raise


def scratch_name(database: str) -> str:
    return derived_name(database, f"__verify_{os.urandom(3).hex()}")


SCRATCH_CLAIM = "runbook-verify:"  # + the scratch database's name: the advisory lock its verification holds
THROWAWAY_OVERHEAD = 64 << 20  # an empty cluster's own files


@dataclass
class Scratch:
    """Where a restore-level verification restores. `throwaway` (the default): a cluster of its own, made with
    initdb under `work_dir` on the host that holds the backups and removed after, so the production server gives
    it nothing, not even disk; a throwaway left by a killed run is removed by the next. `server`: a scratch database
    on the server itself (asked for explicitly), claimed with an advisory lock, so that one a killed run left is
    dropped by the next verification."""

    where: str = "throwaway"
    work_dir: str = "/var/tmp/runbook-verify"
    os_user: str | None = "postgres"

    def validate(self) -> None:
        if self.where not in ("throwaway", "server"):
            raise RunbookError(f"scratch={self.where!r}: use throwaway (a cluster of its own) or server.")


def restore_size(backup: Backup) -> int:
    return int((backup.manifest.get("database_properties") or {}).get("size_bytes") or 0)


def verify_by_restore(params: ConnParams, backup: Backup, jobs: int, scratch: Scratch | None = None) -> list[str]:
    """Restore the backup, compare every table's row count and the large objects with its manifest, remove what
    was restored; the problems found (none: it restores). Where it restores is `scratch` (a throwaway cluster
    unless told otherwise). Not enough space, or a throwaway that cannot start, is an error, not a problem of the
    backup."""
    scratch = scratch or Scratch()
    scratch.validate()
    if scratch.where == "server":
        return _verify_on_server(params, backup, jobs)
    remove_leftovers(scratch.work_dir, scratch.os_user)
    check_free_space(scratch.work_dir, int(restore_size(backup) * 1.2) + THROWAWAY_OVERHEAD,
                     f"restoring backup {backup.backup_id} into a throwaway cluster", setting="pg_verify_work_dir")
    throwaway = Throwaway(scratch.work_dir, scratch.os_user, "postgres", None)
    try:
        throwaway.initialize()
        try:
            restore_into(throwaway.params(), backup, backup.database, jobs, no_owner=True)
        except RunbookError as exc:
            return exc.details.get("problems") or [str(exc)]
    finally:
        throwaway.destroy()
    return []


def _verify_on_server(params: ConnParams, backup: Backup, jobs: int) -> list[str]:
    scratch = scratch_name(backup.database)
    with params.connect() as holder:  # holds the scratch database's claim until the verification ends
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (SCRATCH_CLAIM + scratch,))
        _drop_dead_scratches(params, backup.database)
        free = server_data_directory_free(holder)
        needed = int(restore_size(backup) * 1.2)
        if free is not None and free < needed:
            raise RunbookError(f"the server's data directory has {human_size(free)} free; verifying backup "
                               f"{backup.backup_id} there needs about {human_size(needed)}. Nothing was restored: "
                               "verify in a throwaway cluster (the default) or free space first.")
        try:
            restore_into(params, backup, scratch, jobs, no_owner=True)
        except RunbookError as exc:
            return exc.details.get("problems") or [str(exc)]
        with params.connect() as conn:
            drop_database(conn, scratch)
    return []


def _drop_dead_scratches(params: ConnParams, database: str) -> list[str]:
    """The scratch databases of `database` whose verification is gone (its claim can be taken): dropped."""
    prefix = derived_name(database, "__verify_000000")[:-6]
    dropped = []
    with params.connect() as conn:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND length(datname) = %s",
            (prefix, len(prefix) + 6)).fetchall()]
        for name in names:
            if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (SCRATCH_CLAIM + name,)).fetchone()[0]:
                continue  # a live verification's
            try:
                drop_database(conn, name)
                dropped.append(name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (SCRATCH_CLAIM + name,))
    return dropped


# -- the database's own state ---------------------------------------------------------------
def state_to_carry(backup: Backup, current: dict | None) -> tuple[dict, str, list[str]]:
    """(state, where it comes from, what cannot be carried) for the database a recovery creates.

    A backup records its database's state in its manifest; one taken before that was recorded has
    only encoding, locale, owner and settings, and the rest comes from the current database if there
    is one. `current` is database_properties() of the database being replaced, or None.
    """
    recorded = dict(backup.manifest.get("database_properties") or {})
    if "acl" in recorded:
        return recorded, "backup", []
    missing = [item for item in CARRIED if item not in ("owner", "ALTER DATABASE SET settings")]
    if current is not None:
        return dict(current), "current database", [
            f"{item}: not recorded by backup {backup.backup_id} (taken before it was), so the current "
            "database's is kept" for item in missing]
    return recorded, "backup", [
        f"{item}: not recorded by backup {backup.backup_id} (taken before it was), and there is no current "
        "database to take it from: PostgreSQL's defaults apply" for item in missing]


def database_state_statements(name: str, state: dict, roles: set[str],
                              can_act_as: set[str] | None = None) -> tuple[list, list[str]]:
    """The statements that give database `name` the recorded `state`, and the parts that cannot be
    given: a role they name does not exist on this server, or the login may not act as it.

    Grants are replayed in the recorded order, each by its grantor, so pg_database.datacl comes out
    the same, item for item; a grant by someone other than the owner runs under SET ROLE.
    `can_act_as` is the roles whose settings the login may change and as which it may grant (None: a
    superuser, every role).
    """
    allowed = roles if can_act_as is None else roles & can_act_as
    target = sql.Identifier(name)
    statements, skipped = [], []
    if state.get("connection_limit") not in (None, -1):
        statements.append(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
            target, sql.Literal(int(state["connection_limit"]))))
    for setting, value in (state.get("settings") or {}).items():
        if setting != LEGACY_MARKER:
            statements.append(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                target, sql.Identifier(setting), setting_value_sql(setting, value)))
    for role, settings in sorted((state.get("role_settings") or {}).items()):
        if role not in allowed:
            why = "no such role on this server" if role not in roles else "the login may not change that role"
            skipped.append(f"settings of role {role!r} in the database ({why})")
            continue
        for setting, value in settings.items():
            statements.append(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                sql.Identifier(role), target, sql.Identifier(setting), setting_value_sql(setting, value)))
    if state.get("comment") is not None:
        statements.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(target, sql.Literal(state["comment"])))
    if state.get("acl") is not None:
        acl_statements, acl_skipped = _acl_statements(target, state["acl"], state.get("owner"), roles, allowed)
        statements += acl_statements
        skipped += acl_skipped
    return statements, skipped


def _acl_statements(target, acl: list[dict], owner: str | None, roles: set[str],
                    allowed: set[str]) -> tuple[list, list[str]]:
    """Start from an empty ACL (revoke PostgreSQL's defaults from PUBLIC and the owner), then grant."""
    statements = [sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(target)]
    if owner in roles:
        statements.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(target, sql.Identifier(owner)))
    skipped = []
    groups: dict[tuple, dict[str, list[str]]] = {}
    for item in acl:  # aclexplode's order: one entry per privilege, grouped by grantee and grantor
        if item["privilege"] not in _DATABASE_PRIVILEGES:
            raise RunbookError(f"the recorded ACL names unknown database privileges ({item['privilege']!r}): "
                               "the manifest is damaged; choose another backup.")
        key = (item["grantor"], item["grantee"])
        groups.setdefault(key, {"plain": [], "grantable": []})
        groups[key]["grantable" if item["grantable"] else "plain"].append(item["privilege"])
    for (grantor, grantee), privileges in groups.items():
        absent = [r for r in (grantor, grantee) if r is not None and r not in roles]
        what = f"GRANT {', '.join(privileges['plain'] + privileges['grantable'])} to {grantee or 'PUBLIC'}"
        if absent:
            skipped.append(f"{what} (no role {absent[0]!r} on this server)")
            continue
        if grantor != owner and grantor not in allowed:
            skipped.append(f"{what} (granted by {grantor!r}, as which the login may not act)")
            continue
        to = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
        as_grantor = grantor != owner
        if as_grantor:
            statements.append(sql.SQL("SET ROLE {}").format(sql.Identifier(grantor)))
        for kind, names in privileges.items():
            if names:
                statements.append(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                    sql.SQL(", ").join(sql.SQL(n) for n in names), target, to,
                    sql.SQL(" WITH GRANT OPTION" if kind == "grantable" else "")))
        if as_grantor:
            statements.append(sql.SQL("RESET ROLE"))
    return statements, skipped


_DATABASE_PRIVILEGES = ("CREATE", "TEMPORARY", "CONNECT")


# -- recovery of a live database -------------------------------------------------------------
def _is_local(params: ConnParams) -> bool:
    return params.host in ("", "localhost", "127.0.0.1", "::1") or params.host.startswith("/")


PLAN_LOCK_TIMEOUT = "5s"  # how long the plan's row count waits for a table another session holds locked


class Recovery:
    """Stage -> validate -> carry the database's state -> ANALYZE -> swap -> probe -> (roll back),
    for one database, holding its recovery lock throughout."""

    PROCEDURE = "recover-db"

    def __init__(self, params: ConnParams, store: LocalStore, database: str, backup: str, jobs: int = 2,
                 keep_previous: int = 2, health_query: str = "SELECT 1", force: bool = False,
                 no_owner: bool = False, swap_timeout: float = 30, lock_wait: float = 10,
                 journal: Journal | None = None, label: str | None = None):
        self.params, self.store, self.database, self.wanted = params, store, database, backup
        self.jobs, self.keep_previous, self.health_query = jobs, keep_previous, health_query
        self.force, self.no_owner, self.swap_timeout, self.lock_wait = force, no_owner, swap_timeout, lock_wait
        self.staging = staging_name(database)
        self.lock = None
        self.swap_step = None  # this run's change, once swapped in (the outcome seam's step a rollback undoes)
        # Where the steps are written (a point-in-time recovery restores from a dump of its own, and gives the
        # journal of the database's own store), and what the store records the database to hold once done.
        self.journal = journal or recovery_journal(store.root, params, database)
        self.label = label
        self.result = {"changed": False, "database": database, "swapped": False, "rolled_back": False}

    def validate(self) -> None:
        validate_name(self.database)
        if self.jobs < 1:
            raise RunbookError(f"jobs={self.jobs} is not allowed: use 1 or more parallel pg_restore workers.")
        if self.keep_previous < 0:
            raise RunbookError(f"keep_previous={self.keep_previous} is negative: use 0 or more kept databases.")
        if self.lock_wait < 0:
            raise RunbookError(f"lock_wait={self.lock_wait} is negative: give the seconds to wait for another run.")

    def locked(self):
        return exclusive_run(self.params, self.PROCEDURE, self.database, self.lock_wait)

    # -- plan (check mode and preflight) ---------------------------------------------------
    def plan(self, verify_checksums: bool = True) -> tuple[Backup, dict]:
        """Read-only; waits for (and refuses on) another run of this database like a real run does."""
        self.validate()
        with self.locked():
            return self._plan(verify_checksums)

    def _plan(self, verify_checksums: bool) -> tuple[Backup, dict]:
        interrupted = self.journal.read()
        if interrupted is not None:  # the real run finishes or undoes it first (_resolve_interrupted)
            return self._interrupted_plan(interrupted)
        backup = self.store.resolve(self.database, self.wanted)
        self.result["backup"] = backup.summary()
        with self.params.connect() as conn:
            current = database_properties(conn, self.database)
            before = self.snapshot(conn, current)
            if backup.database != self.database:
                raise RunbookError(f"backup {backup.backup_id} belongs to {backup.database!r}, not {self.database!r}.")
            needed = self.force or before.get("restored_backup") != backup.backup_id
            state, source, cannot_carry = state_to_carry(backup, current)
            _statements, skipped = database_state_statements(self.staging, state, *_roles(conn))
            plan = {"needed": needed, "backup": backup.backup_id, "database": self.database,
                    "staging_database": self.staging,
                    "keep_current_as": self.kept_name() if before["exists"] else None,
                    "connections_to_terminate": self.connections(conn),
                    "tables": len(backup.manifest["tables"]),
                    "rows": sum(t["rows"] for t in backup.manifest["tables"]),
                    "large_objects": backup.manifest.get("large_objects"),
                    "database_state_from": source,
                    "cannot_carry": cannot_carry + skipped}
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
                                  f"rows) into {self.staging}, validate it, give it the database's own state "
                                  f"(from the {source}), {action}, and swap it in as {self.database}")
            if plan["cannot_carry"]:
                self.result["msg"] += "; it cannot carry: " + "; ".join(plan["cannot_carry"])
            if before.get("not_counted"):
                self.result["msg"] += f"; the current rows of {before['not_counted']}"
        self.result["changed"] = needed
        return backup, plan

    def _interrupted_plan(self, entry: dict) -> tuple[Backup, dict]:
        backup = self.store.resolve(self.database, self.wanted)
        with self.params.connect() as conn:
            swapped = self._swapped(conn, entry)
            self.result.update(backup=backup.summary(),
                               before=self.snapshot(conn, database_properties(conn, self.database)))
        what = (f"finished ({self.database} holds backup {entry['backup']}: probed, recorded, the database it "
                f"replaced kept as {entry.get('kept')})" if swapped else
                f"undone ({entry['staging']} dropped, {self.database} left as it is)")
        plan = {"needed": True, "backup": backup.backup_id, "database": self.database, "interrupted": entry}
        self.result.update(plan=plan, changed=True, msg=(
            f"an interrupted recovery of {self.database} (backup {entry['backup']}, started {entry['started_at']}) "
            f"stopped at step {entry['step']}: it will be {what} first, then backup {backup.backup_id} restored if "
            f"{self.database} does not hold it"))
        return backup, plan

    @staticmethod
    def _swapped(conn, entry: dict) -> bool:
        """Whether the interrupted run's swap committed: the database under the name is the one it staged."""
        return entry.get("staging_oid") is not None and database_oid(conn, entry["database"]) == entry["staging_oid"]

    def _resolve_interrupted(self) -> None:
        """Finish or undo the run a journal tells of (the caller holds the database's recovery lock, so that run is
        gone). Killed before its swap committed: its staging database is dropped and the database, which the swap
        refuses connections to while it waits for its sessions, takes connections again. Killed after: it is
        finished as it would have ended: probed (and rolled back if the probe fails), recorded, old copies trimmed."""
        entry = self.journal.read()
        if entry is None:
            return
        self.lock.require("finish or undo the interrupted recovery")
        with self.params.connect() as conn:
            swapped = self._swapped(conn, entry)
            if not swapped:
                if database_exists(conn, self.staging):
                    drop_database(conn, self.staging)
                if database_exists(conn, self.database):
                    self._allow_connections(conn, self.database, True)
                record(f"the recovery of {self.database} killed at step {entry['step']} undone ({self.staging} "
                       "dropped)")
            elif entry.get("kept") and database_exists(conn, entry["kept"]):
                self._allow_connections(conn, entry["kept"], True)
        self.result["interrupted"] = entry
        if swapped:
            self.swap_step = record(f"{self.database} replaced by backup {entry['backup']} (the recovery killed at "
                                    f"step {entry['step']}, finished)")
            try:
                self._probe()
            except RunbookError as exc:
                self._rollback(entry.get("kept"), entry["staging_oid"])
                self.journal.close()
                raise RunbookError(f"the recovery of {self.database} killed at step {entry['step']} was finished "
                                   f"with its probe, which failed: {exc} It was rolled back: {self.database} is the "
                                   "database it was before.", **self.result) from exc
            with self.params.connect() as conn:
                self._record_restored(conn, entry.get("label") or entry["backup"], entry["staging_oid"])
                self.result["removed_previous"] = self._trim_kept(conn, keep=entry.get("kept"))
            self.result.update(changed=True, swapped=True, kept_database=entry.get("kept"),
                               recovered_oid=entry["staging_oid"])
        self.journal.close()

    def _record_restored(self, conn, backup_id: str, oid: int) -> None:
        try:
            self.store.record_restored(self.database, server_identity(conn, oid), backup_id)
        except OSError as exc:  # the recovery is done; only its idempotency record is missing
            self.result.setdefault("warnings", []).append(
                f"could not record which backup {self.database} holds in {self.store.root} ({exc}): a rerun "
                "of this recovery will restore it again instead of reporting nothing to do.")

    def snapshot(self, conn, props: dict | None) -> dict:
        """What a person would check before and after: does it exist, its size, its tables' row counts,
        and which backup it holds (when a recovery of ours made it)."""
        if props is None:
            return {"exists": False}
        restored = (self.store.restored_backup(self.database, server_identity(conn, props["oid"]))
                    or props["settings"].get(LEGACY_MARKER))
        state = {"exists": True, "size": human_size(props["size_bytes"]), "restored_backup": restored}
        try:
            with self.params.connect(self.database) as db:
                counts = count_rows(db, user_tables(db), lock_timeout=PLAN_LOCK_TIMEOUT)
            state["tables"] = {f"{s}.{n}": rows for (s, n), rows in counts.items()}
            locked = [name for name, rows in state["tables"].items() if rows is None]
            if locked:
                state["not_counted"] = (f"{', '.join(locked)}: held locked by another session for more than "
                                        f"{PLAN_LOCK_TIMEOUT} (a migration?), not counted")
        except RunbookError as exc:
            state["error"] = str(exc)
        return state

    def kept_name(self) -> str:
        return kept_prefix(self.database) + compact_timestamp(utc_now())

    def connections(self, conn) -> int:
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
        self.validate()
        with self.locked() as lock:
            return self.apply(lock)

    def apply(self, lock) -> dict:
        """The recovery, under this database's recovery lock, which the caller holds (run() takes it; a
        point-in-time recovery takes it before it replays and dumps the database this recovery restores)."""
        self.lock = lock
        return self._run()

    def _run(self) -> dict:
        self._resolve_interrupted()
        finished = dict(self.result)
        backup, plan = self._plan(verify_checksums=False)
        if not plan["needed"]:
            if finished.get("interrupted"):  # what finishing the interrupted run did is this run's change
                self.result.update({k: v for k, v in finished.items() if k not in ("plan", "msg", "before")},
                                   after=self.result["before"],
                                   msg=f"the interrupted recovery of {self.database} (stopped at step "
                                       f"{finished['interrupted']['step']}) was finished: {self.database} holds "
                                       f"backup {backup.backup_id}")
            return self.result
        started = time.monotonic()
        with self.params.connect() as conn:
            self._drop_leftover_staging(conn)
            current = database_properties(conn, self.database)
        state, _source, _cannot = state_to_carry(backup, current)
        owner = state.get("owner") or (current or {}).get("owner")
        # The checksums are verified while pg_restore runs (both read the same files); nothing is
        # swapped unless they pass, and a failed check drops the staging database.
        self.journal.write("restoring", database=self.database, backup=backup.backup_id, staging=self.staging,
                           label=self.label or backup.backup_id)
        staged = record(f"database {self.staging} created from backup {backup.backup_id}")
        with ThreadPoolExecutor(max_workers=1) as pool:
            checked = pool.submit(checksum_problems, backup)
            try:
                self.result["restore"] = restore_into(self.params, backup, self.staging, self.jobs, owner=owner,
                                                      no_owner=self.no_owner)
            except BaseException as exc:
                record_undo(staged, "dropped")  # restore_into drops what it created
                self.journal.close()
                if isinstance(exc, RunbookError):
                    require_checksums(backup, checked.result())  # a damaged file explains the failure best
                raise
        try:
            require_checksums(backup, checked.result())
            self._prepare_staging(state)
            with self.params.connect() as conn:
                staging_oid = database_oid(conn, self.staging)
            self.journal.write("swapping", kept=plan["keep_current_as"], staging_oid=staging_oid)
            kept = self._swap(plan["keep_current_as"])
            if staged is not None:  # one change from here on: the database replaced, what it was kept
                staged.what = (f"{self.database} replaced by backup {backup.backup_id} (the database it was kept as "
                               f"{kept})" if kept else f"{self.database} created from backup {backup.backup_id}")
            self.swap_step = staged
        except BaseException:
            with self.params.connect() as conn:
                drop_database(conn, self.staging)
            record_undo(staged, "dropped")
            self.journal.close()
            raise
        with self.params.connect() as conn:
            recovered_oid = database_oid(conn, self.database)
        self.result.update(changed=True, swapped=True, kept_database=kept, recovered_oid=recovered_oid)
        self.journal.write("probing")
        try:
            self._probe()
        except RunbookError as exc:
            self._rollback(kept, recovered_oid)
            self.journal.close()
            raise RunbookError(f"{exc} The recovery was rolled back: {self.database} is the database it was before "
                               "(the restored copy was dropped).", **self.result) from exc
        self.journal.write("recording")
        with self.params.connect() as conn:
            props = database_properties(conn, self.database)
            self._record_restored(conn, backup.backup_id, recovered_oid)
            self.result["removed_previous"] = self._trim_kept(conn, keep=kept)
            self.result["after"] = self.snapshot(conn, props)
        self.journal.close()
        self.result["elapsed_seconds"] = round(time.monotonic() - started, 3)
        self.result["msg"] = (f"{self.database} now holds backup {backup.backup_id}; the previous database is kept as "
                              f"{kept}" if kept else f"{self.database} created from backup {backup.backup_id}")
        return self.result

    def _drop_leftover_staging(self, conn) -> None:
        """A staging database found while we hold the database's recovery lock was left by a run that
        died (the lock would still be held if that run were alive): start clean."""
        if database_exists(conn, self.staging):
            self.lock.require("drop the staging database left by an earlier run")
            drop_database(conn, self.staging)
            record(f"database {self.staging}, left by an earlier run, dropped")
            self.result["dropped_leftover_staging"] = self.staging

    def _prepare_staging(self, state: dict) -> None:
        """The database's own state (settings, per-role settings, comment, ACL), then statistics,
        before anyone connects."""
        with self.params.connect() as conn:
            statements, _skipped = database_state_statements(self.staging, state, *_roles(conn))
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
        with self.params.connect(self.staging) as staging:
            staging.execute("ANALYZE")

    def _swap(self, kept: str | None) -> str | None:
        """Rename current -> kept and staging -> current in one transaction, after closing every
        session on both; new connections to the current database are refused meanwhile."""
        deadline = time.monotonic() + self.swap_timeout
        swapped = False
        self.lock.require(f"swap {self.staging} into place")
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
            with self.params.connect(self.database, own_search_path=False) as conn:  # the operator's own SQL
                conn.execute("SET statement_timeout = '30s'")
                conn.execute(self.health_query).fetchall()
        except RunbookError:
            raise
        except Exception as exc:
            raise RunbookError(f"the SQL health probe on the recovered {self.database} failed: "
                               f"{' '.join(str(exc).split())}.") from exc

    def rollback(self, kept: str | None, recovered_oid: int | None) -> None:
        """Put the kept database back under the original name and drop the restored one: only when the
        database under that name is still the one this recovery swapped in (`recovered_oid`), so a
        rollback never drops what a later run put there, nor a database no recovery of ours made."""
        self.validate()
        with self.locked() as self.lock:
            self._rollback(kept, recovered_oid)

    def _rollback(self, kept: str | None, recovered_oid: int | None) -> None:
        if recovered_oid is None:
            raise RunbookError(
                f"a rollback of {self.database} needs the oid of the database its recovery swapped in "
                "(recovered_oid, which the recovery returns): without it, the database it would drop could be one "
                "no recovery made. Nothing was changed.")
        self.lock.require(f"put {kept or 'nothing'} back as {self.database}")
        with self.params.connect() as conn:
            if kept and not database_exists(conn, kept):
                raise RunbookError(f"cannot roll back: the kept database {kept!r} no longer exists.")
            current = database_oid(conn, self.database)
            if recovered_oid is not None and current is not None and current != recovered_oid:
                raise RunbookError(
                    f"cannot roll back: {self.database} is no longer the database this recovery swapped in (another "
                    f"run has replaced it since). Nothing was changed; {kept or 'no copy'} is kept as it is.")
            failed = derived_name(self.database, f"__failed_{os.urandom(3).hex()}")
            terminate_connections(conn, self.database)
            if kept:
                terminate_connections(conn, kept)
            with conn.transaction():
                if database_exists(conn, self.database):
                    self._rename(conn, self.database, failed)
                if kept:
                    self._rename(conn, kept, self.database)
            drop_database(conn, failed)
        how = f"{kept} put back as {self.database}, the restored copy dropped" if kept else \
            f"the restored {self.database} dropped"
        if self.swap_step is not None:
            record_undo(self.swap_step, how)
        else:  # a rollback run on its own, of an earlier run's swap
            record(how)
        self.result.update(rolled_back=True, swapped=False, changed=True)

    def _trim_kept(self, conn, keep: str | None) -> list[str]:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND length(datname) = %s "
            "ORDER BY datname DESC",
            (kept_prefix(self.database), len(kept_prefix(self.database)) + _TIMESTAMP_LENGTH)).fetchall()]
        doomed = [n for n in names if n != keep][max(0, self.keep_previous - (1 if keep else 0)):]
        for name in doomed:
            drop_database(conn, name)
            record(f"database {name}, kept by an earlier recovery, dropped (keep_previous={self.keep_previous})")
        return doomed


def _roles(conn) -> tuple[set[str], set[str] | None]:
    """Every role, and those the login may act as (None for a superuser: all of them). A role that may
    SET ROLE to another may grant as it; changing a role's settings needs the same membership, or
    CREATEROLE for a role that is not a superuser."""
    rows = conn.execute(
        "SELECT r.rolname, pg_has_role(current_user, r.oid, 'MEMBER') OR (me.rolcreaterole AND NOT r.rolsuper), "
        "me.rolsuper FROM pg_roles r, pg_roles me WHERE me.rolname = current_user").fetchall()
    if rows and rows[0][2]:
        return {row[0] for row in rows}, None
    return {row[0] for row in rows}, {row[0] for row in rows if row[1]}
