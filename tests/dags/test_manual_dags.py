"""Every manual DAG end to end, the ones tests/dags/test_approvals.py does not run: dag.test() runs of scale,
kill_long_queries, recover_rows, rollback_deploy, lambda_env, waf_block, bootstrap_fixes and restart_app through plan
-> approval (answered over the REST API by the configured approver, as a person answers in the UI) -> apply -> verify,
against the test servers, the AWS emulator and a Docker daemon of the tests' own. What each changed is read back
independently (boto3, PostgreSQL's own views, Docker's API), never through the collection's modules. And the scheduled
DAGs test_dags.py does not run: log_retention, backup_dynamodb and lift_expired."""

from __future__ import annotations

import threading

import psycopg
from aws_world import AwsWorkspace, World, clients
from conftest import Workspace, connect, finish
from test_app_services import AppWorkspace, started  # the backend fixture: tests/integration/conftest.py
from test_bootstrap_fixes import bootstrap_toolkit, broken, snapshot  # noqa: F401 (broken: a fixture)
from test_deploy_rollback import DeployWorld


def env_of(ws) -> dict:
    return {"AIRFLOW_VAR_RUNBOOK_INVENTORY": str(ws.inventory)}


def approved(api_server, dag_id: str, conf: dict, ws, *expected: str) -> tuple[str, dict]:
    """Trigger, read the approval (it names each line of `expected`), approve, wait for the end."""
    run = api_server.run_dag("manual", dag_id, conf={"reason": f"INC-7000 {dag_id}", **conf}, env=env_of(ws),
                             background=True)
    detail = api_server.wait_for_approval_request(dag_id, run)
    for line in expected:
        assert line in detail["body"], (line, detail["body"])
    api_server.answer(detail, "Approve")
    output, result = finish(run)
    assert result and result["tasks"]["apply"] == "success", output[-6000:]
    assert result["tasks"]["verify"] == "success" and result["state"] == "success", output[-6000:]
    return output, result


def test_scale_sets_the_memory_the_approval_showed(api_server, aws_emulator, tmp_path):
    aws_emulator.clear_faults()
    world = World(dict(aws_emulator)).build(reserved=(None,), routes=False, rest_stage=False, unthrottled_stage=False,
                                            ecs_desired=None)
    name = f"{world.tag}-fn-0"
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"recommendation": {"lambda": {"names": [name]}}})
    [lam] = clients(world.env, "lambda")
    before = lam.get_function_configuration(FunctionName=name)
    assert before["MemorySize"] == 128
    timeout = before["Timeout"]
    approved(api_server, "scale", {"scale_target": "recommendation", "lambda_memory_mb": 1024}, ws,
             f"Lambda function {name}: ", "memory_mb=1024")
    configuration = lam.get_function_configuration(FunctionName=name)
    assert configuration["MemorySize"] == 1024 and configuration["Timeout"] == timeout  # only what was asked
    undo = ws.play("scale-undo.yml", confirm=True, scale_target="recommendation")
    assert undo.rc == 0, undo.output[-3000:]
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 128


def test_kill_long_queries_ends_the_runaway_query_and_leaves_the_others(api_server, pg, chat_db, tmp_path):
    ws = Workspace(pg, [chat_db], tmp_path)
    runaway = psycopg.connect(**pg.conninfo(chat_db), autocommit=True, application_name="runaway-report")
    quick = psycopg.connect(**pg.conninfo(chat_db), autocommit=True, application_name="chat-backend")
    ended = {}

    def run_the_report():
        try:
            runaway.execute("SELECT pg_sleep(600)")
        except psycopg.Error as exc:
            ended["error"] = type(exc).__name__

    thread = threading.Thread(target=run_the_report, daemon=True)
    thread.start()
    try:
        with connect(pg) as watcher:  # running for more than the 1 s limit before the plan reads it
            while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                      "'runaway-report' AND now() - query_start > interval '2 seconds'").fetchone()[0]:
                thread.join(0.2)
        approved(api_server, "kill_long_queries", {"pg_sessions_max_duration": "1s"}, ws, "runaway-report")
        thread.join(30)
        with connect(pg) as watcher:
            running = {row[0]: row[1] for row in watcher.execute(
                "SELECT application_name, state FROM pg_stat_activity WHERE datname = %s", (chat_db,))}
        assert running.get("runaway-report") in (None, "idle"), running  # its query no longer runs
        assert "error" in ended and running.get("chat-backend") == "idle", (ended, running)
        assert quick.execute("SELECT 1").fetchone() == (1,)  # the idle application session was left alone
    finally:
        runaway.close()
        quick.close()
    [record] = [r for r in ws.audit() if r["procedure"] == "kill-long-queries" and r["result"] == "acted"]
    assert [s["application"] for s in record["sessions"]] == ["runaway-report"]


