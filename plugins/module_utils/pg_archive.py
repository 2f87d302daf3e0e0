# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Continuous archiving with Barman's cloud tools: the server's archive settings (a restart only when a
postmaster setting changes), the archive bucket, base backups with a recovery-window retention, and the
archive's health (the newest base backup, WAL gaps, the archiver falling behind or failing)."""

from __future__ import annotations

import datetime
import os
import subprocess
import time

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record
from ansible_collections.runbook.recovery.plugins.module_utils.pg_pitr import archive_everything_until_now, server_facts
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import Archive, BotoCoreError, ClientError
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams, sql

# Settings only a restart applies.
POSTMASTER = ("wal_level", "archive_mode")


def desired_settings(archive: Archive, current: dict, archive_timeout: int) -> dict:
    wanted = {"archive_mode": "always" if current.get("archive_mode") == "always" else "on",
              "archive_timeout": str(archive_timeout), "archive_command": archive.config.archive_command()}
    if current.get("wal_level") == "minimal":
        wanted["wal_level"] = "replica"
    return wanted


def read_settings(conn) -> dict:
    rows = conn.execute("SELECT name, setting, pending_restart FROM pg_settings WHERE name = ANY(%s)",
                        (["wal_level", "archive_mode", "archive_timeout", "archive_command"],)).fetchall()
    return ({name: setting for name, setting, _pending in rows}
            | {"pending_restart": [name for name, _setting, pending in rows if pending]})


def auto_conf_values(conn) -> dict:
    """What ALTER SYSTEM has written (applied or waiting for a reload/restart)."""
    try:
        rows = conn.execute("SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%%postgresql.auto.conf' "
                            "AND error IS NULL").fetchall()
    except Exception:  # pg_file_settings needs a superuser
        return {}
    return dict(rows)


