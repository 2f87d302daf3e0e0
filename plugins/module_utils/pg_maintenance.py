# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VACUUM/ANALYZE by need: tables chosen from pg_stat_user_tables with autovacuum's own arithmetic,
each statement run outside a transaction under lock_timeout, so the application is never blocked."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, parse_duration
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams, psycopg, sql


@dataclass
class Thresholds:
    vacuum_threshold: int = 50
    vacuum_scale_factor: float = 0.2
    analyze_threshold: int = 50
    analyze_scale_factor: float = 0.1
    freeze_age: int = 150_000_000

    def validate(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise RunbookError(f"{name}={value} is negative: thresholds are 0 or more.")


def decide(stats: dict, limits: Thresholds) -> list[str]:
    """Why a table needs work, in autovacuum's terms; empty when it does not.

    stats: reltuples, n_dead_tup, n_mod_since_analyze, xid_age.
    """
    reltuples = max(stats["reltuples"], 0)
    reasons = []
    if stats["n_dead_tup"] > limits.vacuum_threshold + limits.vacuum_scale_factor * reltuples:
        reasons.append("dead_tuples")
    if stats["xid_age"] > limits.freeze_age:
        reasons.append("xid_age")
    if stats["n_mod_since_analyze"] > limits.analyze_threshold + limits.analyze_scale_factor * reltuples:
        reasons.append("modified_since_analyze")
    return reasons


def statement_for(reasons: list[str], parallel: int | None, schema: str, table: str):
    """VACUUM (ANALYZE) when dead tuples or xid age call for it, ANALYZE alone for changed statistics."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if "dead_tuples" in reasons or "xid_age" in reasons or "all" in reasons:
        options = [sql.SQL("ANALYZE")]
        if "xid_age" in reasons:
            options.append(sql.SQL("FREEZE"))
        if parallel:
            options.append(sql.SQL("PARALLEL {}").format(sql.Literal(parallel)))
        return sql.SQL("VACUUM ({}) {}").format(sql.SQL(", ").join(options), target)
    return sql.SQL("ANALYZE {}").format(target)


_STATS = """
SELECT s.schemaname, s.relname, c.reltuples::bigint, s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
       age(c.relfrozenxid)
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
ORDER BY s.schemaname, s.relname
"""


def table_stats(conn) -> dict[tuple[str, str], dict]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return {(r[0], r[1]): {"reltuples": r[2], "n_live_tup": r[3], "n_dead_tup": r[4], "n_mod_since_analyze": r[5],
                           "xid_age": r[6]} for r in conn.execute(_STATS).fetchall()}


def maintain(params: ConnParams, database: str, mode: str, limits: Thresholds, lock_timeout: str,
             parallel: int | None, check_mode: bool) -> dict:
    limits.validate()
    lock_ms = int(parse_duration(lock_timeout) * 1000)
    if parallel is not None and parallel < 0:
        raise RunbookError(f"parallel={parallel} is negative: use 0 (no parallel workers) or more.")
    with params.connect(database) as conn:
        before = table_stats(conn)
        chosen = []
        for (schema, table), stats in before.items():
            reasons = ["all"] if mode == "all" else decide(stats, limits)
            if reasons:
                query = statement_for(reasons, parallel, schema, table)
                chosen.append({"schema": schema, "table": table, "reasons": reasons,
                               "statement": query.as_string(conn), "dead_tuples_before": stats["n_dead_tup"]})
        result = {"changed": bool(chosen), "database": database, "tables": chosen, "skipped": []}
        if check_mode:
            return result
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(lock_ms)))
        done = []
        for item in chosen:
            started = time.monotonic()
            try:
                conn.execute(item["statement"])
            except psycopg.errors.LockNotAvailable:
                item["skip_reason"] = f"could not lock it within lock_timeout={lock_timeout}; the application holds it"
                result["skipped"].append(item)
                continue
            item["seconds"] = round(time.monotonic() - started, 3)
            done.append(item)
            record(f"{item['statement']} in {database} done")
        time.sleep(0.1)  # VACUUM reports its counts to the statistics system as it ends
        after = table_stats(conn)
    for item in done:
        item["dead_tuples_after"] = after[(item["schema"], item["table"])]["n_dead_tup"]
    result["tables"] = done
    result["changed"] = bool(done)
    return result
