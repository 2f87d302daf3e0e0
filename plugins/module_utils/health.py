# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health findings for PostgreSQL, its backups and Redis, each with a severity from configurable thresholds."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore, free_bytes
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, human_size, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams, DatabaseError

SEVERITIES = ("ok", "warning", "critical")

# metric: (direction, warning, critical); "above" means larger is worse. None disables a level.
DEFAULT_THRESHOLDS = {
    "connection_ratio": ("above", 0.8, 0.95),
    "longest_transaction_seconds": ("above", 300, 1800),
    "blocked_sessions": ("above", 1, 10),
    "xid_age": ("above", 1_000_000_000, 1_500_000_000),
    "dead_tuple_ratio": ("above", 0.2, 0.5),
    "cache_hit_ratio": ("below", 0.95, 0.80),
    "invalid_indexes": ("above", 1, None),
    "database_size_bytes": ("above", None, None),
    "redis_memory_ratio": ("above", 0.8, 0.95),
    "redis_evicted_keys": ("above", 1, None),
    # An emergency shutdown still in force: a warning at once (so nobody forgets the resume), critical after a day.
    "shutdown_age_hours": ("above", 0, 24),
    "lambda_errors_last_hour": ("above", 1, 100),
    "lambda_throttles_last_hour": ("above", 1, 100),
    "dynamodb_throttle_events_last_hour": ("above", 1, 100),
    # CloudWatch alarms in ALARM: a warning by default ({alarms_in_alarm: {critical: 1}} to fail the sweep on one).
    "alarms_in_alarm": ("above", 1, None),
    # Logical backups, for a daily schedule: the newest verified one's age, the newest one failing its
    # verification (1), and the store's free space as a multiple of what the next backup needs.
    "backup_age_hours": ("above", 26, 50),
    "backup_verification_failed": ("above", None, 1),
    "backup_space_ratio": ("below", 2, 1),
    # Continuous archiving (point-in-time recovery): the newest base backup's age (a daily base backup), how long
    # the oldest segment waiting for the archiver has waited, and an archiver whose last attempt failed.
    "base_backup_age_hours": ("above", 26, 50),
    "archive_lag_seconds": ("above", 300, 900),
    "archive_failing": ("above", None, 1),
}
# Below this many block reads+hits the cache hit ratio says nothing yet.
MIN_BLOCK_ACCESSES = 1000


