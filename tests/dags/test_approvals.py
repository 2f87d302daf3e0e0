"""The approval as a control, end to end: real dag.test() runs of recover_db (requested by `dag_test`) answered over
the REST API of an api-server on the same metadata database, as people answer in the UI.

- The requester's own approval and a non-approver's are refused by Airflow; the configured approver's applies.
- What is restored is the backup the plan showed, though a newer one landed before the approval.
- The approval task marked success by hand applies nothing.
- Two approvals required (approvers named by role): one applies nothing yet, the second applies.
- A requester who is not one of runbook_operators is refused before the plan runs.
- A template in a form field never runs.
- emergency_shutdown applies the sealed plan it approved: a function created after the plan is left alone, and one
  changed after the plan refuses the apply with nothing changed.
- An approval given after the plan's age limit applies nothing; terraform_unlock refuses a lock taken again after
  its plan."""

from __future__ import annotations

import datetime
import json
import time
import urllib.error

import pytest
from aws_world import AwsWorkspace, World, clients, create_functions
from conftest import APPROVER, OUTSIDER, REQUESTER, Workspace, connect, finish
from test_terraform_unlock import KEY, Backend, lock_info


@pytest.fixture
def ws(pg, chat_db, tmp_path):
    return Workspace(pg, [chat_db], tmp_path)


def inventory(ws) -> dict:
    return {"AIRFLOW_VAR_RUNBOOK_INVENTORY": str(ws.inventory)}


def messages(pg, chat_db) -> int:
    with connect(pg, chat_db) as conn:
        return conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0]


def refused(api_server, detail: dict, user: str) -> int:
    with pytest.raises(urllib.error.HTTPError) as error:
        api_server.answer(detail, "Approve", user=user)
    return error.value.code


def task_states(api_server, dag_id: str, run_id: str) -> dict:
    listed = api_server.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti["state"] for ti in listed}


def test_only_a_permitted_approver_other_than_the_requester_applies_the_planned_backup(api_server, ws, pg, chat_db):
    assert ws.play("backup-db.yml").rc == 0
    [planned] = ws.backups(chat_db)
    before = messages(pg, chat_db)
    with connect(pg, chat_db) as conn:
        conn.execute("DELETE FROM chat_messages")  # the incident

    conf = {"database": chat_db, "backup": "latest", "reason": "INC-5001 chat_messages emptied"}
    run = api_server.run_dag("manual", "recover_db", conf=conf, env=inventory(ws), background=True)
    detail = api_server.wait_for_approval_request("recover_db", run)
    body = detail["body"]
    assert planned in body and "INC-5001 chat_messages emptied" in body and "Plan digest: `sha256:" in body, body
    assert '{"' not in body, body  # words, not JSON
    assert {user["id"] for user in detail["assigned_users"]} == {APPROVER}  # the requester is not asked

    # The nightly backup lands before the approval: a backup of the damaged database.
    assert ws.play("backup-db.yml", pg_backup_skip_if_newer_than="0").rc == 0
    assert len(ws.backups(chat_db)) == 2

    assert refused(api_server, detail, REQUESTER) == 403
    assert refused(api_server, detail, OUTSIDER) == 403
    assert messages(pg, chat_db) == 0
    api_server.answer(detail, "Approve")
    output, result = finish(run)
    assert result and result["state"] == "success", output[-6000:]
    assert result["tasks"] == {"plan": "success", "approve": "success", "approve_2": "success", "apply": "success",
                               "verify": "success"}
    assert messages(pg, chat_db) == before  # the planned backup, not the newer one of the damaged database
    [record] = [r for r in ws.audit() if r.get("result") == "recovered"]
    assert record["backup"] == planned and record["requester"] == REQUESTER and record["approvers"] == [APPROVER]
    assert record["plan_digest"].startswith("sha256:") and record["plan_digest"] in body
    assert record["reason"] == "INC-5001 chat_messages emptied"


def test_an_approval_marked_success_by_hand_applies_nothing(api_server, ws, pg, chat_db):
    assert ws.play("backup-db.yml").rc == 0
    with connect(pg, chat_db) as conn:
        conn.execute("DELETE FROM chat_messages")
    conf = {"database": chat_db, "backup": "latest", "reason": "INC-5002 marked success"}
    run = api_server.run_dag("manual", "recover_db", conf=conf, env=inventory(ws), background=True)
    detail = api_server.wait_for_approval_request("recover_db", run)
    ti = detail["task_instance"]
    api_server.call("PATCH", f"/dags/recover_db/dagRuns/{ti['dag_run_id']}/taskInstances/approve",
                    {"new_state": "success"})
    output, result = finish(run)
    assert result and result["state"] == "failed", output[-6000:]
    assert result["tasks"]["apply"] == "failed" and result["tasks"]["verify"] == "upstream_failed"
    assert "An approval task marked success by hand is not an approval" in output
    assert messages(pg, chat_db) == 0 and [r for r in ws.audit() if r.get("result") == "recovered"] == []