class Archiving:
    """Configure archive_mode/archive_command/archive_timeout, restart when a postmaster setting changes,
    make sure the bucket exists, and prove the archive takes a segment."""

    def __init__(self, params: ConnParams, archive: Archive, archive_timeout: int, restart_command: list[str],
                 create_bucket: bool, check: bool, check_timeout: float = 120, adopt: bool = False,
                 tools_installed_by_run: bool = False):
        self.params, self.archive, self.archive_timeout = params, archive, archive_timeout
        self.restart_command, self.create_bucket, self.check = restart_command, create_bucket, check
        self.check_timeout, self.adopt, self.tools_installed_by_run = check_timeout, adopt, tools_installed_by_run
        self.result = {"changed": False, "restarted": False}

    def validate(self, check_mode: bool) -> list[str]:
        """The tools missing: none, or (a check-mode plan of a run that installs them first) the ones it would
        install; anything else refused before any change."""
        if not 1 <= self.archive_timeout <= 60:
            raise RunbookError(f"archive_timeout={self.archive_timeout} is outside 1..60 seconds: the archive's RPO "
                               "is at most archive_timeout, and it must stay within a minute. Nothing was changed.")
        missing = [self.archive.config.tool(tool)
                   for tool in ("barman-cloud-wal-archive", "barman-cloud-wal-restore", "barman-cloud-backup")
                   if not os.access(self.archive.config.tool(tool), os.X_OK)]
        if missing and not (check_mode and self.tools_installed_by_run):
            raise RunbookError(f"{missing[0]} is missing: install Barman's cloud tools there first (the pg_archive "
                               "role does). Nothing was changed.")
        return missing

    def run(self, check_mode: bool) -> dict:
        missing = self.validate(check_mode)
        with self.params.connect() as conn:
            # Whose the destination is, before anything changes: another cluster's archive is refused (or, with
            # adopt, this server gets a generation of its own, and archive_command names it).
            system_identifier = server_facts(conn)["system_identifier"]
            self.result["archive_generation"] = self.archive.bind(system_identifier, adopt=self.adopt)
            self.result["system_identifier"] = system_identifier
            current = read_settings(conn)
            written = auto_conf_values(conn)
            wanted = desired_settings(self.archive, current, self.archive_timeout)
            changes = {k: {"before": current.get(k), "after": v} for k, v in wanted.items()
                       if current.get(k) != v and written.get(k) != v}
            # A postmaster setting already written but not applied yet (a restart that never happened) counts too.
            pending = [k for k in POSTMASTER if k in current["pending_restart"] or
                       (k in wanted and current.get(k) != wanted[k])]
            restart = bool(pending)
            bucket = self._bucket(check_mode)
            self.result.update(settings={k: current.get(k) for k in wanted}, plan={
                "changes": changes, "restart_needed": restart, "restart_for": pending, "bucket": bucket,
                "restart_command": self.restart_command,
                "tools": ({"missing": missing, "would_install_into": self.archive.config.tools_dir}
                          if missing else "installed"),
                "destination": self.result["archive_generation"]})
            if check_mode:
                self.result["changed"] = bool(changes) or restart or bucket == "would create" or bool(missing)
                self.result["msg"] = self._describe(changes, restart, pending, bucket, missing=missing)
                return self.result
            for name, value in wanted.items():
                if name in changes:
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                    record(f"{name} set (ALTER SYSTEM) to {value}")
            if changes:
                conn.execute("SELECT pg_reload_conf()")
        self.result["changed"] = bool(changes) or bucket == "created"
        if restart:
            self._restart(pending)
        with self.params.connect() as conn:
            time.sleep(0.2 if changes else 0)  # the reload is asynchronous
            self.result["settings"] = {k: v for k, v in read_settings(conn).items() if k != "pending_restart"}
            if self.result["settings"].get("archive_mode") == "off":
                raise RunbookError("archive_mode is still off: the server needs a restart to start archiving. Set "
                                   "pg_archive_restart_command, or restart it yourself and run again.", **self.result)
            if self.check:
                self.result["archived_check"] = archive_everything_until_now(conn, self.check_timeout)
            self.result["archiver"] = archiver_stats(conn)
        self.result["msg"] = self._describe(changes, restart, pending, bucket, done=True)
        return self.result

    def _describe(self, changes: dict, restart: bool, pending: list, bucket: str, done: bool = False,
                  missing: list | None = None) -> str:
        parts = []
        if missing:
            parts.append(f"would install Barman's cloud tools into {self.archive.config.tools_dir} (pinned by the "
                         "role's barman-cloud.lock)")
        generation = self.result.get("archive_generation") or {}
        if generation.get("state"):
            where = f"{self.archive.config.destination} ({generation['server_name']})"
            parts.append(f"the destination {where} is {generation['state']}"
                         + (f"; the other cluster's generation {generation['other_generation']['server_name']} is "
                            "kept untouched" if generation.get("other_generation") else ""))
        if changes:
            parts.append(("set " if done else "would set ") + ", ".join(sorted(changes)))
        if restart:
            verb = "restarted the server" if done else "would restart the server"
            parts.append(f"{verb} (for {', '.join(pending)})")
        if bucket in ("created", "would create"):
            parts.append(f"{bucket} bucket {self.archive.config.bucket}")
        if not parts:
            parts.append("archiving is already configured")
        if done and self.check:
            parts.append(f"segment {self.result.get('archived_check')} reached the archive")
        return "; ".join(parts)

    def _bucket(self, check_mode: bool) -> str:
        client = self.archive._s3()
        bucket = self.archive.config.bucket
        try:
            client.head_bucket(Bucket=bucket)
            return "exists"
        except (ClientError, BotoCoreError) as exc:
            # Only AWS's answer that there is no such bucket goes on; a BotoCoreError (no answer) has no code.
            code = str(exc.response.get("Error", {}).get("Code")) if isinstance(exc, ClientError) else None
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise RunbookError(f"cannot reach the archive bucket {bucket}: {exc}. Nothing was changed.") from exc
        if not self.create_bucket:
            raise RunbookError(f"the archive bucket {bucket} does not exist: create it (with versioning and a "
                               "lifecycle of your choice), or set pg_archive_create_bucket=true. Nothing was changed.")
        if check_mode:
            return "would create"
        client.create_bucket(Bucket=bucket)
        record(f"bucket {bucket} created")
        return "created"

    def _restart(self, pending: list) -> None:
        if not self.restart_command:
            self.result.setdefault("warnings", []).append(
                f"{', '.join(pending)} changed and needs a restart; no restart_command was given.")
            return
        run = subprocess.run(self.restart_command, capture_output=True, text=True, cwd="/", stdin=subprocess.DEVNULL,
                             check=False)
        record(f"the server restarted for {', '.join(pending)}" if run.returncode == 0 else
               f"the restart for {', '.join(pending)} run (it failed: the server may be down)")
        if run.returncode != 0:
            raise RunbookError(f"the restart for {', '.join(pending)} failed (exit {run.returncode}): "
                               f"{(run.stderr or run.stdout).strip()[-600:]}", **self.result)
        deadline = time.monotonic() + 60
        while True:
            try:
                with self.params.connect() as conn:
                    conn.execute("SELECT 1")
                break
            except RunbookError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        self.result.update(restarted=True, changed=True)


