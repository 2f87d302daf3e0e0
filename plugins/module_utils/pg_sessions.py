# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runaway sessions: long queries, idle transactions, blocking chains, connection use; and, when
confirmed, cancel then terminate past thresholds. Never our own session, replication, autovacuum
or an excluded user or application."""

from __future__ import annotations

import time

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, parse_duration
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams, ours

# Client backends only: autovacuum workers, WAL senders and other background processes have their own types.
_SESSIONS = """
SELECT pid, usename, application_name, datname, state, backend_type,
       extract(epoch FROM now() - query_start)::float AS query_seconds,
       extract(epoch FROM now() - xact_start)::float AS xact_seconds,
       extract(epoch FROM now() - state_change)::float AS state_seconds,
       wait_event_type, left(query, 500) AS query, pg_blocking_pids(pid) AS blocked_by,
       to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS backend_started,
       to_char(query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS query_started,
       to_char(xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS xact_started
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
"""


def sessions(conn) -> list[dict]:
    cursor = conn.execute(_SESSIONS)
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def protected(session: dict, exclude_users: list[str], exclude_applications: list[str]) -> str | None:
    if session["backend_type"] != "client backend":
        return f"a {session['backend_type']} process"
    if session["usename"] in exclude_users:
        return f"user {session['usename']} is excluded"
    if session["application_name"] in exclude_applications or ours(session["application_name"]):
        return f"application {session['application_name']!r} is excluded"
    return None


def blocking_chains(rows: list[dict]) -> list[dict]:
    """Each blocker that is not itself blocked, first, with every session waiting on it (transitively)."""
    by_pid = {r["pid"]: r for r in rows}
    waiting_on: dict[int, list[int]] = {}
    for row in rows:
        for blocker in row["blocked_by"] or []:
            waiting_on.setdefault(blocker, []).append(row["pid"])
    roots = [pid for pid in waiting_on if not (by_pid.get(pid, {}).get("blocked_by"))]
    chains = []
    for root in sorted(roots):
        seen, queue = [], list(waiting_on.get(root, []))
        while queue:
            pid = queue.pop(0)
            if pid not in seen:
                seen.append(pid)
                queue.extend(waiting_on.get(pid, []))
        blocker = by_pid.get(root, {"pid": root})
        chains.append({"blocker": {k: blocker.get(k) for k in ("pid", "usename", "application_name", "state",
                                                               "xact_seconds", "query")},
                       "waiting": [{k: by_pid[p].get(k) for k in ("pid", "usename", "query_seconds", "query")}
                                   for p in seen if p in by_pid]})
    return chains


def session_line(entry: dict) -> str:
    """One session as a person reads it in a plan: what would be done to whom, for how long, running what."""
    query = " ".join(str(entry.get("query") or "").split())
    return (f"{entry['action']:<10} pid {entry['pid']} ({entry['user']}, {entry['application'] or 'no application'}, "
            f"{entry['database']}), {entry['state']} for {entry['seconds']:g} s: {query[:200]}")


def identity(entry: dict) -> tuple:
    """What makes a planned session the same one later: its pid, when its backend started (a pid is reused by later
    connections) and when what it was found doing started (the query, or the transaction left idle): the same
    connection running another query since is not what the plan showed."""
    return entry.get("pid"), entry.get("backend_started"), entry.get("since")


def planned_only(targets: list[dict], planned: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """A sealed plan's sessions: (the ones still there as the plan found them, with the plan's action; the plan's
    that are gone or doing something else now; the ones past the limits now that the plan did not list)."""
    by_identity = {identity(entry): entry for entry in targets}
    keep, gone = [], []
    for entry in planned:
        now = by_identity.pop(identity(entry), None)
        if now is None:
            gone.append(entry)
        else:
            keep.append({**now, "action": entry.get("action", now["action"])})
    return keep, gone, list(by_identity.values())


def control(params: ConnParams, max_duration: str, idle_in_transaction: str, terminate_after: str | None,
            exclude_users: list[str], exclude_applications: list[str], databases: list[str] | None,
            confirm: bool, check_mode: bool, grace: float = 5.0, planned: list[dict] | None = None) -> dict:
    limit = parse_duration(max_duration)
    idle_limit = parse_duration(idle_in_transaction)
    hard_limit = parse_duration(terminate_after) if terminate_after else limit * 2
    if limit <= 0 or idle_limit <= 0:
        raise RunbookError("max_duration and idle_in_transaction must be positive durations like '10m'.")
    if hard_limit < limit:
        raise RunbookError(f"terminate_after ({terminate_after}) is shorter than max_duration ({max_duration}): "
                           "a query is cancelled first, then terminated if it is still running past terminate_after.")
    with params.connect() as conn:
        rows = [r for r in sessions(conn) if not databases or r["datname"] in databases]
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        in_use = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                              ).fetchone()[0]
        long_running, idle, untouchable = [], [], []
        for row in rows:
            reason = protected(row, exclude_users, exclude_applications)
            is_long = row["state"] == "active" and (row["query_seconds"] or 0) > limit
            is_idle = ((row["state"] or "").startswith("idle in transaction")
                       and (row["state_seconds"] or 0) > idle_limit)
            if not (is_long or is_idle):
                continue
            if reason:
                untouchable.append({"pid": row["pid"], "why": reason, "query": row["query"]})
                continue
            action = "terminate" if (is_idle or (row["query_seconds"] or 0) > hard_limit) else "cancel"
            entry = {"pid": row["pid"], "user": row["usename"], "application": row["application_name"],
                     "database": row["datname"], "state": row["state"], "seconds": round(
                         (row["query_seconds"] if is_long else row["state_seconds"]) or 0, 1),
                     "query": row["query"], "action": action, "backend_started": row["backend_started"],
                     "since": row["query_started"] if is_long else row["xact_started"]}
            (long_running if is_long else idle).append(entry)
        unplanned, gone = [], []
        if planned is not None:
            # A sealed plan: only the sessions it listed, each still the one it found; the rest are reported.
            kept, gone, unplanned = planned_only(long_running + idle, planned)
            long_ids = {identity(entry) for entry in long_running}
            long_running = [entry for entry in kept if identity(entry) in long_ids]
            idle = [entry for entry in kept if identity(entry) not in long_ids]
        result = {
            "changed": False,
            "not_planned": unplanned,
            "gone": [{key: entry.get(key) for key in ("pid", "user", "database", "query", "action")} for entry in gone],
            "connections": {"in_use": in_use, "max_connections": max_connections,
                            "ratio": round(in_use / max_connections, 3)},
            "long_running": long_running,
            "idle_in_transaction": idle,
            "excluded": untouchable,
            "blocking_chains": blocking_chains(rows),
            "cancelled": [], "terminated": [],
            "lines": [session_line(entry) for entry in long_running + idle]
            + [f"left alone pid {e['pid']} ({e['user']}, {e['database']}): past the limits now, not in the plan"
               for e in unplanned]
            + [f"gone      pid {e['pid']} ({e['user']}, {e['database']}): no longer as the plan found it"
               for e in gone],
        }
        targets = long_running + idle
        if not targets or check_mode or not confirm:
            result["changed"] = bool(targets) and check_mode
            return result
        for entry in targets:
            if entry["action"] != "cancel":
                continue
            if conn.execute("SELECT pg_cancel_backend(%s)", (entry["pid"],)).fetchone()[0]:
                result["cancelled"].append(entry["pid"])
                record(f"query of pid {entry['pid']} ({entry['user']}, {entry['database']}) cancelled")
        deadline = time.monotonic() + grace
        remaining = set(result["cancelled"])
        while remaining and time.monotonic() < deadline:
            time.sleep(0.2)
            still = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) AND state = 'active'",
                                 (list(remaining),)).fetchall()
            remaining = {r[0] for r in still}
        for entry in targets:
            if entry["action"] == "terminate" or entry["pid"] in remaining:
                if conn.execute("SELECT pg_terminate_backend(%s)", (entry["pid"],)).fetchone()[0]:
                    result["terminated"].append(entry["pid"])
                    record(f"session pid {entry['pid']} ({entry['user']}, {entry['database']}) terminated")
        result["changed"] = bool(result["cancelled"] or result["terminated"])
        return result