def merge_thresholds(overrides: dict | None) -> dict:
    merged = dict(DEFAULT_THRESHOLDS)
    for metric, levels in (overrides or {}).items():
        if metric not in merged:
            raise RunbookError(f"unknown threshold {metric!r}; known: {', '.join(sorted(merged))}.")
        if not isinstance(levels, dict) or set(levels) - {"warning", "critical"}:
            raise RunbookError(f"threshold {metric!r} must be a dict with 'warning' and/or 'critical'.")
        direction, warning, critical = merged[metric]
        warning = levels.get("warning", warning)
        critical = levels.get("critical", critical)
        for name, value in (("warning", warning), ("critical", critical)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                raise RunbookError(f"threshold {metric}.{name}={value!r} must be a number >= 0.")
        merged[metric] = (direction, warning, critical)
    return merged


def severity(metric: str, value, thresholds: dict) -> str:
    if value is None:
        return "ok"
    direction, warning, critical = thresholds[metric]

    def crossed(limit):
        return limit is not None and (value >= limit if direction == "above" else value < limit)

    if crossed(critical):
        return "critical"
    if crossed(warning):
        return "warning"
    return "ok"


def finding(target: str, metric: str, value, thresholds: dict, message: str) -> dict:
    return {"target": target, "check": metric, "value": value, "severity": severity(metric, value, thresholds),
            "message": message}


def worst(findings: list[dict]) -> str:
    return max((f["severity"] for f in findings), key=SEVERITIES.index, default="ok")


def postgres_findings(params: ConnParams, databases: list[str], thresholds: dict) -> list[dict]:
    """A server that cannot be reached is a critical finding, not a failure: the sweep goes on."""
    try:
        with params.connect():
            pass
    except RunbookError as exc:
        return [{"target": params.where, "check": "postgres_connect", "value": False, "severity": "critical",
                 "message": str(exc)}]
    return _postgres_findings(params, databases, thresholds)


def _postgres_findings(params: ConnParams, databases: list[str], thresholds: dict) -> list[dict]:
    where = params.where
    found = []
    with params.connect() as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        in_use = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                              ).fetchone()[0]
        found.append(finding(where, "connection_ratio", round(in_use / max_connections, 3), thresholds,
                             f"{in_use} of {max_connections} connections in use"))
        longest = conn.execute(
            "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float, "
            "(array_agg(pid ORDER BY xact_start))[1] FROM pg_stat_activity "
            "WHERE xact_start IS NOT NULL AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()
        found.append(finding(where, "longest_transaction_seconds", round(longest[0], 1), thresholds,
                             f"longest open transaction {longest[0]:.0f}s" + (f" (pid {longest[1]})" if longest[1]
                                                                              else "")))
        blocked = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
                               ).fetchone()[0]
        found.append(finding(where, "blocked_sessions", blocked, thresholds, f"{blocked} session(s) waiting on a lock"))
        for name, age in conn.execute("SELECT datname, age(datfrozenxid) FROM pg_database WHERE datallowconn "
                                      "ORDER BY 2 DESC LIMIT 1").fetchall():
            found.append(finding(where, "xid_age", age, thresholds,
                                 f"oldest unfrozen transaction id is {age:,} old (database {name}); "
                                 "wraparound comes at 2^31"))
    for database in databases:
        target = f"{where}/{database}"
        with params.connect(database) as conn:
            live, dead = conn.execute("SELECT coalesce(sum(n_live_tup), 0)::bigint, "
                                      "coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables").fetchone()
            ratio = round(dead / (live + dead), 3) if live + dead else 0.0
            found.append(finding(target, "dead_tuple_ratio", ratio, thresholds,
                                 f"{dead:,} dead of {live + dead:,} tuples"))
            hit, read = conn.execute("SELECT blks_hit, blks_read FROM pg_stat_database "
                                     "WHERE datname = current_database()").fetchone()
            hit_ratio = round(hit / (hit + read), 4) if hit + read >= MIN_BLOCK_ACCESSES else None
            found.append(finding(target, "cache_hit_ratio", hit_ratio, thresholds,
                                 f"{hit_ratio:.2%} of block reads from cache" if hit_ratio is not None
                                 else "too few block reads yet to judge the cache"))
            invalid = [r[0] for r in conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid ORDER BY 1").fetchall()]
            found.append(finding(target, "invalid_indexes", len(invalid), thresholds,
                                 "invalid indexes: " + ", ".join(invalid) if invalid else "no invalid index"))
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            found.append(finding(target, "database_size_bytes", size, thresholds, f"size {human_size(size)}"))
    return found


def backup_findings(store: LocalStore, databases: list[str], thresholds: dict, now=None) -> list[dict]:
    """Per database: how old the newest verified backup is, whether the newest backup failed its
    verification, and whether the store has room for the next one. No backup at all is critical."""
    now = now or utc_now()
    found = []
    for database in databases:
        target = store.database_dir(database)
        try:
            found += _backup_findings(store, database, target, thresholds, now)
        except (RunbookError, OSError) as exc:  # an unreadable store is a finding, not a failed sweep
            found.append({"target": target, "check": "backup_age_hours", "value": None, "severity": "critical",
                          "message": f"the backups of {database} cannot be read: {exc}"})
    return found


def _backup_findings(store: LocalStore, database: str, target: str, thresholds: dict, now) -> list[dict]:
    """Free space is judged against 1.1 x the newest backup's estimate, pg_backup's default margin."""
    found = []
    backups = store.list(database)
    verified = [b for b in backups if b.verified]
    if verified:
        newest = verified[-1]
        age = round((now - newest.finished_at).total_seconds() / 3600, 1)
        found.append(finding(target, "backup_age_hours", age, thresholds,
                             f"newest verified backup of {database} is {newest.backup_id}, {age:g} h old"))
    else:
        found.append({"target": target, "check": "backup_age_hours", "value": None, "severity": "critical",
                      "message": f"no verified backup of {database} in {store.root}"
                                 + (f" ({len(backups)} unverified)" if backups else "")
                                 + ": run playbooks/backup-db.yml (and verify-backups.yml)"})
    if backups:
        newest = backups[-1]
        failed = sorted(level for level, result in newest.verification.get("levels", {}).items()
                        if not result.get("ok"))
        found.append(finding(target, "backup_verification_failed", int(bool(failed)), thresholds,
                             f"newest backup {newest.backup_id} failed its {', '.join(failed)} verification"
                             if failed else f"newest backup {newest.backup_id} has no failed verification"))
        needed = int((newest.manifest.get("estimated_bytes") or newest.manifest["size_bytes"]) * 1.1)
        free = free_bytes(store.database_dir(database))
        found.append(finding(target, "backup_space_ratio", round(free / needed, 2) if needed else None,
                             thresholds, f"{human_size(free)} free for backups of {database}; the next one "
                                         f"needs about {human_size(needed)}"))
    return found


def redis_findings(client, target: str, thresholds: dict) -> list[dict]:
    try:
        client.ping()
    except Exception as exc:  # any connection or auth failure means the same thing at 3 a.m.
        return [{"target": target, "check": "redis_ping", "value": False, "severity": "critical",
                 "message": f"Redis does not answer PING: {exc}"}]
    memory = client.info("memory")
    stats = client.info("stats")
    used, limit = memory["used_memory"], memory.get("maxmemory", 0)
    policy = memory.get("maxmemory_policy", "noeviction")
    found = [{"target": target, "check": "redis_ping", "value": True, "severity": "ok", "message": "PONG"}]
    if limit:
        found.append(finding(target, "redis_memory_ratio", round(used / limit, 3), thresholds,
                             f"{human_size(used)} used of maxmemory {human_size(limit)} (policy {policy})"))
    else:
        found.append({"target": target, "check": "redis_memory_ratio", "value": None, "severity": "warning",
                      "message": f"{human_size(used)} used and no maxmemory set: Redis can take all the host's memory"})
    found.append(finding(target, "redis_evicted_keys", stats.get("evicted_keys", 0), thresholds,
                         f"{stats.get('evicted_keys', 0)} keys evicted since start (policy {policy})"))
    return found


def archive_findings(params: ConnParams, archive, thresholds: dict) -> list[dict]:
    """The WAL archive of the server: the archiver (behind, failing) from pg_stat_archiver, and the newest base
    backup from the archive itself. An archive that cannot be read is a critical finding."""
    from ansible_collections.runbook.recovery.plugins.module_utils.pg_archive import archiver_stats, report_summary
    from ansible_collections.runbook.recovery.plugins.module_utils.pg_pitr import server_facts

    target = f"{params.where} -> {archive.config.destination}/{archive.config.server_name}"
    found = []
    try:
        with params.connect() as conn:
            stats = archiver_stats(conn)
            facts = server_facts(conn)
            timeline = server_timeline(conn)
    except RunbookError as exc:
        return [{"target": target, "check": "archive_failing", "value": None, "severity": "critical",
                 "message": str(exc)}]
    if stats["archive_mode"] == "off":
        return [{"target": target, "check": "archive_failing", "value": 1, "severity": "critical",
                 "message": "archive_mode is off: no point-in-time recovery past the last base backup "
                            "(run setup-archiving.yml)"}]
    failing = 1 if stats["failing"] else 0
    found.append(finding(target, "archive_failing", failing, thresholds,
                         f"the archiver is failing: {stats['failed_count']} failures, the last on "
                         f"{stats['last_failed_wal']} at {stats['last_failed_time']} (last success "
                         f"{stats['last_archived_time'] or 'never'})" if failing else
                         f"archiving works ({stats['archived_count']} archived, {stats['failed_count']} failed "
                         "attempts in total)"))
    found.append(finding(target, "archive_lag_seconds", stats["lag_seconds"], thresholds,
                         f"{stats['pending_segments']} segment(s) waiting for the archiver, the oldest for "
                         f"{stats['lag_seconds']:.0f}s" if stats["pending_segments"] else "no segment waiting"))
    # Whose the archive is: another cluster's base backups and WAL recover nothing of this server.
    try:
        generation = archive.bind(facts.get("system_identifier"))
    except RunbookError as exc:
        found.append({"target": target, "check": "archive_identity", "value": None, "severity": "critical",
                      "message": f"this server cannot be recovered from its archive: {exc}"})
        return found
    found.append({"target": target, "check": "archive_identity", "value": 0, "severity": "ok",
                  "message": f"the archive under {generation['server_name']} is {generation['state']}"})
    try:
        summary = report_summary(archive.check(facts["segment_size"]))
    except RunbookError as exc:
        found.append({"target": target, "check": "base_backup_age_hours", "value": None, "severity": "critical",
                      "message": f"the archive cannot be read: {exc}"})
        return found
    age = summary["newest_backup_age_hours"]
    if age is None:
        found.append({"target": target, "check": "base_backup_age_hours", "value": None, "severity": "critical",
                      "message": "the archive holds no base backup (run base-backup.yml)"})
    else:
        found.append(finding(target, "base_backup_age_hours", age, thresholds,
                             f"newest base backup {summary['newest_backup']} is {age:.1f}h old"))
    if summary["gaps"]:
        found.append({"target": target, "check": "archive_failing", "value": 1, "severity": "critical",
                      "message": f"the WAL archive misses {', '.join(summary['gaps'][:5])}: no recovery crosses it"})
    newest = summary["backups"][-1] if summary["backups"] else None
    if newest and timeline and (newest["timeline"] > timeline or (
            newest["timeline"] < timeline and timeline not in summary["histories"])):
        found.append({"target": target, "check": "archive_identity", "value": 1, "severity": "critical",
                      "message": f"the newest base backup {newest['id']} is on timeline {newest['timeline']} and "
                                 f"the server on timeline {timeline}, with no history file in the archive linking "
                                 "them: a recovery from it cannot follow this server's history (take a base backup: "
                                 "base-backup.yml)"})
    return found


def server_timeline(conn) -> int | None:
    """The timeline the server writes (pg_control_checkpoint: readable by a role that can read the control data)."""
    try:
        return int(conn.execute("SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()").fetchone()[0])
    except DatabaseError:
        return None
