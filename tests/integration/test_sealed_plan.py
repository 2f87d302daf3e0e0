"""Sealed plans on the command line (`--check -e plan_out=FILE`, then `-e plan=FILE -e confirm=true`), against the
AWS emulator over HTTP: the apply acts on exactly the resources the plan lists, refuses the whole run with nothing
changed when one of them changed since, and refuses an edited file, a plan of another procedure and an expired one
before it reads anything."""

from __future__ import annotations

import json
import time

import pytest
from aws_world import AwsWorkspace, World, clients, create_functions

SHUTDOWN, RESUME = "emergency-shutdown.yml", "emergency-resume.yml"


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator)).build(reserved=(7, None, 3), routes=False)


@pytest.fixture
def ws(tmp_path, world):
    return AwsWorkspace(tmp_path, world.env, {"incident": world.scope()})


def concurrency(world: World, name: str):
    [lam] = clients(world.env, "lambda")
    return lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")


def test_the_apply_acts_on_exactly_the_planned_resources(ws, world, tmp_path):
    t, plan = world.tag, tmp_path / "plan.json"
    made = ws.play(SHUTDOWN, check=True, shutdown_scope="incident", plan_out=str(plan))
    assert made.rc == 0 and made.says(f"written to {plan}"), made.output
    document = json.loads(plan.read_text())
    assert document["procedure"] == "emergency-shutdown" and document["inputs"] == {"shutdown_scope": "incident"}
    assert document["digest"].startswith("sha256:") and oct(plan.stat().st_mode & 0o777) == "0o600"
    planned = {row["resource"]: row for row in document["resources"]["lambda"]}
    assert planned[f"{t}-fn-0"]["before"] == {"reserved_concurrency": 7}
    assert planned[f"{t}-fn-0"]["after"] == {"reserved_concurrency": 0}
    assert concurrency(world, f"{t}-fn-0") == 7  # the plan changed nothing

    # A function the prefix matches appears after the plan: nobody approved stopping it.
    create_functions(world.env, {f"{t}-fn-late": 5})
    applied = ws.play(SHUTDOWN, plan=str(plan), confirm=True)
    assert applied.rc == 0, applied.output
    assert [concurrency(world, f"{t}-fn-{i}") for i in range(3)] == [0, 0, 0]
    assert concurrency(world, f"{t}-fn-late") == 5
    [record] = [r for r in ws.audit() if r["procedure"] == "emergency-shutdown" and r["result"] == "acted"]
    assert f"{t}-fn-late" not in json.dumps(record) and record["scope"] == "incident"

    # Resume from a plan of its own, the same way.
    resume_plan = tmp_path / "resume.json"
    assert ws.play(RESUME, check=True, shutdown_scope="incident", plan_out=str(resume_plan)).rc == 0
    assert ws.play(RESUME, plan=str(resume_plan), confirm=True).rc == 0
    assert [concurrency(world, f"{t}-fn-{i}") for i in range(3)] == [7, None, 3]


def test_a_resource_changed_since_the_plan_refuses_the_run_with_nothing_changed(ws, world, tmp_path):
    t, plan = world.tag, tmp_path / "plan.json"
    assert ws.play(SHUTDOWN, check=True, shutdown_scope="incident", plan_out=str(plan)).rc == 0
    [lam] = clients(world.env, "lambda")
    lam.put_function_concurrency(FunctionName=f"{t}-fn-2", ReservedConcurrentExecutions=9)  # someone acts meanwhile
    before = world.observe(cli=False)
    refused = ws.play(SHUTDOWN, plan=str(plan), confirm=True)
    assert refused.rc != 0 and refused.says("no longer holds, so nothing was changed"), refused.output
    assert refused.says(f"{t}-fn-2: changed since the plan read it"), refused.output
    assert world.observe(cli=False) == before
    assert concurrency(world, f"{t}-fn-0") == 7


