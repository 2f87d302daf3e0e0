"""The DAGs on the CeleryExecutor over a fleet (issue 15), driven through the REST API as the UI drives it: the daily
backup of 30 databases on 3 servers spread over both workers within each server's pool, then verified on the asset
event; a worker killed mid-run (its tasks retried on the other, nothing half-written listed, no pg_dump left); the
health sweep with a server down; recover_db approved and applied on a worker; a queue nobody serves and a pool of
no slot refused by the DAG's setup task. The tests run in this order, on the one cluster of conftest.py."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore
from sandbox.airflow_cluster import APPROVER, process_tree
from sandbox.pgcluster import process_alive

POOL_SLOTS = 2  # airflow_pool_slots of every server (sandbox.FLEET_POOL_SLOTS)


def ended(cluster, dag_id: str, run_id: str, timeout: float = 900) -> tuple[dict, dict[tuple, dict]]:
    run = cluster.wait_run(dag_id, run_id, timeout=timeout)
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in cluster.task_instances(dag_id, run_id)}
    return run, tis


def states(tis: dict) -> dict:
    return {key: ti["state"] for key, ti in tis.items() if ti["state"] != "success"}


def most_at_once(tis) -> dict[str, int]:
    """{pool: the most task instances of it running at one moment}, from their start and end times."""
    events = []
    for ti in tis:
        events += [(datetime.fromisoformat(ti["start_date"]), 1, ti["pool"]),
                   (datetime.fromisoformat(ti["end_date"]), -1, ti["pool"])]
    now, most = {}, {}
    for _, step, pool in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        now[pool] = now.get(pool, 0) + step
        most[pool] = max(most.get(pool, 0), now[pool])
    return most


def complete_backups(fleet) -> dict[str, list[str]]:
    """{database: ids of its backups}, as the modules list them (a directory without a manifest is none)."""
    return {db: [b.backup_id for b in LocalStore(str(fleet.backup_root(host))).list(db)]
            for db, host in fleet.databases().items()}


def test_backup_postgres_over_the_fleet_within_each_servers_pool(cluster, fleet):
    cluster.call("PATCH", "/dags/verify_backups", {"is_paused": False})
    run_id = cluster.trigger("backup_postgres")
    run, tis = ended(cluster, "backup_postgres", run_id)
    assert run["state"] == "success", states(tis)
    backups = [ti for (task, _), ti in tis.items() if task == "backup"]
    databases = fleet.databases()
    assert len(backups) == len(databases) >= 30 and all(ti["state"] == "success" for ti in backups), states(tis)
    # Each database's task ran in its server's pool, on its zone's queue, on both workers between them.
    assert {ti["rendered_map_index"]: ti["pool"] for ti in backups} == {
        db: f"postgres_{host}" for db, host in databases.items()}
    assert {ti["queue"] for ti in backups if ti["pool"] == "postgres_fleet-pg3"} == {"zone-b"}
    assert {ti["hostname"] for ti in backups if ti["queue"] == "zone-b"} == {"worker-2"}
    assert {ti["hostname"] for ti in backups} == {"worker-1", "worker-2"}
    assert max(most_at_once(backups).values()) <= POOL_SLOTS, most_at_once(backups)
    pools = {pool["name"]: pool["slots"] for pool in cluster.call("GET", "/pools")["pools"]}
    assert all(pools[f"postgres_fleet-pg{n}"] == POOL_SLOTS for n in range(1, len(fleet.servers) + 1)), pools

    # One new backup of every database, verified (checksum) as it was written.
    made = complete_backups(fleet)
    assert all(len(ids) == 1 for ids in made.values()), made
    for db, host in databases.items():
        verification = json.loads((fleet.backup_root(host) / db / made[db][0] / "verification.json").read_text())
        assert verification["levels"]["checksum"]["ok"], (db, verification)

    # The backups' asset event started verify_backups: restore-level verification of every newest backup.
    deadline = time.monotonic() + 600
    while not (verify_runs := cluster.call("GET", "/dags/verify_backups/dagRuns?order_by=start_date")["dag_runs"]):
        assert time.monotonic() < deadline, "verify_backups never started after the backups' asset events"
        time.sleep(3)
    first = verify_runs[0]
    assert first["run_type"] == "asset_triggered"
    cluster.call("PATCH", "/dags/verify_backups", {"is_paused": True})  # later backups' events: no more runs
    verified, verify_tis = ended(cluster, "verify_backups", first["dag_run_id"])
    assert verified["state"] == "success", states(verify_tis)
    result = cluster.call("GET", f"{cluster.run_path('verify_backups', first['dag_run_id'])}/taskInstances/run/"
                                 "xcomEntries/return_value")["value"]
    result = json.loads(result) if isinstance(result, str) else result
    checked = {row["backup"]["database"] for row in result["results"]["pg_verify_backup"]
               if row["ok"] and "restore" in row["levels_run"]}
    assert checked == set(databases)


def kill_machine(root: int) -> None:
    """A worker machine dies: every process of the worker's tree, stopped first so none starts another, then
    SIGKILL (the playbooks and their pg_dump run in sessions of their own, but below the worker)."""
    tree = [root, *process_tree(root)]
    for pid in tree:
        _kill(pid, signal.SIGSTOP)
    tree += [pid for pid in process_tree(root) if pid not in tree]
    for pid in tree:
        _kill(pid, signal.SIGKILL)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def test_a_worker_killed_mid_run_its_tasks_retried_on_the_other(cluster, fleet):
    before = complete_backups(fleet)
    run_id = cluster.trigger("backup_postgres")
    deadline = time.monotonic() + 300
    while True:
        running = [ti for ti in cluster.task_instances("backup_postgres", run_id)
                   if ti["task_id"] == "backup" and ti["state"] == "running" and ti["hostname"] == "worker-1"]
        if running:
            break
        assert time.monotonic() < deadline, "worker-1 never ran a backup"
        time.sleep(0.5)
    kill_machine(cluster.pid("worker-1"))
    try:
        run, tis = ended(cluster, "backup_postgres", run_id)
        assert run["state"] == "success", states(tis)
        for ti in running:
            retried = tis[("backup", ti["map_index"])]
            assert retried["state"] == "success" and retried["try_number"] > 1, retried
            assert retried["hostname"] == "worker-2", retried
        # Every database has one more complete backup; what the killed dumps left is not listed as one.
        after = complete_backups(fleet)
        assert all(len(after[db]) == len(before[db]) + 1 for db in before), (before, after)
        # No pg_dump left, on this machine or as a session on any server.
        assert not [pid for pid in cluster.marked_processes() if process_alive(pid) and
                    b"pg_dump" in open(f"/proc/{pid}/cmdline", "rb").read()]
        for server in fleet.servers:
            with psycopg.connect(**server.conninfo(), autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE application_name = 'pg_dump'").fetchone()[0] == 0
    finally:
        cluster.up()  # worker-1 back for the tests after this one


def test_health_sweep_reports_a_stopped_server_and_checks_the_others(cluster, fleet):
    stopped = fleet.servers[2]
    stopped.stop()
    try:
        run_id = cluster.trigger("health_sweep")
        run, tis = ended(cluster, "health_sweep", run_id)
    finally:
        stopped.start()
    assert run["state"] == "failed" and tis[("run", -1)]["state"] == "failed"  # a critical finding fails it
    log = cluster.task_log("health_sweep", run_id, "run", tis[("run", -1)]["try_number"])
    report = re.search(r"report: (/\S+/health-\S+?\.json)", log)
    assert report, log[-3000:]
    findings = json.loads(Path(report[1]).read_text())["findings"]
    down = f"127.0.0.1:{stopped.port}"
    assert [f["severity"] for f in findings if f["target"] == down and f["check"] == "postgres_connect"] == [
        "critical"]
    for server in fleet.servers[:2]:
        checked = {f["check"] for f in findings if f["target"].startswith(f"127.0.0.1:{server.port}")}
        assert "connection_ratio" in checked and "dead_tuple_ratio" in checked, checked


def test_recover_db_approved_over_rest_applies_on_a_worker_and_records_who_and_why(cluster, fleet):
    database = "s2_db03"
    with psycopg.connect(**fleet.servers[1].conninfo(database), autocommit=True) as conn:
        conn.execute("DELETE FROM chat_messages")  # the incident
    reason = "cluster test: chat_messages emptied by a bad deploy"
    run_id = cluster.trigger("recover_db", {"database": database, "backup": "latest", "reason": reason})
    deadline = time.monotonic() + 600
    while not (pending := [detail for detail in cluster.call(
            "GET", "/dags/recover_db/dagRuns/~/hitlDetails?response_received=false")["hitl_details"]
            if detail["task_instance"]["dag_run_id"] == run_id]):
        assert cluster.call("GET", cluster.run_path("recover_db", run_id))["state"] in ("queued", "running")
        assert time.monotonic() < deadline, "recover_db never asked for an approval"
        time.sleep(2)
    ti = pending[0]["task_instance"]
    answer = f"{cluster.run_path('recover_db', run_id)}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
    # Four eyes: the admin who triggered the run may not approve it; the approver may.
    with pytest.raises(RuntimeError, match="HTTP 403"):
        cluster.call("PATCH", answer, {"chosen_options": ["Approve"], "params_input": {}})
    cluster.call("PATCH", answer, {"chosen_options": ["Approve"], "params_input": {}},
                 cluster.token(user=APPROVER))
    run, tis = ended(cluster, "recover_db", run_id)
    assert run["state"] == "success", states(tis)
    assert tis[("apply", -1)]["hostname"] in ("worker-1", "worker-2")
    with psycopg.connect(**fleet.servers[1].conninfo(database), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0] > 0
    records = [json.loads(line) for line in (fleet.workdir / "audit.jsonl").read_text().splitlines()]
    [applied] = [r for r in records if r.get("result") == "recovered" and r.get("database") == database]
    assert applied["reason"] == reason
    assert applied["actor"].startswith("admin via Airflow recover_db/"), applied["actor"]
    assert applied["requester"] == "admin" and applied["approvers"] == [APPROVER], applied


@pytest.mark.parametrize("host_vars, says", [
    ({"airflow_queue": "zone-c"}, "No Celery worker consumes queue 'zone-c'"),
    ({"airflow_pool_slots": 0}, "airflow_pool_slots of fleet-pg1 is 0: a pool needs at least 1 slot"),
], ids=["queue-no-worker-serves", "pool-of-no-slot"])
def test_bad_fleet_inventory_is_refused_by_the_setup_task(cluster, fleet, host_vars, says):
    inventory = fleet.write(fleet.workdir / f"bad-{next(iter(host_vars))}.yml", **host_vars)
    cluster.set_variable("runbook_inventory", str(inventory))
    try:
        run_id = cluster.trigger("backup_postgres")
        run, tis = ended(cluster, "backup_postgres", run_id, timeout=300)
    finally:
        cluster.call("DELETE", "/variables/runbook_inventory")
    assert run["state"] == "failed"
    assert tis[("databases", -1)]["state"] == "failed"
    assert not [ti for ti in tis.values() if ti["task_id"] == "backup" and ti["state"] not in (None, "upstream_failed")]
    log = cluster.task_log("backup_postgres", run_id, "databases", tis[("databases", -1)]["try_number"])
    assert says in log, log[-3000:]
