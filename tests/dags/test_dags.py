"""The DAGs end to end with dag.test(), each run in its own process against real servers: a backup that is verified
and announces itself as an asset, its restore-level verification, the health sweep's report and its failure on a
critical finding, the point-in-time recovery drill's RPO and RTO as XComs, and recover_db (from a backup, and to a
point in time) behind an approval answered over the REST API - approved it restores the rows, rejected it changes
nothing. The helper's failures name the failed task, and a password never reaches the log."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from aws_world import clients
from conftest import ROOT, Workspace, connect, finish, table_held_locked
from pitr_world import archive_now, open_world, server_now, utc_iso


@pytest.fixture
def ws(pg, chat_db, redis_server, tmp_path):
    return Workspace(pg, [chat_db], tmp_path, redis_port=redis_server.port)


def inventory(ws) -> dict:
    return {"AIRFLOW_VAR_RUNBOOK_INVENTORY": str(ws.inventory)}


def asset_events(airflow, uri: str) -> int:
    with sqlite3.connect(airflow.home / "airflow.db") as db:
        return db.execute("SELECT count(*) FROM asset_event JOIN asset ON asset.id = asset_event.asset_id "
                          "WHERE asset.uri = ?", (uri,)).fetchone()[0]


def test_backup_postgres_makes_a_verified_backup_and_announces_it(airflow, ws, chat_db):
    before = asset_events(airflow, "runbook_postgres_backups")
    output, result = airflow.run_dag("scheduled", "backup_postgres", env=inventory(ws))
    assert result and result["state"] == "success", output[-6000:]
    assert result["tasks"] == {"databases": "success", "backup[0]": "success", "announce": "success"}
    [backup_id] = ws.backups(chat_db)
    manifest = json.loads((ws.backup_root / chat_db / backup_id / "manifest.json").read_text())
    assert {t["name"] for t in manifest["tables"]} >= {"users", "chat_sessions", "chat_messages"}
    results = result["xcom"]["backup[0]"]["results"]
    [made] = [r for r in results["pg_backup"] if r["task"] == "Back up each database"]
    assert made["backup"]["id"] == backup_id and made["verification"]["ok"], made
    assert asset_events(airflow, "runbook_postgres_backups") == before + 1

    output, result = airflow.run_dag("scheduled", "verify_backups", env=inventory(ws))
    assert result and result["state"] == "success", output[-6000:]
    [verified] = result["xcom"]["run"]["results"]["pg_verify_backup"]
    assert verified["ok"] and "restore" in verified["levels_run"] and verified["backup"]["id"] == backup_id


def test_health_sweep_reports_and_fails_on_a_critical_finding(airflow, ws):
    assert ws.play("backup-db.yml").rc == 0  # the sweep watches backups: none at all is critical
    output, result = airflow.run_dag("scheduled", "health_sweep", env=inventory(ws))
    assert result and result["state"] == "success", output[-6000:]
    [report] = result["xcom"]["run"]["results"]["health_report"]
    assert report["worst"] in ("ok", "warning") and report["counts"]

    # Planted: every database's transaction id age counts as critical from 1 on.
    ws.write_inventory(health_sweep_thresholds={"xid_age": {"critical": 1}})
    output, result = airflow.run_dag("scheduled", "health_sweep", env=inventory(ws))
    assert result and result["state"] == "failed" and result["tasks"]["run"] == "failed", output[-6000:]
    assert "health-sweep.yml failed:" in output and "worst finding is CRITICAL" in output


# Per worker, not per module: xdist interleaves this file's tests with others, which would tear a module fixture down.
@pytest.fixture(scope="session")
def archived(aws_emulator, tmp_path_factory):
    yield from open_world(aws_emulator, tmp_path_factory, "dagdrill")


def test_pitr_drill_restores_the_archive_and_pushes_rpo_and_rto(airflow, archived):
    with connect(archived.cluster) as conn:
        conn.execute("CREATE DATABASE drilled")
    with connect(archived.cluster, "drilled") as conn:
        conn.execute("CREATE TABLE items (n int); INSERT INTO items SELECT generate_series(1, 100)")
    # Today's base backup by its DAG (a new one whatever the age of the last), then the drill restores it.
    archived.inventory(pg_databases=["drilled"], pg_archive_base_backup_skip_if_newer_than=0)
    assert archived.workspace.play("backup-db.yml").rc == 0
    output, result = airflow.run_dag("scheduled", "base_backup_postgres", env=inventory(archived.workspace))
    assert result and result["state"] == "success", output[-6000:]
    [taken] = result["xcom"]["base_backup[0]"]["results"]["pg_base_backup"]
    assert taken["created"] and taken["newest_backup"] == taken["created"] and taken["gaps"] == []
    archive_now(archived)  # the drill replays what the archive holds: the new database must be in it

    output, result = airflow.run_dag("scheduled", "pitr_drill", env=inventory(archived.workspace))
    assert result and result["state"] == "success", output[-6000:]
    assert result["tasks"] == {"archived_hosts": "success", "drill[0]": "success"}
    assert result["xcom"]["archived_hosts"] == [{"limit": "testdb"}]
    pushed = result["pushed"]["drill[0]"]
    assert isinstance(pushed["rpo_seconds"], int | float) and 0 <= pushed["rpo_seconds"] < 600, pushed
    assert isinstance(pushed["rto_seconds"], int | float) and pushed["rto_seconds"] > 0, pushed
    [drill] = result["xcom"]["drill[0]"]["results"]["pg_pitr"]
    assert drill["rpo_seconds"] == pushed["rpo_seconds"] and drill["rto_seconds"] == pushed["rto_seconds"]
    assert drill["ok"] and drill["tables"]["databases"]["drilled"]["missing"] == []
    assert list(archived.work_dir.iterdir()) == [], "the throwaway cluster was left behind"


def test_a_failed_playbook_fails_the_task_and_alerts_the_sns_topic(airflow, pg, aws_emulator, tmp_path):
    env = dict(aws_emulator)
    [sns, sqs] = clients(env, "sns", "sqs")
    topic = sns.create_topic(Name=f"alerts-{tmp_path.name[-12:]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"pager-{tmp_path.name[-12:]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    aws_default = json.dumps({"conn_type": "aws", "login": env["AWS_ACCESS_KEY_ID"],
                              "password": env["AWS_SECRET_ACCESS_KEY"],
                              "extra": {"region_name": env["AWS_DEFAULT_REGION"],
                                        "endpoint_url": env["AWS_ENDPOINT_URL"]}})
    ws = Workspace(pg, ["no_such_database"], tmp_path)

    output, result = airflow.run_dag("scheduled", "backup_postgres", env={
        **inventory(ws), "AIRFLOW_CONN_AWS_DEFAULT": aws_default, "AIRFLOW_VAR_RUNBOOK_ALERT_TOPIC_ARN": topic})
    assert result and result["tasks"]["backup[0]"] == "failed", output[-6000:]
    assert "backup-db.yml failed: testdb: " in output and "no_such_database" in output

    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
    alerts = [json.loads(m["Body"]) for m in received]
    assert alerts and all(a["dag_id"] == "backup_postgres" and a["task_id"] == "backup" for a in alerts), received
    assert "no_such_database" in alerts[-1]["error"]


def test_a_hung_backup_times_out_and_is_killed_with_its_process_tree(airflow, pg, chat_db, tmp_path):
    """A migration holds a table: the backup waits on its lock, longer than the host's airflow_execution_timeout.
    Each try times out and is killed with what it started (on_kill), its sessions ending on the server with it: no
    try's session outlives it into the next, the run ends failed instead of blocking the next run, and no
    half-written backup is listed."""
    ws = Workspace(pg, [chat_db], tmp_path)
    ws.write_inventory(airflow_execution_timeout="5s")
    sessions = []  # the backup's sessions on the database, seen twice a second while the run lasts
    with table_held_locked(pg, chat_db, "chat_messages") as waiting_sessions:
        proc = airflow.run_dag("scheduled", "backup_postgres", env=inventory(ws), background=True)
        while proc.poll() is None:
            sessions.append(waiting_sessions())
            time.sleep(0.5)
        output, result = finish(proc)
        # The last try's session ends on the server once it notices the lost client (client_connection_check_
        # interval, 2 s): waited for, with a deadline. Each retry ended its earlier try's session before it
        # opened its own, so no two tries' sessions were ever there at once.
        deadline = time.monotonic() + 15
        while (left := waiting_sessions()) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert result and result["tasks"]["backup[0]"] == "failed", output[-6000:]
    assert result["state"] == "failed"
    assert output.count("AirflowTaskTimeout") >= 3, output[-6000:]  # each of the three tries timed out
    assert 1 in sessions and max(sessions) == 1 and left == 0, sessions
    assert ws.backups(chat_db) == []


def test_postgres_credentials_come_from_the_connection_and_never_reach_the_log(airflow, pg, chat_db, tmp_path):
    ws = Workspace(pg, [chat_db], tmp_path)
    # The inventory knows where the server is but not its password: only the Airflow connection does.
    ws.write_inventory(pg_connection={"login_host": "127.0.0.1", "login_port": pg.port, "login_user": "postgres"})
    connection = json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": pg.port, "login": "postgres",
                             "password": pg.password})
    output, result = airflow.run_dag("scheduled", "backup_postgres",
                                     env={**inventory(ws), "AIRFLOW_CONN_RUNBOOK_POSTGRES": connection})
    assert result and result["state"] == "success", output[-6000:]
    assert len(ws.backups(chat_db)) == 1
    assert pg.password not in output
    logs = [p.read_text(errors="replace") for p in (airflow.home / "logs").rglob("*") if p.is_file()]
    assert not any(pg.password in text for text in logs)


# recover_db's approval, approved and rejected, is tested in the real UI with a real scheduler (tests/ui/); here,
# the point-in-time DAG's approval is answered over the REST API.
def test_recover_db_to_a_point_in_time_from_the_form(api_server, archived):
    with connect(archived.cluster) as conn:
        conn.execute("CREATE DATABASE timed")
    with connect(archived.cluster, "timed") as conn:
        conn.execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
    time.sleep(1.1)
    moment = server_now(archived)
    time.sleep(1.1)
    with connect(archived.cluster, "timed") as conn:
        conn.execute("DELETE FROM notes")
        conn.execute("INSERT INTO notes VALUES ('written after the target')")
    archived.inventory(pg_databases=["timed"])

    conf = {"database": "timed", "scope": "database", "target_time": utc_iso(moment), "target_lsn": "",
            "target_name": "", "reason": "INC-4712 notes deleted"}
    run = api_server.run_dag("manual", "recover_db_to_a_point_in_time", conf=conf, env=inventory(archived.workspace),
                             background=True)
    detail = api_server.wait_for_approval_request("recover_db_to_a_point_in_time", run)
    assert "would restore base backup" in detail["body"] and "INC-4712 notes deleted" in detail["body"]
    api_server.answer(detail, "Approve")
    output, result = finish(run)
    assert result and result["state"] == "success", output[-6000:]
    assert result["tasks"] == {"plan": "success", "approve": "success", "approve_2": "success", "apply": "success",
                              "verify": "success"}
    with connect(archived.cluster, "timed") as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]
    [record] = [r for r in archived.workspace.audit() if r.get("result") == "recovered"]
    assert record["target"] == f"time {utc_iso(moment)}" and "via Airflow" in record["actor"]


def test_a_variable_that_cannot_be_read_fails_the_task_instead_of_falling_back(airflow, ws, chat_db):
    """A secrets backend refuses runbook_inventory (a vault's permission error): the task fails naming the Variable,
    and no playbook runs against the default inventory (the sandbox's) in its place."""
    env = {**inventory(ws), "AIRFLOW__SECRETS__BACKEND": "denying_secrets.DenyingBackend",
           "PYTHONPATH": str(ROOT / "tests" / "dags")}
    output, result = airflow.run_dag("scheduled", "backup_postgres", env=env)
    assert result and result["state"] == "failed", output[-6000:]
    assert result["tasks"]["databases"] == "failed", result
    assert "the Airflow Variable runbook_inventory could not be read" in output, output[-6000:]
    assert "PLAY [" not in output and ws.backups(chat_db) == []


def test_pg_maintenance_vacuums_the_table_that_needs_it_and_pg_integrity_checks_every_index(airflow, ws, pg, chat_db):
    """The two weekly PostgreSQL DAGs, read back through PostgreSQL's own views: the maintenance VACUUMs the table
    that half a day of deletes left with dead rows (last_vacuum: a manual VACUUM, never autovacuum's), and the
    integrity check installs amcheck and checks every B-tree index the database has."""
    with connect(pg, chat_db) as conn:
        conn.execute("ALTER TABLE chat_messages SET (autovacuum_enabled = false)")
        conn.execute("DELETE FROM chat_messages WHERE id % 2 = 0")
        conn.execute("SELECT pg_stat_force_next_flush()")
        assert conn.execute("SELECT n_dead_tup, last_vacuum FROM pg_stat_user_tables "
                            "WHERE relname = 'chat_messages'").fetchone()[1] is None
    output, result = airflow.run_dag("scheduled", "pg_maintenance", env=inventory(ws))
    assert result and result["state"] == "success", output[-6000:]
    with connect(pg, chat_db) as conn:
        dead, vacuumed = conn.execute("SELECT n_dead_tup, last_vacuum IS NOT NULL FROM pg_stat_user_tables "
                                      "WHERE relname = 'chat_messages'").fetchone()
        # Every B-tree index outside the catalog: the tables' and their TOAST tables' (the catalog's TOAST too).
        indexes = conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                               "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE a.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                               "AND n.nspname NOT LIKE 'pg\\_temp%'").fetchone()[0]
    assert vacuumed and dead == 0, (dead, vacuumed)

    output, result = airflow.run_dag("scheduled", "pg_integrity", env=inventory(ws))
    assert result and result["state"] == "success", output[-6000:]
    with connect(pg, chat_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'").fetchone()[0] == 1
    [checked] = result["xcom"]["run"]["results"]["pg_integrity"]
    assert checked["corrupt"] == [] and checked["checked"]["indexes"] == indexes, checked
