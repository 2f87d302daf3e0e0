# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery of one database (a throwaway cluster replays to the target, the database is dumped
out of it and goes through recover-db's staging -> validate -> swap -> probe -> rollback path while the live
cluster keeps serving), of the whole cluster (the data directory moved aside and put back on any failure),
and the drill that proves the archive restores."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import subprocess
import time
from contextlib import contextmanager

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    human_size,
    isoformat,
    utc_now,
)
from ansible_collections.runbook.recovery.plugins.module_utils.journal import Journal
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record, record_undo
from ansible_collections.runbook.recovery.plugins.module_utils.pg_backup import BackupOptions, BackupRun
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import Recovery, count_problems
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import (
    DEFAULT_SEGMENT_SIZE,
    Archive,
    ArchiveConfig,
    Target,
    Throwaway,
    as_user,
    check_free_space,
    choose_backup,
    claimed_directory,
    lsn_int,
    private_work_dir,
    remove_leftovers,
    segment_name,
    segment_of,
    wal_plan,
    window_text,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    DatabaseError,
    count_rows,
    database_properties,
    pg_tool,
    server_identity,
    user_tables,
)

ARCHIVE_WAIT = 120


def archive_argument_spec() -> dict:
    return dict(archive=dict(type="dict", required=True, options=dict(
        destination=dict(type="str", required=True),
        server_name=dict(type="str", required=True),
        tools_dir=dict(type="path", default="/opt/runbook-recovery/barman-cloud"),
        aws_dir=dict(type="path", required=True),
        profile=dict(type="str", default="runbook-archive"),
        compression=dict(type="str", default="gzip", choices=["gzip", "bzip2", "snappy", "none"]),
    )), aws_connection=dict(type="dict", default={}, no_log=True))


def archive_config(params: dict) -> ArchiveConfig:
    config = ArchiveConfig(**params["archive"])
    config.validate()
    return config


def server_facts(conn) -> dict:
    row = conn.execute(
        "SELECT current_setting('data_directory'), current_setting('wal_segment_size'), pg_is_in_recovery(), "
        "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text, "
        "now()").fetchone()
    size_text = row[1]
    units = {"MB": 1024 * 1024, "GB": 1024 ** 3, "kB": 1024}
    segment_size = next((int(size_text[:-len(u)]) * f for u, f in units.items() if size_text.endswith(u)),
                        DEFAULT_SEGMENT_SIZE)
    data = row[0]
    try:
        owner = pwd.getpwuid(os.stat(data).st_uid).pw_name
    except (OSError, KeyError):
        owner = None
    if owner is None and os.geteuid() == 0:
        # PostgreSQL refuses to run as root: the throwaway runs as the usual server user.
        try:
            owner = pwd.getpwnam("postgres").pw_name
        except KeyError:
            owner = None
    try:  # whose archive is whose (Archive.bind); a role without the right to read the control data cannot tell
        system_identifier = str(conn.execute("SELECT system_identifier FROM pg_catalog.pg_control_system()")
                                .fetchone()[0])
    except DatabaseError:
        system_identifier = None
    return {"data_directory": data, "segment_size": segment_size, "in_recovery": row[2], "current_lsn": row[3],
            "now": row[4], "os_user": owner, "system_identifier": system_identifier}