def test_a_spoiled_plan_is_refused_before_anything(ws, world, tmp_path):
    """An edited file, a plan applied by another procedure, an expired plan, a plan for another scope: each refused,
    naming why, with nothing changed."""
    t, plan = world.tag, tmp_path / "plan.json"
    assert ws.play(SHUTDOWN, check=True, shutdown_scope="incident", plan_out=str(plan)).rc == 0
    edited = tmp_path / "edited.json"  # the plan says 7 -> 0; someone makes it read as if fn-0 were already stopped
    edited.write_text(plan.read_text().replace('"reserved_concurrency": 7', '"reserved_concurrency": 0', 1))
    before = world.observe(cli=False)
    for playbook, path, extra, says in (
            (SHUTDOWN, edited, {}, "was changed after it was made"),
            (RESUME, plan, {}, "is a plan of emergency-shutdown, not of emergency-resume"),
            (SHUTDOWN, plan, {"shutdown_scope": "other"},
             "was made for shutdown_scope='incident', and this run asks for shutdown_scope='other'"),
            (SHUTDOWN, plan, {"plan_max_age": "1s"}, "longer ago than plan_max_age")):
        if "plan_max_age" in extra:
            time.sleep(1.1)
        refused = ws.play(playbook, plan=str(path), confirm=True, **extra)
        assert refused.rc != 0 and refused.says(says), (says, refused.output)
        assert refused.says("Nothing was changed"), refused.output
    assert world.observe(cli=False) == before and concurrency(world, f"{t}-fn-0") == 7


def test_scale_applies_its_sealed_plan_and_refuses_one_outgrown(tmp_path, world):
    """scale.yml: the plan file carries the target and the settings; applied, exactly those change; a function whose
    memory changed after the plan refuses the apply with nothing changed."""
    [lam] = clients(world.env, "lambda")
    names = [f"{world.tag}-fn-0", f"{world.tag}-fn-1"]
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"recommendation": {"lambda": {"names": names}}})

    def memory():
        return [lam.get_function_configuration(FunctionName=name)["MemorySize"] for name in names]

    before, plan = memory(), tmp_path / "scale.json"
    made = ws.play("scale.yml", check=True, scale_target="recommendation", lambda_memory_mb=1024, plan_out=str(plan))
    assert made.rc == 0 and plan.exists(), made.output
    assert json.loads(plan.read_text())["inputs"]["lambda_memory_mb"] == 1024
    applied = ws.play("scale.yml", plan=str(plan), confirm=True)
    assert applied.rc == 0 and applied.changed > 0, applied.output
    assert memory() == [1024, 1024]
    assert ws.play("scale-undo.yml", confirm=True, scale_target="recommendation").rc == 0
    assert memory() == before

    assert ws.play("scale.yml", check=True, scale_target="recommendation", lambda_memory_mb=1024,
                   plan_out=str(plan)).rc == 0
    lam.update_function_configuration(FunctionName=names[1], MemorySize=512)
    refused = ws.play("scale.yml", plan=str(plan), confirm=True)
    assert refused.rc != 0 and refused.says(f"{names[1]}: changed since the plan read it"), refused.output
    assert memory() == [before[0], 512]
    other = ws.play("scale.yml", plan=str(plan), confirm=True, lambda_memory_mb=2048)
    assert other.rc != 0 and other.says("was made for lambda_memory_mb=1024"), other.output