def test_two_approvals_required_one_applies_nothing_the_second_applies(api_server, ws, pg, chat_db):
    assert ws.play("backup-db.yml").rc == 0
    before = messages(pg, chat_db)
    with connect(pg, chat_db) as conn:
        conn.execute("DELETE FROM chat_messages")
    conf = {"database": chat_db, "backup": "latest", "reason": "INC-5003 two people"}
    run = api_server.run_dag("manual", "recover_db", conf=conf, background=True,
                             env={**inventory(ws), "RUNBOOK_APPROVALS_REQUIRED": "2",
                                  "RUNBOOK_APPROVERS": "role:user"})  # the api-server's users of role user or above
    first = api_server.wait_for_approval_request("recover_db", run)
    assert first["task_instance"]["task_id"] == "approve" and "Approval 1 of 2" in first["body"]
    api_server.answer(first, "Approve")
    second = api_server.wait_for_approval_request("recover_db", run)
    assert second["task_instance"]["task_id"] == "approve_2" and "already approved by approver" in second["body"]
    # Neither the requester nor the first approver may give the second approval.
    assert {user["id"] for user in second["assigned_users"]} == {OUTSIDER}
    assert refused(api_server, second, APPROVER) == 403
    time.sleep(2)
    assert messages(pg, chat_db) == 0, "one approval of two applied something"
    api_server.answer(second, "Approve", user=OUTSIDER)
    output, result = finish(run)
    assert result and result["state"] == "success", output[-6000:]
    assert messages(pg, chat_db) == before
    [record] = [r for r in ws.audit() if r.get("result") == "recovered"]
    assert record["approvers"] == [APPROVER, OUTSIDER]


def test_a_requester_who_is_not_an_operator_is_refused_before_anything_runs(airflow, ws, pg, chat_db):
    assert ws.play("backup-db.yml").rc == 0
    with connect(pg, chat_db) as conn:
        conn.execute("DELETE FROM chat_messages")
    conf = {"database": chat_db, "backup": "latest", "reason": "INC-5005 not an operator"}
    output, result = airflow.run_dag("manual", "recover_db", conf=conf,
                                     env={**inventory(ws), "RUNBOOK_OPERATORS": json.dumps([APPROVER])})
    assert result and result["state"] == "failed", output[-6000:]
    assert result["tasks"]["plan"] == "failed" and result["tasks"]["apply"] == "upstream_failed", result
    assert f"{REQUESTER} may not request recover_db: runbook_operators allows {APPROVER}" in output
    assert messages(pg, chat_db) == 0  # nothing planned, nothing recovered
    assert not [r for r in ws.audit() if r.get("procedure") == "recover-db"]


def test_a_template_in_a_form_field_never_runs(airflow, ws, tmp_path):
    marker = tmp_path / "F"
    for payload in (f"chat{{{{ lookup('pipe', 'touch {marker}') }}}}",
                    f"{{% set x = lookup('pipe', 'touch {marker}') %}}"):
        conf = {"database": payload, "backup": "latest", "reason": "INC-5004 an attacker's form"}
        output, result = airflow.run_dag("manual", "recover_db", conf=conf, env=inventory(ws))
        assert not marker.exists(), output[-4000:]
        assert result is None or result["state"] == "failed", output[-4000:]
        assert "database" in output