def recovery_plan(archive: Archive, facts: dict, target: Target) -> dict:
    """The base backup, the WAL range and whether the archive holds it, the target and the window. Refuses
    a target outside the window and a gap in the range, before anything changes."""
    if facts["in_recovery"]:
        raise RunbookError("this server is a standby (in recovery): recover on the primary. Nothing was changed.")
    # Never another cluster's base backup: the archive (or this server's generation of it) must be this server's.
    archive.bind(facts.get("system_identifier"))
    backups = archive.backups()
    segment_size = facts["segment_size"]
    wal = archive.wal_objects(segment_size)
    backup = choose_backup(backups, target)
    current_segment = segment_of(facts["current_lsn"], segment_size)
    if target.kind == "lsn":
        if lsn_int(target.value) > lsn_int(facts["current_lsn"]):
            raise RunbookError(f"target_lsn {target.value} is in the future: the server is at {facts['current_lsn']}. "
                               f"The recoverable window is {window_text(backups)}. Nothing was changed.")
        last_needed = segment_of(target.value, segment_size)
    elif target.kind == "time":
        # The segment holding the target was archived at or after it: everything up to the first one archived
        # after the target (or, if none is yet, up to the segment being written now).
        after = sorted(s for (_t, s), at in wal["segments"].items() if at >= target.moment)
        last_needed = after[0] if after else current_segment
    else:
        last_needed = current_segment
    plan_wal = wal_plan(backup, wal["segments"], last_needed, segment_size)
    if plan_wal["missing"]:
        raise RunbookError(
            f"the WAL archive has a gap: {', '.join(plan_wal['missing'])} missing between {plan_wal['from']} and "
            f"{plan_wal['to']}, which a recovery from base backup {backup['id']} to {target.describe()} needs. "
            "Nothing was changed. Choose a target before the gap, or restore the missing segments to the archive.",
            wal=plan_wal)
    return {"target": target.describe(), "base_backup": {k: (isoformat(v) if hasattr(v, "isoformat") else v)
                                                         for k, v in backup.items()},
            "wal": plan_wal, "window": window_text(backups),
            "restore_bytes": backup["size_bytes"], "restore_size": human_size(backup["size_bytes"])}


def wal_state(wal: dict) -> str:
    pending = wal["not_archived_yet"]
    if not pending:
        return f"{wal['segments']} segments, all in the archive"
    return (f"{wal['segments']} segments: {wal['segments'] - pending} in the archive, the last {pending} still on "
            "the server, archived first")


def archive_everything_until_now(conn, timeout: float = ARCHIVE_WAIT) -> str:
    """Commit, switch to a new segment, and wait until the archiver has sent it: every commit made before
    this call is then in the archive (a target time 'now' or a recent one needs that)."""
    conn.execute("SELECT txid_current()")
    finished = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute("SELECT last_archived_wal, last_failed_wal, last_failed_time > "
                           "coalesce(last_archived_time, 'epoch') FROM pg_stat_archiver").fetchone()
        if row[0] and row[0][8:] >= finished[8:] and row[0][:8] >= finished[:8]:
            return finished
        if time.monotonic() > deadline:
            failing = f"; the archiver is failing (last failed: {row[1]})" if row[2] else ""
            raise RunbookError(f"WAL segment {finished} was not archived within {timeout:.0f} s{failing}. Nothing "
                               "was changed: fix archiving (the health sweep's archive findings) first.")
        time.sleep(0.2)


