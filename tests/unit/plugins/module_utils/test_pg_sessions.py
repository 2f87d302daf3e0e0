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


def found(pid: int, backend: str, since: str, action: str = "cancel") -> dict:
    return {"pid": pid, "backend_started": backend, "since": since, "action": action, "user": "app",
            "database": "chat", "query": "SELECT pg_sleep(3600)"}


def test_a_sealed_plan_acts_only_on_the_sessions_it_found_while_each_is_the_same_one():
    from ansible_collections.runbook.recovery.plugins.module_utils.pg_sessions import planned_only

    plan = [found(10, "b1", "q1"), found(11, "b2", "q2", "terminate"), found(12, "b3", "q3")]
    now = [found(10, "b1", "q1", "terminate"),  # older now: the plan's action (what was approved) stands
           found(11, "b2", "q9"),  # the same connection runs another query since: not the one approved
           found(13, "b4", "q4")]  # past the limits since the plan: nobody approved it
    keep, gone, unplanned = planned_only(now, plan)
    assert [(s["pid"], s["action"]) for s in keep] == [(10, "cancel")]
    assert sorted(s["pid"] for s in gone) == [11, 12]
    assert [s["pid"] for s in unplanned] == [11, 13]