def test_recover_db_restores_the_planned_backup_and_refuses_a_plan_outgrown(pg, chat_db, tmp_path):
    """recover-db.yml: the plan resolves `latest` once; a newer backup landing before the apply is not what is
    restored. A plan whose database was recovered by another run since, or edited, or expired, changes nothing."""
    from conftest import Workspace, connect

    ws, plan = Workspace(pg, [chat_db], tmp_path), tmp_path / "recover.json"

    def messages():
        with connect(pg, chat_db) as conn:
            return conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0]

    assert ws.play("backup-db.yml").rc == 0
    [planned] = ws.backups(chat_db)
    rows = messages()
    with connect(pg, chat_db) as conn:
        conn.execute("DELETE FROM chat_messages")
    made = ws.play("recover-db.yml", check=True, database=chat_db, plan_out=str(plan))
    assert made.rc == 0 and plan.exists(), made.output
    assert json.loads(plan.read_text())["resources"]["recovery"]["testdb"]["backup"] == planned
    assert ws.play("backup-db.yml", pg_backup_skip_if_newer_than="0").rc == 0  # the damaged database's backup

    for spoil, says in (("edit", "was changed after it was made"), ("expired", "longer ago than plan_max_age")):
        spoiled = tmp_path / f"{spoil}.json"
        spoiled.write_text(plan.read_text().replace(planned, ws.backups(chat_db)[-1]) if spoil == "edit"
                           else plan.read_text())
        extra = {"pg_recover_plan_max_age": "1s"} if spoil == "expired" else {}
        if spoil == "expired":
            time.sleep(1.5)
        refused = ws.play("recover-db.yml", plan=str(spoiled), confirm=True, **extra)
        assert refused.rc != 0 and refused.says(says) and refused.says("Nothing was changed"), refused.output
        assert messages() == 0

    applied = ws.play("recover-db.yml", plan=str(plan), confirm=True)
    assert applied.rc == 0, applied.output
    assert messages() == rows  # the planned backup, not the newer one
    [record] = [r for r in ws.audit() if r.get("result") == "recovered"]
    assert record["backup"] == planned

    # The same plan again: the database was recovered since it was made (by that apply): refused, nothing changed.
    again = ws.play("recover-db.yml", plan=str(plan), confirm=True)
    assert again.rc != 0 and again.says("no longer holds, so nothing was changed"), again.output


def test_the_audit_trail_in_s3_is_one_chain_nobody_can_rewrite(ws, world, tmp_path):
    """runbook_audit_s3: each record of the run also lands in a bucket with Object Lock, chained; a locked record
    cannot be deleted; verify-audit.yml checks the local log and the S3 trail."""
    [s3] = clients(world.env, "s3")
    bucket = f"{world.tag}-audit"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    ws.extra = {"runbook_audit_s3": {"bucket": bucket, "prefix": "trail", "retention_days": 1}}
    ws.write_inventory({"incident": world.scope()})
    assert ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident").rc == 0
    assert ws.play(RESUME, confirm=True, shutdown_scope="incident").rc == 0
    local = ws.audit()
    listed = s3.list_object_versions(Bucket=bucket, Prefix="trail/")["Versions"]
    assert [v["Key"] for v in sorted(listed, key=lambda v: v["Key"])] == [f"trail/{n:012d}.json"
                                                                          for n in range(1, len(local) + 1)]
    trail = [json.loads(s3.get_object(Bucket=bucket, Key=f"trail/{n:012d}.json")["Body"].read())
             for n in range(1, len(local) + 1)]
    strip = ("prev", "hash")
    assert [{k: v for k, v in r.items() if k not in strip} for r in trail] == \
        [{k: v for k, v in r.items() if k not in strip} for r in local]
    assert s3.head_object(Bucket=bucket, Key="trail/000000000001.json")["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key="trail/000000000001.json", VersionId=listed[0]["VersionId"])
    checked = ws.play("verify-audit.yml", audit_log=str(ws.audit_log),
                      aws_connection={"endpoint_url": world.env["AWS_ENDPOINT_URL"],
                                      "region": world.env["AWS_DEFAULT_REGION"],
                                      "access_key": world.env["AWS_ACCESS_KEY_ID"],
                                      "secret_key": world.env["AWS_SECRET_ACCESS_KEY"]},
                      runbook_audit_s3={"bucket": bucket, "prefix": "trail"})
    assert checked.rc == 0 and checked.says(f"s3://{bucket}/trail: {len(local)} records, {len(local)} chained"), \
        checked.output
