"""What an approver reads: for each manual DAG, its plan task (the real PlaybookOperator, a real check-mode run of the
playbook against the test servers and the AWS emulator) turned into the approval's text names each resource and its
change, in words: no JSON, the digest at the end.

Not here: restart_app (its containers need a Docker daemon: the approval of a rolling restart is read in
tests/integration/test_app_services.py's plan) and recover_db_to_a_point_in_time (tests/dags/test_dags.py reads its
approval over the REST API)."""

from __future__ import annotations

import datetime
import sys
import time

import psycopg
import pytest
from aws_world import AwsWorkspace, World
from conftest import ROOT, Workspace
from test_bootstrap_fixes import broken  # noqa: F401 (a fixture)
from test_deploy_rollback import DeployWorld
from test_terraform_unlock import KEY, Backend, lock_info

sys.path.insert(0, str(ROOT / "dags"))


def approval_of(monkeypatch, inventory, playbook: str, extravars: dict) -> str:
    from runbook_airflow import PlaybookOperator
    from runbook_approval import approval_text, digest

    monkeypatch.setenv("RUNBOOK_INVENTORY", str(inventory))
    plan = PlaybookOperator(task_id="plan", playbook=playbook, extravars=extravars, check=True).execute({})
    plan["planned_at"] = datetime.datetime.now(datetime.UTC).isoformat()
    text = approval_text(plan, who_asked="rita", reason="INC-6000", permitted={"alice"}, required=1, stage=1,
                         earlier=[])
    assert '{"' not in text and f"Plan digest: `{digest(plan)}`" in text, text
    return text


@pytest.fixture
def aws_world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator)).build(reserved=(7, None), routes=False, unthrottled_stage=False)


def test_recover_db(monkeypatch, pg, chat_db, tmp_path):
    ws = Workspace(pg, [chat_db], tmp_path)
    assert ws.play("backup-db.yml").rc == 0
    [backup_id] = ws.backups(chat_db)
    text = approval_of(monkeypatch, ws.inventory, "recover-db.yml", {"database": chat_db, "backup": "latest"})
    assert backup_id in text and chat_db in text, text


def test_recover_rows(monkeypatch, pg, chat_db, tmp_path):
    ws = Workspace(pg, [chat_db], tmp_path)
    assert ws.play("backup-db.yml").rc == 0
    [backup_id] = ws.backups(chat_db)
    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", password=pg.password, dbname=chat_db,
                         autocommit=True) as conn:
        gone = conn.execute("DELETE FROM chat_messages WHERE id % 4 = 0").rowcount
    text = approval_of(monkeypatch, ws.inventory, "recover-rows.yml", {
        "database": chat_db, "tables": "chat_messages", "mode": "missing", "backup": "latest"})
    assert f"logical backup {backup_id}" in text and f"would insert {gone} of the" in text, text
    assert "rows public.chat_messages had and lacks now" in text, text


def test_emergency_shutdown_and_resume(monkeypatch, aws_world, tmp_path):
    t = aws_world.tag
    ws = AwsWorkspace(tmp_path, aws_world.env, {"incident": aws_world.scope()})
    text = approval_of(monkeypatch, ws.inventory, "emergency-shutdown.yml", {"shutdown_scope": "incident"})
    for line in (f"Lambda function {t}-fn-0: reserved_concurrency=7 -> reserved_concurrency=0",
                 f"Lambda function {t}-fn-1: reserved_concurrency=None -> reserved_concurrency=0",
                 f"{t}-ws/prod", f"{t}-rest/prod", "backend"):
        assert line in text.replace("not set", "None"), (line, text)
    assert ws.play("emergency-shutdown.yml", confirm=True, shutdown_scope="incident").rc == 0
    text = approval_of(monkeypatch, ws.inventory, "emergency-resume.yml", {"shutdown_scope": "incident"})
    assert f"Lambda function {t}-fn-0: reserved_concurrency=0 -> reserved_concurrency=7" in text, text


