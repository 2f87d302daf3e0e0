# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Taking a backup: pg_dump directory format in one exported snapshot, exact row counts taken in
that same snapshot while pg_dump runs, sha256 of every file, manifest last, then its verification
and retention, all in one module call. Verifying a backup: the levels pg_verify_backup runs, which
pg_backup also runs on the backup it has just written."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace

from ansible_collections.runbook.recovery.plugins.module_utils.backups import (
    LEVELS,
    Backup,
    FollowingHasher,
    LocalStore,
    dump_files,
    free_bytes,
    retention_plan,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    human_size,
    isoformat,
    utc_now,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import (
    Scratch,
    catalog_problems,
    checksum_problems,
    verify_by_restore,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    count_large_objects,
    count_rows,
    database_oid,
    database_properties,
    end_earlier_tries,
    pg_tool,
    run_application_name,
    tied_to_this_process,
    user_tables,
)

try:
    import psycopg
except ImportError:  # pragma: no cover - reported by ConnParams.connect
    psycopg = None


@dataclass
class BackupOptions:
    database: str
    jobs: int = 2
    compress_level: int = 1
    min_free_space: int = 0
    free_space_margin: float = 1.1
    skip_if_newer_than: float | None = None
    keep_last: int | None = None
    max_age_days: float | None = None
    lock_wait_timeout: float = 60
    # The verification of a new backup, before the call returns: a level of verify_backup.
    verify: str = "checksum"
    # Databases planned before this backup starts (each exists, and its backup would fit): a run over several
    # databases passes every one of them to its first call, so bad input stops it before any backup is written.
    plan_first: tuple[str, ...] = ()
    # Who asked for this backup (an Airflow task: DAG, run, task and map index), recorded in the manifest: a retried
    # try of the same run finds the backup an earlier try finished and reports it instead of taking a second one.
    run_id: str | None = None

    def validate(self) -> None:
        for name in (self.database, *self.plan_first):
            validate_name(name)
        if self.jobs < 1:
            raise RunbookError(f"jobs={self.jobs} is not allowed: use 1 or more parallel pg_dump workers.")
        if not 0 <= self.compress_level <= 9:
            raise RunbookError(f"compress_level={self.compress_level} is out of range: use 0 (none) to 9 (smallest).")
        if self.keep_last is not None and self.keep_last < 1:
            raise RunbookError(f"keep_last={self.keep_last} is not allowed: retention keeps at least 1 backup; "
                               "leave it unset to keep every backup.")
        if self.max_age_days is not None and self.max_age_days < 0:
            raise RunbookError(f"max_age_days={self.max_age_days} is negative: give a number of days >= 0, "
                               "or leave it unset.")
        if self.free_space_margin < 1:
            raise RunbookError(f"free_space_margin={self.free_space_margin} is below 1: the estimate is a minimum.")
        if self.verify not in LEVELS:
            raise RunbookError(f"verify={self.verify!r} is not a verification level: use one of {', '.join(LEVELS)}.")


@contextlib.contextmanager
def refusals():
    """A RunbookError raised in the block refused the call before anything was written: it says so (refused=True),
    and the role stops a run over several databases there, before its first backup."""
    try:
        yield
    except RunbookError as exc:
        exc.details["refused"] = True
        raise


def estimate_dump_bytes(conn) -> int:
    """Heap and TOAST size of every table: an upper bound for a compressed dump of typical data."""
    return conn.execute(
        "SELECT coalesce(sum(pg_table_size(c.oid)), 0)::bigint FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchone()[0]


class BackupRun:
    """One call of pg_backup: plan, dump, publish, verify, apply retention.

    Everything a run needs is in this one call (a module round trip costs more than the checks themselves), and
    every check that can refuse comes before the first write: names and options, the database's existence, the
    free space, and the same for every database of `plan_first`.
    """

    def __init__(self, conn_params: ConnParams, store: LocalStore, options: BackupOptions, check_mode: bool):
        if options.run_id:  # the sessions of this task run, every try of it: a later try finds them
            conn_params = replace(conn_params, application_name=run_application_name(options.run_id))
        self.params, self.store, self.options, self.check_mode = conn_params, store, options, check_mode
        self.result = {"changed": False, "created": False, "removed": [], "removed_partials": []}
        self.estimate = 0

    def run(self) -> dict:
        database = self.options.database
        with refusals():
            self.options.validate()
            self._plan_the_others()
            if self.options.run_id and not self.check_mode:
                self.result["ended_earlier_tries_sessions"] = end_earlier_tries(self.params)
            conn = self._connect()
        # One connection for the call: the estimate now, later the snapshot the dump and the row counts share.
        with conn:
            # The run's own reads wait for a table lock no longer than pg_dump does: a migration holding a table
            # fails the backup after lock_wait_timeout, naming why, instead of hanging it.
            conn.execute(f"SET lock_timeout = {int(self.options.lock_wait_timeout * 1000)}")
            with refusals(), self._lock_waits():
                self.estimate = estimate_dump_bytes(conn)
                if self.check_mode:
                    return self._plan()
                if self._fresh_backup() is None:
                    self._check_space()  # before the lock, which creates the database's directory
            with self.store.locked(database):
                self._remove_partials()
                earlier = self._this_runs_backup()
                fresh = self._fresh_backup()
                if earlier is not None:
                    self.result["backup"] = earlier.summary()
                    self._apply_retention(protect=(earlier.backup_id,))
                    if not earlier.verification.get("levels"):  # the earlier try ended before its verification
                        self._verify(earlier)
                        self.result["changed"] = True
                    self.result["msg"] = (f"backup {earlier.backup_id} of {database} was taken by an earlier try of "
                                          f"this run ({self.options.run_id}): reported, not taken again")
                elif fresh is not None:
                    self.result["backup"] = fresh.summary()
                    self.result["msg"] = (f"backup {fresh.backup_id} of {database} is verified and newer than "
                                          "skip_if_newer_than: nothing to do")
                    self._apply_retention(protect=(fresh.backup_id,))
                else:
                    backup = self._dump(conn)
                    self.result.update(changed=True, created=True, backup=backup.summary())
                    # Retention first: until the new backup has passed its verification, the newest verified
                    # backup is the previous one, and retention keeps it.
                    self._apply_retention(protect=(backup.backup_id,))
                    self._verify(backup)
                    self.result["msg"] = (f"backup {backup.backup_id} of {database} written to {backup.path}, "
                                          f"verified: {', '.join(self.result['verification']['levels_run'])}")
        return self.result

    @contextlib.contextmanager
    def _lock_waits(self):
        try:
            yield
        except psycopg.errors.LockNotAvailable as exc:
            raise RunbookError(
                f"the backup of {self.options.database!r} waited lock_wait_timeout "
                f"({self.options.lock_wait_timeout:g} s) for a table another session holds locked (a migration, a "
                "long ALTER TABLE): nothing was written. Find the holder (runbook.recovery.pg_sessions, pg_locks) "
                "and run the backup again once it has ended.") from exc

    def _connect(self):
        """The database's own connection; when it cannot be opened, whether the database exists says why."""
        database = self.options.database
        try:
            return self.params.connect(database)
        except RunbookError:
            with self.params.connect() as conn:  # a server that is down is reported by this one
                if database_oid(conn, database) is not None:
                    raise
            raise RunbookError(f"database {database!r} does not exist on {self.params.where}: check the name "
                               "(pg_databases in the inventory).") from None

    def _plan_the_others(self) -> None:
        for other in dict.fromkeys(self.options.plan_first):
            if other != self.options.database:
                BackupRun(self.params, self.store, replace(self.options, database=other, plan_first=()),
                          check_mode=True).run()

    # -- decisions -------------------------------------------------------------------------
    def _this_runs_backup(self):
        """The backup an earlier try of this run finished (its manifest names the run), unless its verification
        failed: a failed backup is never reported as done, and a retry takes a new one."""
        if not self.options.run_id:
            return None
        for backup in reversed(self.store.list(self.options.database)):
            if backup.manifest.get("run_id") == self.options.run_id:
                levels = backup.verification.get("levels", {})
                return backup if all(r.get("ok") for r in levels.values()) else None
        return None

    def _fresh_backup(self):
        if self.options.skip_if_newer_than is None:
            return None
        now = utc_now()
        for backup in reversed(self.store.list(self.options.database)):
            if backup.verified and (now - backup.finished_at).total_seconds() <= self.options.skip_if_newer_than:
                return backup
        return None

    def _plan(self) -> dict:
        database = self.options.database
        fresh = self._this_runs_backup() or self._fresh_backup()
        backups = self.store.list(database)
        doomed = retention_plan(backups, self.options.keep_last, self.options.max_age_days,
                                protect=(fresh.backup_id,) if fresh else ())
        estimate = self.estimate
        if fresh is None:
            self._check_space()
        plan = {"would_create": fresh is None, "estimated_bytes": estimate,
                "free_bytes": free_bytes(self.store.database_dir(database)),
                "would_remove": [b.backup_id for b in doomed],
                "would_remove_partials": self.store.stale_partials(database)}
        self.result.update(changed=bool(plan["would_create"] or doomed or plan["would_remove_partials"]), plan=plan)
        if fresh is not None:
            self.result["backup"] = fresh.summary()
        self.result["msg"] = (f"would back up {database} (about {human_size(estimate)}) and verify it "
                              f"({self.options.verify})" if fresh is None
                              else f"backup {fresh.backup_id} is fresh and verified: no new backup")
        return self.result

    # -- work ------------------------------------------------------------------------------
    def _remove_partials(self) -> None:
        for path in self.store.stale_partials(self.options.database):
            self.store.remove(path)
            record(f"{path}, left by an interrupted backup, removed")
            self.result["removed_partials"].append(path)
            self.result["changed"] = True

    def _check_space(self) -> None:
        """Before anything is written (and in the plan): the dump must fit, with the margin and reserve."""
        estimate = self.estimate
        needed = int(estimate * self.options.free_space_margin) + self.options.min_free_space
        available = free_bytes(self.store.database_dir(self.options.database))
        if available < needed:
            raise RunbookError(
                f"not enough free space for a backup of {self.options.database!r} in {self.store.root}: "
                f"{human_size(available)} free, {human_size(needed)} needed (estimate {human_size(estimate)} x "
                f"{self.options.free_space_margin} + min_free_space {human_size(self.options.min_free_space)}). "
                "Nothing was written. Free space there, or lower keep_last so retention removes old backups.",
                free_bytes=available, needed_bytes=needed)

    def _dump(self, conn) -> Backup:
        database = self.options.database
        started = utc_now()
        backup_id = self.store.new_backup_id(database, started)
        partial = self.store.partial_dir(database, backup_id)
        try:
            with self._lock_waits():
                return self._dump_into(conn, partial, backup_id, started)
        except psycopg.Error as exc:
            raise RunbookError(f"the backup of {database!r} failed: {' '.join(str(exc).split()).rstrip('.')}. "
                               "No backup was recorded.") from exc
        finally:
            # Published backups were renamed away; whatever is left here is incomplete.
            shutil.rmtree(partial, ignore_errors=True)

    def _dump_into(self, conn, partial: str, backup_id: str, started) -> Backup:
        options, database = self.options, self.options.database
        # REPEATABLE READ keeps one snapshot for the whole transaction: the exported one pg_dump
        # uses, and the one our row counts read, so the manifest describes exactly what was dumped.
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        tables = user_tables(conn)
        server_version = conn.info.server_version
        properties = database_properties(conn, database)
        pg_dump = pg_tool("pg_dump")
        command = [pg_dump, "--format=directory", f"--jobs={options.jobs}", f"--compress={options.compress_level}",
                   f"--snapshot={snapshot}", f"--lock-wait-timeout={int(options.lock_wait_timeout * 1000)}",
                   f"--file={partial}"]
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(tied_to_this_process(command), env=self.params.env(database),
                                       stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=stderr, umask=0o077)
            # While pg_dump runs: row counts in the same snapshot, and the hash of what it has written.
            hasher = FollowingHasher(partial).start()
            try:
                pg_dump_version = _tool_version(pg_dump)
                counts = count_rows(conn, tables)
                large_objects = count_large_objects(conn)
            except BaseException:
                process.kill()
                raise
            finally:
                returncode = process.wait()
                files = hasher.finish()
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace").strip()
        conn.rollback()  # on an error, closing the connection ends the transaction
        if returncode != 0:
            raise RunbookError(f"pg_dump of {database!r} failed (exit {returncode}): {errors[-1500:]}. "
                               "No backup was recorded.", stderr=errors[-4000:])
        if sorted(files) != dump_files(partial):
            raise RunbookError(f"the files of the dump of {database!r} changed while it was hashed; no backup was "
                               "recorded. Run it again.")
        finished = utc_now()
        manifest = {
            # 2: database_properties holds the database's own state (ACL, comment, per-role settings, ...)
            # and large_objects their count, both read in the dump's snapshot.
            "format": 2,
            "tool": "runbook.recovery.pg_backup",
            "database": database,
            "backup_id": backup_id,
            "started_at": isoformat(started),
            "finished_at": isoformat(finished),
            "duration_seconds": round((finished - started).total_seconds(), 3),
            "server_version_num": server_version,
            "pg_dump_version": pg_dump_version,
            "format_options": {"format": "directory", "jobs": options.jobs, "compress_level": options.compress_level},
            "snapshot": snapshot,
            **({"run_id": options.run_id} if options.run_id else {}),
            "estimated_bytes": self.estimate,
            "database_properties": properties,
            "tables": [{"schema": s, "name": n, "rows": counts[(s, n)]} for s, n in tables],
            "large_objects": large_objects,
            "files": files,
            "size_bytes": sum(f["size"] for f in files.values()),
        }
        return self.store.publish(database, backup_id, manifest)

    def _verify(self, backup: Backup) -> None:
        """The new backup's files are read again and compared with its manifest (and more, by level); a
        failure is recorded on the backup, which then is never taken as fresh nor kept as the newest verified."""
        verification = verify_backup(self.store, backup, self.options.verify, self.params, self.options.jobs)
        self.result["backup"] = backup.summary()
        self.result["verification"] = {key: verification[key] for key in ("ok", "levels_run", "problems")}
        if not verification["ok"]:
            raise RunbookError(verification_failure(backup.backup_id, backup.database, verification), **self.result)

    def _apply_retention(self, protect: tuple[str, ...]) -> None:
        doomed = retention_plan(self.store.list(self.options.database), self.options.keep_last,
                                self.options.max_age_days, protect=protect)
        for backup in doomed:
            self.store.remove(backup.path)
            record(f"backup {backup.backup_id} removed (retention)")
            self.result["removed"].append(backup.backup_id)
            self.result["changed"] = True


def _tool_version(path: str) -> str:
    result = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def run_backup(conn_params: ConnParams, store: LocalStore, options: BackupOptions, check_mode: bool) -> dict:
    started = time.monotonic()
    result = BackupRun(conn_params, store, options, check_mode).run()
    result["elapsed_seconds"] = round(time.monotonic() - started, 3)
    return result


# -- verification ----------------------------------------------------------------------------
def verify_backup(store: LocalStore, backup: Backup, level: str, conn_params: ConnParams, jobs: int,
                  check_mode: bool = False, scratch: Scratch | None = None) -> dict:
    """Each level up to `level`, in order (checksum, catalog, restore), stopping at the first that fails.

    Every result is recorded in the backup's verification.json; in check mode nothing is recorded and the
    restore level is only planned. `changed` is true when a recorded verdict changed.
    """
    result = {"changed": False, "ok": True, "problems": [], "levels_run": []}
    for current in LEVELS[:LEVELS.index(level) + 1]:
        if current == "restore" and check_mode:
            where = "the server" if scratch and scratch.where == "server" else "a throwaway cluster"
            result["msg"] = f"would restore {backup.backup_id} into {where} and compare row counts"
            break
        if current == "checksum":
            problems = checksum_problems(backup)
        elif current == "catalog":
            problems = catalog_problems(backup)
        else:
            problems = verify_by_restore(conn_params, backup, jobs, scratch)
        result["levels_run"].append(current)
        if not check_mode:
            result["changed"] |= store.record_verification(backup, current, not problems,
                                                           "; ".join(problems[:10]) or "ok")
        if problems:
            result.update(ok=False, problems=problems)
            break
    if result["ok"]:
        result.setdefault("msg", f"backup {backup.backup_id} of {backup.database} passed: "
                                 f"{', '.join(result['levels_run'])}")
    return result


def verification_failure(backup_id: str, database: str, result: dict) -> str:
    """The message of a failed verify_backup: what failed, and what to do."""
    return (f"backup {backup_id} of {database} FAILED {result['levels_run'][-1]} verification: "
            f"{'; '.join(result['problems'][:5])}. Do not restore it; take a new backup and keep this one for "
            "investigation.")