def test_recover_rows_brings_back_the_deleted_messages_the_approval_counted(api_server, pg, chat_db, tmp_path):
    ws = Workspace(pg, [chat_db], tmp_path)
    assert ws.play("backup-db.yml").rc == 0
    with connect(pg, chat_db) as conn:
        every = conn.execute("SELECT id, session_id, content FROM chat_messages ORDER BY id").fetchall()
        gone = conn.execute("DELETE FROM chat_messages WHERE id % 5 = 0").rowcount
        conn.execute("INSERT INTO chat_messages (session_id, sender, content, created_at) SELECT session_id, 'user', "
                     "'later', now() FROM chat_messages LIMIT 3")
    approved(api_server, "recover_rows", {"database": chat_db, "tables": "chat_messages", "mode": "missing",
                                          "backup": "latest"}, ws,
             f"would insert {gone} of the {len(every)} rows public.chat_messages had and lacks now")
    with connect(pg, chat_db) as conn:
        now = conn.execute("SELECT id, session_id, content FROM chat_messages ORDER BY id").fetchall()
    assert [row for row in now if row[2] != "later"] == every and len(now) == len(every) + 3


def test_rollback_deploy_goes_back_one_revision_and_one_version(api_server, aws_emulator, tmp_path):
    aws_emulator.clear_faults()
    world = DeployWorld(dict(aws_emulator), tmp_path)
    app = f"{world.tag}-app"
    approved(api_server, "rollback_deploy", {"deploy_target": "release"}, world.ws,
             f"task_definition={app}:4 -> task_definition={app}:3", "version=3")
    ecs, lam = clients(world.env, "ecs", "lambda")
    [service] = ecs.describe_services(cluster=world.cluster, services=["app"])["services"]
    assert service["taskDefinition"].endswith(f":task-definition/{app}:3"), service["taskDefinition"]
    assert lam.get_alias(FunctionName=world.fn, Name="live")["FunctionVersion"] == "2"


def test_lambda_env_sets_debug_logging_the_approval_showed_and_the_expiry_dag_lifts_it(api_server, airflow,
                                                                                      aws_emulator, tmp_path):
    import time

    from test_lambda_env import make_function, variables

    aws_emulator.clear_faults()
    world = World(dict(aws_emulator))
    name = make_function(world)
    before = variables(world, name, cli=False)
    ws = AwsWorkspace(tmp_path, world.env, {})
    approved(api_server, "lambda_env", {"function": name, "debug": True, "lift_after": "3s"}, ws,
             f"{name}: would set LOG_LEVEL ('INFO' -> 'DEBUG')")
    assert variables(world, name, cli=False) == {**before, "LOG_LEVEL": "DEBUG"}  # only what was asked
    time.sleep(3)
    output, result = airflow.run_dag("scheduled", "lift_expired", env=env_of(ws))
    assert result and result["state"] == "success", output[-6000:]
    assert variables(world, name, cli=False) == before


def test_waf_block_adds_the_addresses_the_approval_showed_and_keeps_the_others(api_server, aws_emulator, tmp_path):
    from test_approval_text import waf_world
    from test_waf import BLOCKED_BEFORE, addresses

    world, ws = waf_world(aws_emulator, tmp_path)
    approved(api_server, "waf_block", {"addresses": "198.51.100.0/24, 192.0.2.1"}, ws,
             f"{world.tag}-blocked (3 addresses): would add 198.51.100.0/24, 192.0.2.1/32")
    assert addresses(world, f"{world.tag}-blocked", cli=False) == sorted(
        BLOCKED_BEFORE + ["198.51.100.0/24", "192.0.2.1/32"])
    approved(api_server, "waf_block", {"undo": True}, ws, "would remove 192.0.2.1/32, 198.51.100.0/24")
    assert addresses(world, f"{world.tag}-blocked", cli=False) == sorted(BLOCKED_BEFORE)