# -- one database --------------------------------------------------------------------------------------------
class DatabasePitr:
    """Replay a throwaway cluster to the target, dump the database out of it, and recover it like recover-db
    does: a Recovery of that dump (same lock, same staging/swap/probe/rollback, same database state carried from
    the dump), given the dump's backup and holding the database's recovery lock taken before the replay."""

    def __init__(self, params: ConnParams, store: LocalStore, database: str, archive: Archive, target: Target,
                 work_dir: str, replay_timeout: float = 3600, **options):
        self.params, self.records, self.database, self.options = params, store, database, options
        self.archive, self.target, self.work_dir, self.replay_timeout = archive, target, work_dir, replay_timeout
        # The database as it is now (its lock, what it holds, who is connected); the recovery proper is another
        # Recovery, of the dump, made once the dump exists.
        self.current = Recovery(params, store, database, backup="latest", **options)
        self.result = self.current.result

    def plan(self) -> dict:
        self.current.validate()
        with self.current.locked():
            return self._plan()

    def _plan(self) -> dict:
        with self.params.connect() as conn:
            facts = server_facts(conn)
            before = self.current.snapshot(conn, database_properties(conn, self.database))
            connections = self.current.connections(conn)
        plan = recovery_plan(self.archive, facts, self.target)
        self.archive.os_user = self.archive.os_user or facts["os_user"]
        needed = (self.current.force or self.target.kind == "latest"
                  or before.get("restored_backup") != self.target.label)
        plan.update(needed=needed, scope="database", database=self.database, staging_database=self.current.staging,
                    keep_current_as=self.current.kept_name() if before["exists"] else None,
                    connections_to_terminate=connections, work_dir=self.work_dir)
        if needed:
            free = check_free_space(self.work_dir, int(plan["restore_bytes"] * 1.1),
                                    f"restoring base backup {plan['base_backup']['id']} into a throwaway cluster")
            plan["work_dir_free"] = human_size(free) if free is not None else None
        self.result.update(before=before, plan=plan, changed=needed, facts={"segment_size": facts["segment_size"]})
        if needed:
            self.result["msg"] = (
                f"would restore base backup {plan['base_backup']['id']} ({plan['restore_size']}; "
                f"{plan.get('work_dir_free')} free) into a throwaway cluster under {self.work_dir}, replay WAL "
                f"{plan['wal']['from']}..{plan['wal']['to']} ({wal_state(plan['wal'])}) "
                f"to {self.target.describe()}, dump {self.database} out of it, "
                f"restore that into {self.current.staging}, and swap it in"
                + (f" (the current database is kept as {plan['keep_current_as']})" if before["exists"] else ""))
        else:
            self.result["msg"] = f"{self.database} already holds {self.target.describe()}: nothing to do"
        interrupted = self.current.journal.read()
        if interrupted is not None:  # a real run settles it first (Recovery._resolve_interrupted)
            plan.update(needed=True, interrupted=interrupted)
            self.result.update(changed=True, msg=(
                f"an interrupted recovery of {self.database} (started {interrupted['started_at']}) stopped at step "
                f"{interrupted['step']}: it will be finished or undone first; then " + self.result["msg"]))
        return plan

    def run(self) -> dict:
        self.current.validate()
        with self.current.locked() as lock:
            self.current.lock = lock
            self.current._resolve_interrupted()  # a recovery of this database killed mid-run: settled first
            settled = ("interrupted", "kept_database", "swapped", "recovered_oid", "removed_previous")
            finished = {k: v for k, v in self.result.items() if k in settled}
            plan = self._plan()
            # Throwaway clusters and dumps of runs that died go first, also when nothing else needs doing.
            self.result["removed_leftovers"] = remove_leftovers(self.work_dir, self.archive.os_user)
            if not plan["needed"]:
                if finished.get("interrupted"):
                    self.result.update(finished, changed=True, msg=(
                        f"the interrupted recovery of {self.database} (stopped at step "
                        f"{finished['interrupted']['step']}) was finished: it holds {self.target.describe()}"))
                return self.result
            started = time.monotonic()
            with self.params.connect() as conn:
                self.result["archived_through"] = archive_everything_until_now(conn)
            dumps, claim = claimed_directory(self.work_dir, "runbook-pitr-dump-")
            try:
                throwaway = Throwaway(self.work_dir, self.archive.os_user, self.params.user, self.params.password)
                try:
                    replay = self._replay(throwaway, plan)
                    backup = self._dump(throwaway, dumps)
                finally:
                    throwaway.destroy()
                self.result["replay"] = {**replay, "dumped_backup": backup["id"]}
                recovery = Recovery(self.params, LocalStore(dumps), self.database, backup=backup["id"],
                                    journal=self.current.journal, label=self.target.label, **self.options)
                recovery.result = self.result  # one result: what the replay did and what the recovery did
                result = recovery.apply(lock)
            finally:
                shutil.rmtree(dumps, ignore_errors=True)
                claim.close()
            self._record()
            if isinstance(result.get("after"), dict):
                result["after"]["restored_backup"] = self.target.label
            result["plan"] = {**plan, **{k: v for k, v in result.get("plan", {}).items() if k == "tables"}}
            result["elapsed_seconds"] = round(time.monotonic() - started, 3)
            result["msg"] = (f"{self.database} is back to {self.target.describe()} (base backup "
                             f"{plan['base_backup']['id']} + WAL); the previous database is kept as "
                             f"{result.get('kept_database')}")
            return result

    def _replay(self, throwaway: Throwaway, plan: dict) -> dict:
        throwaway.create()
        self.result["throwaway"] = throwaway.base
        began = time.monotonic()
        throwaway.restore(self.archive, plan["base_backup"]["id"])
        restored = time.monotonic() - began
        throwaway.configure(self.archive, self.target)
        try:
            replayed = throwaway.start(self.replay_timeout)
        except RunbookError as exc:
            raise RunbookError(f"the point-in-time replay to {self.target.describe()} failed, so {self.database} was "
                               f"not touched: {exc}") from exc
        return {"restore_seconds": round(restored, 3), "replay_seconds": round(replayed, 3)}

    def _dump(self, throwaway: Throwaway, dumps: str) -> dict:
        source = throwaway.params()
        with source.connect() as conn:
            if database_properties(conn, self.database) is None:
                raise RunbookError(f"database {self.database!r} did not exist at {self.target.describe()}: nothing to "
                                   f"recover it from. {self.database} was not touched.")
        result = BackupRun(source, LocalStore(dumps), BackupOptions(self.database, jobs=self.current.jobs), False).run()
        return result["backup"]

    def _record(self) -> None:
        try:
            with self.params.connect() as conn:
                self.records.record_restored(self.database, server_identity(conn, self.result["recovered_oid"]),
                                             self.target.label)
        except (OSError, KeyError) as exc:
            self.result.setdefault("warnings", []).append(
                f"could not record the recovered target in {self.records.root} ({exc}): a rerun recovers again.")


