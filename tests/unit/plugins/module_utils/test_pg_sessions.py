"""Which sessions kill-long-queries leaves alone: ours (every task run's tagged sessions included), excluded users
and applications, and the server's own processes."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.pg_sessions import protected
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    APPLICATION_NAME,
    ours,
    run_application_name,
)


def session(application: str, user: str = "app", backend: str = "client backend") -> dict:
    return {"application_name": application, "usename": user, "backend_type": backend}


def test_a_task_runs_sessions_are_ours_and_named_the_same_for_every_try():
    name = run_application_name("backup_postgres/scheduled__2026-12-07/backup[0]")
    assert name == run_application_name("backup_postgres/scheduled__2026-12-07/backup[0]")
    assert name != run_application_name("backup_postgres/scheduled__2026-12-07/backup[1]")
    assert ours(name) and ours(APPLICATION_NAME) and len(name.encode()) <= 63
    assert not ours(APPLICATION_NAME + "-lookalike") and not ours("psql")


def test_ours_excluded_and_server_processes_are_protected_and_an_application_is_not():
    assert protected(session(run_application_name("a/b/c")), [], []) is not None
    assert protected(session("psql"), [], ["psql"]) is not None
    assert protected(session("psql", user="replicator"), ["replicator"], []) is not None
    assert protected(session("", backend="autovacuum worker"), [], []) is not None
    assert protected(session("chat-backend"), ["replicator"], ["psql"]) is None
