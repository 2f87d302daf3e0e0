# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""amcheck over every table (verify_heapam) and B-tree index (bt_index_check), and the repair of
indexes left INVALID by a failed CREATE INDEX CONCURRENTLY."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams, psycopg, sql

_TABLES = """
SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 't') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_temp%%' AND c.relpersistence <> 't'
ORDER BY 2
"""
_BTREES = """
SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_temp%%'
ORDER BY 2
"""
_INVALID = """
SELECT n.nspname, c.relname, t.relname, pg_get_indexdef(c.oid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid ORDER BY 1, 2
"""


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def check_database(params: ConnParams, database: str, heapallindexed: bool, check_heap: bool,
                   create_extension: bool, check_mode: bool) -> dict:
    result = {"changed": False, "database": database, "corrupt": [], "checked": {"tables": 0, "indexes": 0}}
    with params.connect(database) as conn:
        schema = _amcheck_schema(conn)
        if schema is None:
            if not create_extension:
                result["msg"] = "the amcheck extension is not installed in this database (create_extension=false)"
                result["skipped"] = True
                return result
            result["changed"] = True
            if check_mode:
                result["msg"] = "would create the amcheck extension, then check"
                result["skipped"] = True
                return result
            conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA public")
            schema = _amcheck_schema(conn)
        # Each call names the extension's own function, schema and argument types included: a function of the
        # same name a database owner made elsewhere is never the one run (as the superuser who checks).
        heap = sql.SQL("SELECT blkno, offnum, msg FROM {}.verify_heapam(%s::pg_catalog.regclass) LIMIT 5").format(
            sql.Identifier(schema))
        btree = sql.SQL("SELECT {}.bt_index_check(%s::pg_catalog.regclass, %s::pg_catalog.bool)").format(
            sql.Identifier(schema))
        if check_heap:
            for oid, table in conn.execute(_TABLES).fetchall():
                result["checked"]["tables"] += 1
                try:
                    rows = conn.execute(heap, (oid,)).fetchall()
                except psycopg.Error as exc:
                    rows = [(None, None, _one_line(exc))]
                if rows:
                    result["corrupt"].append({"relation": table, "kind": "table", "messages": [
                        (f"block {b} offset {o}: {m}" if b is not None else m) for b, o, m in rows]})
        for oid, index in conn.execute(_BTREES).fetchall():
            result["checked"]["indexes"] += 1
            try:
                conn.execute(btree, (oid, heapallindexed))
            except psycopg.Error as exc:
                result["corrupt"].append({"relation": index, "kind": "btree index", "messages": [_one_line(exc)]})
    return result


def _amcheck_schema(conn) -> str | None:
    row = conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                       "WHERE e.extname = 'amcheck'").fetchone()
    return row[0] if row else None


def invalid_indexes(conn) -> list[dict]:
    return [{"schema": s, "index": i, "table": t, "definition": d} for s, i, t, d in conn.execute(_INVALID).fetchall()]


def repair_invalid_indexes(params: ConnParams, database: str, check_mode: bool) -> dict:
    """REINDEX CONCURRENTLY each invalid index: the table stays writable while it is rebuilt."""
    with params.connect(database) as conn:
        found = invalid_indexes(conn)
        result = {"changed": bool(found), "database": database, "invalid": found, "rebuilt": [], "failed": []}
        if check_mode:
            return result
        for index in found:
            statement = sql.SQL("REINDEX INDEX CONCURRENTLY {}.{}").format(sql.Identifier(index["schema"]),
                                                                           sql.Identifier(index["index"]))
            before = {(i["schema"], i["index"]) for i in invalid_indexes(conn)}
            try:
                conn.execute(statement)
                result["rebuilt"].append(f"{index['schema']}.{index['index']}")
                record(f"index {index['schema']}.{index['index']} of {database} rebuilt")
            except psycopg.Error as exc:
                result["failed"].append({"index": f"{index['schema']}.{index['index']}", "error": _one_line(exc),
                                         "dropped_leftovers": _drop_new_copies(conn, index, before)})
        result["changed"] = bool(result["rebuilt"])
    return result


def _drop_new_copies(conn, index: dict, before: set) -> list[str]:
    """A REINDEX CONCURRENTLY that fails leaves the copy it was building behind, invalid (<index>_ccnew): it is
    dropped, so a failed rebuild leaves the database as it found it, and the next run does not take it for one more
    invalid index to rebuild."""
    dropped = []
    for leftover in invalid_indexes(conn):
        key = (leftover["schema"], leftover["index"])
        if key not in before and leftover["table"] == index["table"] and \
                leftover["index"].startswith(index["index"][:59] + "_ccnew"):
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(*map(sql.Identifier, key)))
            dropped.append(f"{key[0]}.{key[1]}")
    return dropped