# -- the whole cluster -------------------------------------------------------------------------------------
@contextmanager
def host_lock(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunbookError(f"another cluster recovery holds {path}: wait for it to finish. Nothing was "
                               "changed.") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ClusterPitr:
    """Stop the server, move its data directory aside (kept, never deleted here), restore and replay into a
    fresh one, start, probe; on any failure put the old directory back and start it.

    A kill reaches no exception handler, so each step is written first to a journal (0600, in the work directory,
    which is known without the server): a run that finds one whose run is gone undoes it before anything else (the
    new directory set aside, the old one put back, the server started), and a journal whose recovery had finished
    is simply removed."""

    JOURNAL = "cluster-pitr.journal.json"

    def __init__(self, params: ConnParams, archive: Archive, target: Target, stop_command: list[str],
                 start_command: list[str], health_query: str = "SELECT 1", replay_timeout: float = 3600,
                 data_directory: str | None = None, force: bool = False, work_dir: str = "/var/tmp/runbook-pitr"):
        self.params, self.archive, self.target, self.force = params, archive, target, force
        self.stop_command, self.start_command = stop_command, start_command
        self.health_query, self.replay_timeout = health_query, replay_timeout
        self.data_directory, self.work_dir = data_directory, work_dir
        self.result = {"changed": False, "scope": "cluster", "rolled_back": False}

    # -- the journal ------------------------------------------------------------------------------------------
    @property
    def journal(self) -> Journal:
        return Journal(os.path.join(self.work_dir, self.JOURNAL))

    def _lock(self):
        return host_lock(os.path.join(private_work_dir(self.work_dir), "cluster-pitr.lock"))

    def _interrupted_plan(self, journal: dict) -> dict:
        plan = {"needed": True, "scope": "cluster", "target": self.target.describe(), "interrupted": journal}
        self.result.update(plan=plan, changed=True, msg=(
            f"an interrupted cluster recovery (to {journal.get('target')}, started {journal.get('started_at')}) "
            f"stopped at step {journal['step']}: it will be "
            + ("closed (it had finished)" if journal["step"] == "finished" else
               f"undone first ({journal['data']} put back from {journal['kept']} if it was moved, the server "
               "started)") + f", then the cluster recovered to {self.target.describe()}"))
        return plan

    def _resolve_interrupted(self) -> dict | None:
        """Undo (or close, if it had finished) the run a journal tells of; the caller holds the host lock, so that
        run is gone."""
        journal = self.journal.read()
        if journal is None:
            return None
        if journal["step"] != "finished":
            data, kept = journal["data"], journal["kept"]
            self.data_directory = data
            self.archive.os_user = self.archive.os_user or journal.get("os_user")
            if os.path.exists(kept):
                self._put_back(data, kept, keep_failed=False)  # a half-made directory, made again from the archive
            elif not self._running(data):
                self._start()
                self._wait_ready()
        elif journal.get("label"):  # killed before it recorded what it reached: recorded now, not recovered again
            self.data_directory = journal["data"]
            self._write_record(journal["label"])
        self.journal.close()
        record(f"the cluster recovery killed at step {journal['step']} undone ({journal['data']} as it was before it)"
               if journal["step"] != "finished" else "the journal of a finished cluster recovery closed")
        self.result["undone_interrupted"] = journal
        return journal

    def undo_interrupted(self, check_mode: bool) -> dict:
        """Only the undo of an interrupted recovery (state=undone): the server answers afterwards."""
        journal = self.journal.read()
        if journal is None:
            return {"changed": False, "msg": "no interrupted cluster recovery"}
        if check_mode:
            self._interrupted_plan(journal)
            return {"changed": True, "interrupted": journal, "msg": self.result["msg"]}
        with self._lock():
            undone = self._resolve_interrupted()
        return {"changed": undone is not None, "undone_interrupted": undone,
                "msg": f"the interrupted cluster recovery (step {undone['step']}) was undone: the server runs on "
                       f"{undone['data']} as it was before it" if undone else "no interrupted cluster recovery"}

    def interrupted(self) -> dict | None:
        """The journal of a cluster recovery whose process is gone (read-only, takes no lock: for the health sweep),
        else None."""
        return self.journal.interrupted()

    def _running(self, data: str) -> bool:
        pid = self._pid(data)
        return bool(pid and os.path.exists(f"/proc/{pid}"))

    def plan(self) -> dict:
        journal = self.journal.read()
        if journal is not None:
            return self._interrupted_plan(journal)
        with self.params.connect() as conn:
            facts = server_facts(conn)
        if self.data_directory and os.path.realpath(self.data_directory) != os.path.realpath(facts["data_directory"]):
            raise RunbookError(f"pg_data_directory {self.data_directory} is not the server's data directory "
                               f"({facts['data_directory']}). Nothing was changed.")
        self.data_directory = facts["data_directory"]
        if not os.path.isdir(self.data_directory):
            raise RunbookError(f"the data directory {self.data_directory} is not on this host: a cluster recovery runs "
                               "on the database server itself. Nothing was changed.")
        self.archive.os_user = self.archive.os_user or facts["os_user"]
        record = self._record_path()
        if not self.force and self.target.kind != "latest" and os.path.exists(record):
            with open(record) as handle:
                held = json.load(handle)
            if held == {"identity": self._identity(), "target": self.target.label}:
                self.result.update(plan={"needed": False, "scope": "cluster", "target": self.target.describe()},
                                   changed=False, msg=f"the cluster already holds {self.target.describe()} (a "
                                   "recovery of ours made it, and nothing has promoted since): nothing to do")
                return self.result["plan"]
        plan = recovery_plan(self.archive, facts, self.target)
        stamp = compact_timestamp(utc_now())
        plan.update(needed=True, scope="cluster", data_directory=self.data_directory,
                    keep_data_directory_as=f"{self.data_directory}.pre_pitr_{stamp}",
                    stop_command=self.stop_command, start_command=self.start_command)
        free = check_free_space(os.path.dirname(self.data_directory), int(plan["restore_bytes"] * 1.1),
                                f"restoring base backup {plan['base_backup']['id']} beside the current data directory")
        plan["free_beside_data_directory"] = human_size(free) if free is not None else None
        self.result.update(plan=plan, changed=True, msg=(
            f"would stop the server, move {self.data_directory} aside to {plan['keep_data_directory_as']} (kept), "
            f"restore base backup {plan['base_backup']['id']}, replay WAL {plan['wal']['from']}..{plan['wal']['to']} "
            f"({wal_state(plan['wal'])}) "
            f"to {self.target.describe()}, promote, start and probe; any failure puts the old directory back"))
        return plan

    def run(self) -> dict:
        with self._lock():
            self._resolve_interrupted()
            plan = self.plan()
            if not plan["needed"]:
                return self.result
            started = time.monotonic()
            with self.params.connect() as conn:
                self.result["archived_through"] = archive_everything_until_now(conn)
            data, kept = self.data_directory, plan["keep_data_directory_as"]
            mode, owner = os.stat(data).st_mode & 0o777, os.stat(data)
            self.spool_dir = f"{data}.walspool"
            shutil.rmtree(self.spool_dir, ignore_errors=True)  # segments of another recovery are not ours to replay
            self.journal.write("stopping", data=data, kept=kept, target=self.target.describe(),
                               label=self.target.label, os_user=self.archive.os_user)
            self._stop()
            stopped = record(f"the server of {data} stopped")
            self.journal.write("moving")
            os.rename(data, kept)
            moved = record(f"{data} moved aside to {kept}")
            self.result.update(kept_data_directory=kept)
            try:
                for path in (data, self.spool_dir):
                    os.mkdir(path, mode)
                    os.chown(path, owner.st_uid, owner.st_gid)
                self.journal.write("restoring")
                self.archive.run("barman-cloud-restore", self.archive.config.destination,
                                 self.archive.config.server_name, plan["base_backup"]["id"], data,
                                 as_server_user=True)
                self._configure(data)
                self.journal.write("replaying")
                self._start()
                self._wait_promoted()
                self.journal.write("probing")
                self._unconfigure(data)
                self._probe()
            except BaseException as exc:
                self._put_back(data, kept)
                record_undo(moved, "put back")
                record_undo(stopped, "started again on it")
                self.journal.close()
                raise RunbookError(f"the cluster recovery to {self.target.describe()} failed: {exc} The old data "
                                   f"directory is back in place and the server was started on it.",
                                   **self.result) from exc
            finally:
                shutil.rmtree(self.spool_dir, ignore_errors=True)
            self.journal.write("finished")
            self._write_record()
            self.journal.close()
            self.result.update(changed=True, elapsed_seconds=round(time.monotonic() - started, 3), msg=(
                f"the cluster is back to {self.target.describe()}; the previous data directory is kept as {kept} "
                "(remove it once you are sure)"))
            return self.result

    def _record_path(self) -> str:
        return os.path.join(os.path.dirname(os.path.realpath(self.data_directory)), ".runbook-cluster-pitr.json")

    def _identity(self) -> str:
        """The cluster and its current timeline: a later promotion (another recovery) changes it."""
        with self.params.connect() as conn:
            system, walfile = conn.execute("SELECT system_identifier, pg_walfile_name(pg_current_wal_lsn()) "
                                           "FROM pg_control_system()").fetchone()
        return f"{system}:{int(walfile[:8], 16)}"

    def _write_record(self, label: str | None = None) -> None:
        try:
            with open(self._record_path(), "w") as handle:
                json.dump({"identity": self._identity(), "target": label or self.target.label}, handle)
        except OSError as exc:
            self.result.setdefault("warnings", []).append(f"could not record the recovered target ({exc}): a rerun "
                                                          "recovers again.")

    def _run_command(self, command: list[str], what: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, cwd="/", stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise RunbookError(f"{what} failed (exit {result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-800:]}")

    def _pid(self, data: str) -> int | None:
        try:
            with open(os.path.join(data, "postmaster.pid")) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None

    def _stop(self) -> None:
        pid = self._pid(self.data_directory)
        if self.stop_command:
            self._run_command(self.stop_command, "stopping the server")
        else:
            self._run_command(as_user(self.archive.os_user, [pg_tool("pg_ctl"), "stop", "-D", self.data_directory,
                                                             "-m", "fast", "-w", "-t", "120"]), "pg_ctl stop")
        deadline = time.monotonic() + 60
        while pid and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._pid(self.data_directory) and pid and os.path.exists(f"/proc/{pid}"):
            raise RunbookError("the server did not stop; nothing was changed.")

    def _start(self) -> None:
        if self.start_command:
            self._run_command(self.start_command, "starting the server")
        else:
            log = os.path.join(os.path.dirname(self.data_directory), "postgresql-pitr-start.log")
            self._run_command(as_user(self.archive.os_user, [pg_tool("pg_ctl"), "start", "-D", self.data_directory,
                                                             "-l", log, "-w", "-t", "120"]), "pg_ctl start")

    _MARK = "# runbook.recovery cluster point-in-time recovery (removed after promotion)\n"

    def _configure(self, data: str) -> None:
        settings = {"restore_command": self.archive.config.restore_command(self.spool_dir),
                    "recovery_target_action": "promote",
                    "recovery_target_timeline": "latest", **self.target.settings()}
        auto = os.path.join(data, "postgresql.auto.conf")
        with open(auto, "a") as handle:
            handle.write("\n" + self._MARK)
            for key, value in settings.items():
                handle.write(f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n")
            handle.write(self._MARK)
        for name in ("postmaster.pid", "standby.signal"):
            if os.path.exists(os.path.join(data, name)):
                os.unlink(os.path.join(data, name))
        open(os.path.join(data, "recovery.signal"), "w").close()
        owner = os.stat(data)
        for name in ("postgresql.auto.conf", "recovery.signal"):
            os.chown(os.path.join(data, name), owner.st_uid, owner.st_gid)

    def _unconfigure(self, data: str) -> None:
        auto = os.path.join(data, "postgresql.auto.conf")
        with open(auto) as handle:
            text = handle.read()
        head, _mark, rest = text.partition("\n" + self._MARK)
        tail = rest.partition(self._MARK)[2]
        with open(auto, "w") as handle:
            handle.write(head + ("\n" if not head.endswith("\n") else "") + tail)

    def _wait_promoted(self) -> None:
        deadline = time.monotonic() + self.replay_timeout
        while True:
            pid = self._pid(self.data_directory)
            try:
                with self.params.connect() as conn:
                    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        return
            except RunbookError:
                if not pid or not os.path.exists(f"/proc/{pid}"):
                    raise RunbookError("the server stopped during the replay: "
                                       f"{self._log_hint()}") from None
            if time.monotonic() > deadline:
                raise RunbookError(f"the replay did not finish within {self.replay_timeout:.0f} s")
            time.sleep(0.3)

    def _log_hint(self) -> str:
        return "see the server log (recovery ended before the target, or a WAL segment could not be restored)"

    def _probe(self) -> None:
        try:
            with self.params.connect(own_search_path=False) as conn:  # the operator's own SQL
                conn.execute("SET statement_timeout = '30s'")
                conn.execute(self.health_query).fetchall()
        except Exception as exc:
            raise RunbookError(f"the SQL health probe on the recovered cluster failed: {' '.join(str(exc).split())}."
                               ) from exc

    def _put_back(self, data: str, kept: str, keep_failed: bool = True) -> None:
        pid = self._pid(data)
        if pid and os.path.exists(f"/proc/{pid}"):
            subprocess.run(as_user(self.archive.os_user, [pg_tool("pg_ctl"), "stop", "-D", data, "-m", "immediate",
                                                          "-w", "-t", "60"]), capture_output=True, cwd="/",
                           check=False)
            deadline = time.monotonic() + 30
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.1)
        if os.path.exists(data) and keep_failed:
            failed = f"{data}.failed_pitr_{compact_timestamp(utc_now())}"
            os.rename(data, failed)
            self.result["failed_data_directory"] = failed
        elif os.path.exists(data):
            shutil.rmtree(data)
        os.rename(kept, data)
        self.result.update(rolled_back=True, kept_data_directory=None)
        self._start()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with self.params.connect() as conn:
                    conn.execute("SELECT 1")
                return
            except RunbookError:
                time.sleep(0.3)


# -- the drill -----------------------------------------------------------------------------------------------
class Drill:
    """Newest base backup + WAL, up to the newest archived segment, into a throwaway cluster; pg_amcheck on it;
    every table of the newest logical backup of each database present and counted. RPO and RTO measured."""

    def __init__(self, params: ConnParams, archive: Archive, work_dir: str, store: LocalStore | None,
                 databases: list[str], replay_timeout: float = 3600, jobs: int = 2):
        self.params, self.archive, self.work_dir, self.store = params, archive, work_dir, store
        self.databases, self.replay_timeout, self.jobs = databases, replay_timeout, jobs

    def run(self, check_mode: bool) -> dict:
        started = time.monotonic()
        with self.params.connect() as conn:
            facts = server_facts(conn)
        self.archive.os_user = self.archive.os_user or facts["os_user"]
        self.archive.bind(facts["system_identifier"])  # the drill replays this server's archive, no other's
        backups = self.archive.backups()
        if not backups:
            raise RunbookError("the archive holds no finished base backup: take one (playbooks/base-backup.yml).")
        wal = self.archive.wal_objects(facts["segment_size"])
        backup = backups[-1]
        newest_at = max(wal["segments"].values()) if wal["segments"] else None
        rpo = round((utc_now() - newest_at).total_seconds(), 1) if newest_at else None
        newest = max(wal["segments"], key=lambda k: (k[1], k[0])) if wal["segments"] else None
        plan_wal = wal_plan(backup, wal["segments"], newest[1] if newest else 0, facts["segment_size"])
        result = {"changed": False, "base_backup": backup["id"], "wal": plan_wal, "rpo_seconds": rpo,
                  "newest_wal": segment_name(*newest, facts["segment_size"]) if newest else None}
        if plan_wal["missing"]:
            raise RunbookError(f"the WAL archive has a gap after base backup {backup['id']}: "
                               f"{', '.join(plan_wal['missing'])} missing.", **result)
        if check_mode:
            result["msg"] = (f"would restore base backup {backup['id']} and replay {plan_wal['segments']} segments "
                             "into a throwaway cluster, run pg_amcheck and compare row counts")
            return result
        result["removed_leftovers"] = remove_leftovers(self.work_dir, self.archive.os_user)
        throwaway = Throwaway(self.work_dir, self.archive.os_user, self.params.user, self.params.password)
        try:
            throwaway.create()
            throwaway.restore(self.archive, backup["id"])
            throwaway.configure(self.archive, Target("latest"))
            result["replay_seconds"] = round(throwaway.start(self.replay_timeout), 3)
            result["amcheck"] = self._amcheck(throwaway)
            result["tables"] = self._compare(throwaway)
        finally:
            throwaway.destroy()
        result["rto_seconds"] = round(time.monotonic() - started, 1)
        problems = result["amcheck"]["problems"] + list(result["tables"]["problems"])
        result["ok"] = not problems
        result["msg"] = (f"drill of base backup {backup['id']} + {plan_wal['segments']} WAL segments: "
                         + ("restored, pg_amcheck clean, every logically backed-up table present"
                            if not problems else "PROBLEMS: " + "; ".join(problems[:5]))
                         + f" (RPO {rpo} s, RTO {result['rto_seconds']} s)")
        if problems:
            raise RunbookError(result["msg"], **result)
        return result

    def _amcheck(self, throwaway: Throwaway) -> dict:
        command = [pg_tool("pg_amcheck"), "--all", "--install-missing", f"--jobs={self.jobs}", "--no-password"]
        run = subprocess.run(command, env=throwaway.params().env(), capture_output=True, text=True, cwd="/",
                             stdin=subprocess.DEVNULL, check=False)
        output = (run.stdout + run.stderr).strip()
        return {"exit": run.returncode, "problems": [f"pg_amcheck: {output[-800:]}"] if run.returncode else []}

    def _compare(self, throwaway: Throwaway) -> dict:
        out = {"databases": {}, "problems": []}
        for database in self.databases:
            backups = self.store.list(database) if self.store else []
            if not backups:
                where = self.store.root if self.store else "the backup store"
                out["problems"].append(f"{database}: no logical backup in {where} to compare with")
                continue
            newest = backups[-1]
            expected = newest.table_counts()
            try:
                with throwaway.params().connect(database) as conn:
                    present = set(user_tables(conn))
                    found = count_rows(conn, [key for key in expected if key in present])
            except RunbookError as exc:
                out["problems"].append(f"{database}: {exc}")
                continue
            missing = [f"{s}.{n}" for (s, n) in expected if (s, n) not in found]
            changed = count_problems(expected, dict(found))
            out["databases"][database] = {"logical_backup": newest.backup_id, "tables": len(expected),
                                          "missing": missing, "rows_differ": len(changed)}
            out["problems"] += [f"{database}: table {name} of backup {newest.backup_id} is missing" for name in missing]
        return out