def test_scale(monkeypatch, aws_world, tmp_path):
    name = f"{aws_world.tag}-fn-0"
    ws = AwsWorkspace(tmp_path, aws_world.env, {}, targets={"recommendation": {"lambda": {"names": [name]}}})
    text = approval_of(monkeypatch, ws.inventory, "scale.yml", {"scale_target": "recommendation",
                                                                "lambda_memory_mb": 1024})
    assert f"Lambda function {name}: " in text and "memory_mb=128" in text and "memory_mb=1024" in text, text


def test_terraform_unlock(monkeypatch, aws_emulator, tmp_path):
    aws_emulator.clear_faults()
    backend = Backend(dict(aws_emulator))
    info = lock_info(backend.bucket, datetime.timedelta(hours=3))
    backend.lock_dynamodb(info)
    ws = AwsWorkspace(tmp_path, backend.env, {})
    text = approval_of(monkeypatch, ws.inventory, "terraform-unlock.yml",
                       {"lock_path": f"{backend.bucket}/{KEY}", "lock_table": backend.table, "lock_id": info["ID"],
                        "min_age": "1h"})
    assert f"held by alice@ci-runner-7 (ID {info['ID']}" in text and backend.table in text, text


def test_rollback_deploy(monkeypatch, aws_emulator, tmp_path):
    aws_emulator.clear_faults()
    world = DeployWorld(dict(aws_emulator), tmp_path)
    app = f"{world.tag}-app"
    text = approval_of(monkeypatch, world.ws.inventory, "rollback-deploy.yml", {"deploy_target": "release"})
    assert f"task_definition={app}:4 -> task_definition={app}:3" in text and "version=3" in text, text


def test_lambda_env(monkeypatch, aws_emulator, tmp_path):
    from test_lambda_env import SECRET, make_function

    aws_emulator.clear_faults()
    world = World(dict(aws_emulator))
    name = make_function(world)
    ws = AwsWorkspace(tmp_path, world.env, {})
    text = approval_of(monkeypatch, ws.inventory, "lambda-env.yml",
                       {"function": name, "debug": True, "variables": {"DB_PASSWORD": "new-one"}, "for": "30m"})
    assert f"- {name}: " in text and "would set LOG_LEVEL ('INFO' -> 'DEBUG')" in text, text
    assert "would set DB_PASSWORD (set (20 characters) -> set (7 characters))" in text and "lifted at" in text, text
    assert SECRET not in text and "new-one" not in text, text


def waf_world(aws_emulator, tmp_path) -> tuple[World, AwsWorkspace]:
    from test_waf import BLOCKED_BEFORE, clients

    aws_emulator.clear_faults()
    world = World(dict(aws_emulator))
    [waf] = clients(world.env, "wafv2")
    for name, addresses in ((f"{world.tag}-blocked", BLOCKED_BEFORE), (f"{world.tag}-allowed", ["203.0.113.0/24"])):
        waf.create_ip_set(Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=addresses)
    ws = AwsWorkspace(tmp_path, world.env, {})
    ws.extra = {"waf_block_ip_set": f"{world.tag}-blocked", "waf_allow_ip_set": f"{world.tag}-allowed"}
    ws.write_inventory({})
    return world, ws


def test_waf_block(monkeypatch, aws_emulator, tmp_path):
    world, ws = waf_world(aws_emulator, tmp_path)
    text = approval_of(monkeypatch, ws.inventory, "waf-block.yml",
                       {"addresses": "198.51.100.0/24 192.0.2.1", "block_for": "24h", "ip_set": ""})
    assert f"{world.tag}-blocked (3 addresses): would add 198.51.100.0/24, 192.0.2.1/32 until " in text, text
    assert "every other address kept" in text, text