def test_emergency_shutdown_applies_the_approved_plan_only(api_server, aws_emulator, tmp_path):
    """A function created after the plan is left alone (the verify step then names it: the scope is not all
    stopped); a function whose concurrency changed after the plan refuses the whole apply with nothing changed."""
    aws_emulator.clear_faults()
    world = World(dict(aws_emulator)).build(reserved=(7, None), routes=False, rest_stage=False,
                                            unthrottled_stage=False, ecs_desired=None)
    t = world.tag
    ws = AwsWorkspace(tmp_path, world.env, {"incident": world.scope()})
    env = {"AIRFLOW_VAR_RUNBOOK_INVENTORY": str(ws.inventory)}
    [lam] = clients(world.env, "lambda")

    def concurrency(name):
        return lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")

    conf = {"shutdown_scope": "incident", "reason": "INC-5005 runaway costs"}
    run = api_server.run_dag("manual", "emergency_shutdown", conf=conf, env=env, background=True)
    detail = api_server.wait_for_approval_request("emergency_shutdown", run)
    assert f"{t}-fn-0: reserved_concurrency=7 -> reserved_concurrency=0" in detail["body"], detail["body"]
    create_functions(world.env, {f"{t}-fn-late": 5})
    api_server.answer(detail, "Approve")
    output, result = finish(run)
    assert result and result["tasks"]["apply"] == "success", output[-6000:]
    assert [concurrency(f"{t}-fn-0"), concurrency(f"{t}-fn-1"), concurrency(f"{t}-fn-late")] == [0, 0, 5]
    assert result["tasks"]["verify"] == "failed" and f"{t}-fn-late" in output  # not in the plan: named, not stopped

    # Back as before through the emergency_resume DAG: its approval names what each function gets back, and the
    # function the shutdown never stopped keeps its own value.
    resume = api_server.run_dag("manual", "emergency_resume", env=env, background=True,
                                conf={"shutdown_scope": "incident", "reason": "INC-5005 costs under control"})
    detail = api_server.wait_for_approval_request("emergency_resume", resume)
    assert f"{t}-fn-0: reserved_concurrency=0 -> reserved_concurrency=7" in detail["body"], detail["body"]
    api_server.answer(detail, "Approve")
    output, result = finish(resume)
    assert result and result["tasks"]["apply"] == "success" and result["tasks"]["verify"] == "success", \
        output[-6000:]
    assert [concurrency(f"{t}-fn-0"), concurrency(f"{t}-fn-1"), concurrency(f"{t}-fn-late")] == [7, None, 5]

    run = api_server.run_dag("manual", "emergency_shutdown", conf=conf, env=env, background=True)
    detail = api_server.wait_for_approval_request("emergency_shutdown", run)
    lam.put_function_concurrency(FunctionName=f"{t}-fn-1", ReservedConcurrentExecutions=9)  # someone acts meanwhile
    api_server.answer(detail, "Approve")
    output, result = finish(run)
    assert result and result["tasks"]["apply"] == "failed", output[-6000:]
    assert "no longer holds, so nothing was changed" in output and f"{t}-fn-1: changed since the plan" in output
    assert [concurrency(f"{t}-fn-0"), concurrency(f"{t}-fn-1")] == [7, 9]


def test_an_approval_given_after_the_plan_expired_applies_nothing(api_server, ws, pg, chat_db):
    assert ws.play("backup-db.yml").rc == 0
    with connect(pg, chat_db) as conn:
        conn.execute("DELETE FROM chat_messages")
    conf = {"database": chat_db, "backup": "latest", "reason": "INC-5006 approved too late"}
    run = api_server.run_dag("manual", "recover_db", conf=conf, background=True,
                             env={**inventory(ws), "RUNBOOK_PLAN_MAX_AGE": "3s"})
    detail = api_server.wait_for_approval_request("recover_db", run)
    time.sleep(4)
    api_server.answer(detail, "Approve")
    output, result = finish(run)
    assert result and result["tasks"]["apply"] == "failed", output[-6000:]
    assert "longer ago than runbook_plan_max_age" in output
    assert messages(pg, chat_db) == 0 and [r for r in ws.audit() if r.get("result") == "recovered"] == []


def test_terraform_unlock_refuses_a_lock_taken_again_after_the_plan(api_server, aws_emulator, tmp_path):
    aws_emulator.clear_faults()
    backend = Backend(dict(aws_emulator))
    info = lock_info(backend.bucket, datetime.timedelta(hours=3))
    backend.lock_dynamodb(info)
    env = {"AIRFLOW_VAR_RUNBOOK_INVENTORY": str(AwsWorkspace(tmp_path, backend.env, {}).inventory)}
    conf = {"lock_path": f"{backend.bucket}/{KEY}", "lock_table": backend.table, "lock_id": info["ID"],
            "min_age": "1h", "reason": "INC-5007 a crashed apply"}
    run = api_server.run_dag("manual", "terraform_unlock", conf=conf, env=env, background=True)
    detail = api_server.wait_for_approval_request("terraform_unlock", run)
    assert info["ID"] in detail["body"] and "alice@ci-runner-7" in detail["body"], detail["body"]
    # The crashed run's lock is released and a live run takes the state again before the approval.
    again = lock_info(backend.bucket, datetime.timedelta(minutes=0), who="bob@laptop")
    backend.lock_dynamodb(again, replace=True)
    api_server.answer(detail, "Approve")
    output, result = finish(run)
    assert result and result["tasks"]["apply"] == "failed", output[-6000:]
    item = backend.items()[f"{backend.bucket}/{KEY}"]
    assert again["ID"] in json.dumps(item), item  # the live run's lock is kept