def archiver_stats(conn) -> dict:
    row = conn.execute(
        "SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
        "last_failed_time, current_setting('archive_mode') FROM pg_stat_archiver").fetchone()
    pending = None
    oldest = None
    try:
        pending, oldest = conn.execute("SELECT count(*), min(modification) FROM pg_ls_archive_statusdir() "
                                       "WHERE name LIKE '%%.ready'").fetchone()
    except Exception:  # needs pg_monitor or a superuser
        conn.rollback() if not conn.autocommit else None
    now = utc_now()
    return {
        "archive_mode": row[6], "archived_count": row[0], "last_archived_wal": row[1],
        "last_archived_time": isoformat(row[2]) if row[2] else None,
        "failed_count": row[3], "last_failed_wal": row[4], "last_failed_time": isoformat(row[5]) if row[5] else None,
        "failing": bool(row[5] and (row[2] is None or row[5] > row[2])),
        "pending_segments": pending,
        "lag_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0,
    }


class BaseBackups:
    """Take a compressed base backup with barman-cloud-backup (unless a recent one exists), apply the recovery
    window, and check the archive (window, gaps)."""

    def __init__(self, params: ConnParams, archive: Archive, skip_if_newer_than: float | None,
                 recovery_window_days: int, minimum_redundancy: int, jobs: int = 2, timeout: float = 6 * 3600,
                 adopt: bool = False):
        self.params, self.archive, self.adopt = params, archive, adopt
        self.skip_if_newer_than, self.window_days = skip_if_newer_than, recovery_window_days
        self.minimum_redundancy, self.jobs, self.timeout = minimum_redundancy, jobs, timeout
        self.result = {"changed": False, "created": None, "removed": []}

    def validate(self) -> None:
        if self.window_days < 1:
            raise RunbookError(f"recovery_window_days={self.window_days}: keep at least 1 day of point-in-time "
                               "recovery. Nothing was changed.")
        if self.minimum_redundancy < 1:
            raise RunbookError(f"minimum_redundancy={self.minimum_redundancy}: keep at least 1 base backup. "
                               "Nothing was changed.")
        if self.jobs < 1:
            raise RunbookError(f"jobs={self.jobs}: use 1 or more upload workers.")

    def run(self, check_mode: bool, take: bool = True) -> dict:
        self.validate()
        with self.params.connect() as conn:
            facts = server_facts(conn)
        self.archive.os_user = self.archive.os_user or facts["os_user"]
        # Base backups go to this server's archive (or its generation), never beside another cluster's.
        self.result["archive_generation"] = self.archive.bind(facts["system_identifier"], adopt=self.adopt)
        backups = self.archive.backups()
        fresh = self._fresh(backups)
        if take and fresh is None:
            if check_mode:
                self.result.update(changed=True, msg="would take a base backup")
            else:
                self.result["created"] = self._take()
                self.result["changed"] = True
        removed = self._retention(check_mode) if take else []
        if removed:
            self.result.update(changed=True, removed=removed)
        report = self.archive.check(facts["segment_size"])
        self.result.update(report_summary(report))
        if not self.result.get("msg"):
            self.result["msg"] = (f"base backup {self.result['created']} taken" if self.result["created"] else
                                  f"newest base backup {fresh['id']} is recent enough" if fresh else "archive checked")
        if removed:
            self.result["msg"] += f"; retention removed {', '.join(removed)}"
        if report["gaps"]:
            self.result["msg"] += f"; the WAL archive has gaps: {', '.join(report['gaps'][:5])}"
        return self.result

    def _fresh(self, backups: list[dict]) -> dict | None:
        if self.skip_if_newer_than is None or not backups:
            return None
        newest = backups[-1]
        return newest if (utc_now() - newest["end_time"]).total_seconds() <= self.skip_if_newer_than else None

    def _take(self) -> str:
        name = f"runbook-{utc_now().strftime('%Y%m%dT%H%M%SZ')}"
        host = self.params.host or self.params.unix_socket
        args = [*self.archive.config.compression_args(), "--immediate-checkpoint", "-J", str(self.jobs),
                "-n", name, "-p", str(self.params.port), "-U", self.params.user, "-d", self.params.maintenance_db]
        if host:
            args += ["-h", host]
        env = {"PGPASSWORD": self.params.password} if self.params.password else {}
        self.archive.run("barman-cloud-backup", *args, self.archive.config.destination,
                         self.archive.config.server_name, env=env, timeout=self.timeout, as_server_user=True)
        record(f"base backup {name} taken")
        for backup in reversed(self.archive.backups()):
            if backup["name"] == name:
                return backup["id"]
        raise RunbookError(f"barman-cloud-backup finished but base backup {name} is not listed as DONE.")

    def _retention(self, check_mode: bool) -> list[str]:
        backups = self.archive.backups()
        before = {b["id"] for b in backups}
        if not retention_may_delete(backups, self.window_days, self.minimum_redundancy):
            return []
        policy = f"RECOVERY WINDOW OF {self.window_days} DAYS"
        args = ["-r", policy, "-m", str(self.minimum_redundancy), self.archive.config.destination,
                self.archive.config.server_name]
        if check_mode:
            output = self.archive.run("barman-cloud-backup-delete", "--dry-run", *args)
            return sorted(b for b in before if b in output)
        self.archive.run("barman-cloud-backup-delete", *args)
        after = {b["id"] for b in self.archive.backups()}
        for gone in sorted(before - after):
            record(f"base backup {gone} deleted ({policy})")
        return sorted(before - after)


def retention_may_delete(backups: list[dict], window_days: int, minimum_redundancy: int, now=None) -> bool:
    """Whether the recovery window can remove anything: it keeps every backup that ended inside the window and
    the newest one before it (the start of the window needs it), and never fewer than the minimum. When it
    cannot, the engine's delete (seconds of listing) is not run at all."""
    start = (now or utc_now()) - datetime.timedelta(days=window_days)
    older = [b for b in backups if b["end_time"] < start]
    return len(older) > 1 and len(backups) > minimum_redundancy


def report_summary(report: dict) -> dict:
    backups = report["backups"]
    newest = backups[-1] if backups else None
    age = round((utc_now() - newest["end_time"]).total_seconds() / 3600, 2) if newest else None
    return {
        "backups": [{k: (isoformat(v) if hasattr(v, "isoformat") else v) for k, v in b.items()} for b in backups],
        "newest_backup": newest["id"] if newest else None,
        "newest_backup_age_hours": age,
        "window": report["window"], "gaps": report["gaps"], "newest_wal": report["newest_wal"],
        "newest_wal_at": report["newest_wal_at"], "segments": report["segments"],
        "histories": report.get("histories", []),
    }