def test_waf_allow(monkeypatch, aws_emulator, tmp_path):
    world, ws = waf_world(aws_emulator, tmp_path)
    text = approval_of(monkeypatch, ws.inventory, "waf-allow.yml", {"addresses": "198.51.100.44", "allow_for": ""})
    assert f"{world.tag}-allowed (1 addresses): would add 198.51.100.44/32; every other address kept" in text, text


def test_waf_count_rule(monkeypatch, aws_emulator, tmp_path):
    from test_waf import web_acl

    world, ws = waf_world(aws_emulator, tmp_path)
    acl = web_acl(world)
    text = approval_of(monkeypatch, ws.inventory, "waf-count-rule.yml", {"rule": "RateLimitRule", "web_acl": acl})
    assert f"{acl} rule RateLimitRule: would Action Block -> Count; every other rule as it was" in text, text


def test_security_group_rule(monkeypatch, aws_emulator, tmp_path):
    from test_security_group_rule import make_group

    aws_emulator.clear_faults()
    world = World(dict(aws_emulator))
    group = make_group(world)
    ws = AwsWorkspace(tmp_path, world.env, {})
    text = approval_of(monkeypatch, ws.inventory, "security-group-rule.yml",
                       {"group": group, "port": "443", "cidr": "0.0.0.0/0", "protocol": "tcp"})
    assert f"{group} ({world.tag}-alb): would allow tcp port 443 from 0.0.0.0/0; every other rule untouched" in text, \
        text


def test_cognito_user(monkeypatch, aws_emulator, tmp_path):
    from test_cognito_user import make_pool

    aws_emulator.clear_faults()
    world = World(dict(aws_emulator))
    pool_id = make_pool(world)
    ws = AwsWorkspace(tmp_path, world.env, {})
    text = approval_of(monkeypatch, ws.inventory, "cognito-user.yml",
                       {"user": "newcomer,kenji", "action": "confirm", "user_pool": pool_id, "filter": "", "mfa": ""})
    assert f"user pool {world.tag}-users ({pool_id}), confirm: newcomer: would UNCONFIRMED -> CONFIRMED; " \
           "kenji: already CONFIRMED" in text, text


def test_kill_long_queries(monkeypatch, pg, chat_db, tmp_path):
    ws = Workspace(pg, [chat_db], tmp_path)
    conn = psycopg.connect(**pg.conninfo(chat_db), autocommit=True, application_name="runaway-report")
    try:
        conn.pgconn.send_query(b"SELECT pg_sleep(60)")
        time.sleep(2.5)
        text = approval_of(monkeypatch, ws.inventory, "kill-long-queries.yml", {"pg_sessions_max_duration": "1s"})
    finally:
        conn.cancel()
        conn.close()
    assert "runaway-report" in text or "pg_sleep(60)" in text, text


def test_bootstrap_fixes(monkeypatch, broken):  # noqa: F811
    tag, ws = broken["tag"], broken["ws"]
    text = approval_of(monkeypatch, ws.inventory, "bootstrap-fixes.yml", {})
    for name in (f"{tag}-rolled-back", f"{tag}-stuck", broken["table"]):
        assert name in text, (name, text)


def test_every_manual_dag_is_read_here_or_elsewhere():
    """A new manual DAG gets its approval text read: here, or named in this file's docstring."""
    import re

    manual = set(re.findall(r'^(\w+) = manual_procedure\(', (ROOT / "dags" / "manual.py").read_text(), re.M))
    here = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    covered = {"recover_db", "recover_rows", "emergency_shutdown", "emergency_resume", "scale", "terraform_unlock",
               "rollback_deploy", "kill_long_queries", "bootstrap_fixes", "lambda_env", "waf_block", "waf_allow",
               "waf_count_rule", "security_group_rule", "cognito_user"}
    assert covered - {"emergency_shutdown", "emergency_resume"} <= here
    elsewhere = {"restart_app", "recover_db_to_a_point_in_time"}
    assert manual == covered | elsewhere, manual ^ (covered | elsewhere)