def test_bootstrap_fixes_fixes_what_the_approval_listed(api_server, broken):  # noqa: F811
    ws, env, tag = broken["ws"], broken["env"], broken["tag"]
    bootstrap_toolkit(env, f"{tag}-toolkit", tag[:10], 21)
    approved(api_server, "bootstrap_fixes", {}, ws, f"{tag}-rolled-back", f"{tag}-stuck", broken["table"])
    after = snapshot(broken)
    assert after["stacks"] == {f"{tag}-rolled-back": "DELETE_COMPLETE", f"{tag}-stuck": "DELETE_COMPLETE",
                               f"{tag}-healthy": "CREATE_COMPLETE", f"{tag}-toolkit": "CREATE_COMPLETE"}, after
    assert after["pitr"] == "ENABLED" and [s["Sid"] for s in after["statements"]] == ["AllowConnectInvoke"]
    assert after["alarms"] == sorted([f"{broken['function']}-errors", f"{broken['table']}-read-throttles",
                                      f"{broken['table']}-write-throttles"]), after["alarms"]


def test_restart_app_restarts_each_container_one_at_a_time_and_checks_them(api_server, tmp_path, dockerd,
                                                                           backend):  # noqa: F811
    project, containers = backend(2)
    names = [c.name for c in containers]
    ws = AppWorkspace(tmp_path, dockerd, [], app_services=[{"type": "compose", "project": project,
                                                             "service": "backend"}])
    first = {name: started(dockerd, name) for name in names}
    approved(api_server, "restart_app", {"service": "backend"}, ws,
             *(f"restarted container {name} (compose:{project}/backend)" for name in names))
    second = {name: started(dockerd, name) for name in names}
    assert all(second[name] > first[name] for name in names), (first, second)
    assert second[names[1]] > second[names[0]]  # one at a time, in the order the approval showed
    assert dockerd.running(project, "backend") == sorted(names)
    assert all(dockerd.client.containers.get(name).attrs["State"]["Health"]["Status"] == "healthy" for name in names)


def test_log_retention_gives_every_group_under_the_prefixes_its_retention(airflow, aws_emulator, tmp_path):
    aws_emulator.clear_faults()
    env = dict(aws_emulator)
    tag = "/" + tmp_path.name[-16:].replace("_", "-").strip("-") + "/"
    [logs] = clients(env, "logs")
    for name in ("api", "worker"):
        logs.create_log_group(logGroupName=f"{tag}{name}")
    logs.put_retention_policy(logGroupName=f"{tag}worker", retentionInDays=7)
    logs.create_log_group(logGroupName=f"/elsewhere{tag}api")
    ws = AwsWorkspace(tmp_path, env, {})
    ws.extra = {"log_retention_prefixes": [tag], "log_retention_days": 30}
    ws.write_inventory({})
    output, result = airflow.run_dag("scheduled", "log_retention", env=env_of(ws))
    assert result and result["state"] == "success", output[-6000:]
    groups = logs.describe_log_groups(logGroupNamePrefix=tag)["logGroups"]
    assert {g["logGroupName"]: g.get("retentionInDays") for g in groups} == {f"{tag}api": 30, f"{tag}worker": 30}
    [elsewhere] = logs.describe_log_groups(logGroupNamePrefix=f"/elsewhere{tag}")["logGroups"]
    assert "retentionInDays" not in elsewhere  # outside the prefixes: left alone


def test_backup_dynamodb_backs_up_each_table_with_pitr_on_and_skips_when_none_is_listed(airflow, aws_emulator,
                                                                                         tmp_path):
    aws_emulator.clear_faults()
    env = dict(aws_emulator)
    table = tmp_path.name[-20:].replace("_", "-").strip("-") + "-sessions"
    [ddb] = clients(env, "dynamodb")
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for i in range(12):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"session-{i}"}})
    ws = AwsWorkspace(tmp_path, env, {})
    ws.extra = {"dynamodb_tables": [table]}
    ws.write_inventory({})
    output, result = airflow.run_dag("scheduled", "backup_dynamodb", env=env_of(ws))
    assert result and result["state"] == "success" and result["tasks"]["backup"] == "success", output[-6000:]
    [backup] = ddb.list_backups(TableName=table)["BackupSummaries"]
    assert backup["BackupName"].startswith(f"{table}-") and backup["BackupStatus"] == "AVAILABLE", backup
    described = ddb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    assert described["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    ws.extra = {"dynamodb_tables": []}
    ws.write_inventory({})
    output, result = airflow.run_dag("scheduled", "backup_dynamodb", env=env_of(ws))
    assert result and result["state"] == "success" and result["tasks"]["backup"] == "skipped", output[-6000:]
    assert len(ddb.list_backups(TableName=table)["BackupSummaries"]) == 1
