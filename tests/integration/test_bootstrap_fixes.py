"""bootstrap-fixes.yml against the AWS emulator over HTTP: stacks a failed deploy left behind are deleted (a
DELETE_FAILED one with its undeletable bucket retained), healthy ones are untouched, a missing invoke permission is
added once, alarms are created, point-in-time recovery is turned on, and the CDK bootstrap is checked - with no
CDK CLI the run says exactly what to type."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from aws_world import MOTO_ACCOUNT, AwsWorkspace, aws, clients, create_functions

FIXES = "bootstrap-fixes.yml"


def bucket_template(bucket: str) -> str:
    return json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"},
                                     "Artifacts": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}}}})


@pytest.fixture
def broken(aws_emulator, tmp_path):
    """Under a unique prefix: a stack rolled back (its bucket name was taken), one stuck in DELETE_FAILED (its bucket
    holds an object), a healthy one; a function nobody may invoke; a table without PITR; a private CDK toolkit."""
    aws_emulator.clear_faults()
    env = dict(aws_emulator)
    tag = "bf" + tmp_path.name[-14:].replace("_", "-").strip("-").lower()
    cfn, s3, ddb = clients(env, "cloudformation", "s3", "dynamodb")
    s3.create_bucket(Bucket=f"{tag}-taken")
    cfn.create_stack(StackName=f"{tag}-rolled-back", TemplateBody=bucket_template(f"{tag}-taken"))
    cfn.create_stack(StackName=f"{tag}-stuck", TemplateBody=bucket_template(f"{tag}-full"))
    s3.put_object(Bucket=f"{tag}-full", Key="statement.csv", Body=b"card,amount\n")
    cfn.delete_stack(StackName=f"{tag}-stuck")
    deadline = time.monotonic() + 30  # DELETE_IN_PROGRESS for a second, as in AWS, then DELETE_FAILED
    while cfn.describe_stacks(StackName=f"{tag}-stuck")["Stacks"][0]["StackStatus"] == "DELETE_IN_PROGRESS":
        assert time.monotonic() < deadline, "the stuck stack never finished its delete"
        time.sleep(0.1)
    queue_only = json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}})
    cfn.create_stack(StackName=f"{tag}-healthy", TemplateBody=queue_only)
    function, table = f"{tag}-card-operations", f"{tag}-cards"
    create_functions(env, {function: None})
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    ws = AwsWorkspace(tmp_path, env, {})
    ws.extra = {
        "bootstrap_fixes_stack_prefixes": [tag],
        "bootstrap_fixes_cdk_stack_name": f"{tag}-toolkit",
        "bootstrap_fixes_cdk_qualifier": tag[:10],
        "bootstrap_fixes_invoke_permissions": [{
            "function": function, "principal": "connect.amazonaws.com", "statement_id": "AllowConnectInvoke",
            "source_arn": f"arn:aws:connect:us-east-1:{MOTO_ACCOUNT}:instance/{tag}/*"}],
        "bootstrap_fixes_alarm_functions": [function],
        "bootstrap_fixes_alarm_tables": [table],
        "bootstrap_fixes_pitr_tables": [table],
    }
    ws.write_inventory({})
    return {"env": env, "tag": tag, "ws": ws, "function": function, "table": table}


def bootstrap_toolkit(env: dict, stack: str, qualifier: str, version: int) -> None:
    """What `cdk bootstrap` leaves: the toolkit stack and the version parameter the CLI reads."""
    [cfn] = clients(env, "cloudformation")
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps({"Resources": {"Version": {
        "Type": "AWS::SSM::Parameter",
        "Properties": {"Name": f"/cdk-bootstrap/{qualifier}/version", "Type": "String", "Value": str(version)}}}}))


def only_the_cdk_check(ws: AwsWorkspace, **more) -> None:
    ws.extra.update(bootstrap_fixes_invoke_permissions=[], bootstrap_fixes_alarm_functions=[],
                    bootstrap_fixes_alarm_tables=[], bootstrap_fixes_pitr_tables=[],
                    bootstrap_fixes_stack_prefixes=["none-"], **more)
    ws.write_inventory({})


def stacks(env: dict, tag: str) -> dict:
    listed = aws(env, "cloudformation", "list-stacks")["StackSummaries"]
    latest = {}
    for summary in sorted(listed, key=lambda s: s["CreationTime"]):
        if summary["StackName"].startswith(tag):
            latest[summary["StackName"]] = summary["StackStatus"]
    return latest


def statements(env: dict, function: str) -> list:
    try:
        policy = aws(env, "lambda", "get-policy", "--function-name", function)
    except subprocess.CalledProcessError as exc:  # only "this function has no policy" means no statement
        if "ResourceNotFoundException" not in exc.stderr:
            raise
        return []
    return json.loads(policy["Policy"])["Statement"]


def pitr(env: dict, table: str) -> str:
    described = aws(env, "dynamodb", "describe-continuous-backups", "--table-name", table)
    return described["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]


def alarms(env: dict, tag: str) -> list:
    found = aws(env, "cloudwatch", "describe-alarms", "--alarm-name-prefix", tag)["MetricAlarms"]
    return sorted(a["AlarmName"] for a in found)


def snapshot(world: dict) -> dict:
    env, tag = world["env"], world["tag"]
    return {"stacks": stacks(env, tag), "statements": statements(env, world["function"]),
            "pitr": pitr(env, world["table"]), "alarms": alarms(env, tag)}


def test_plan_then_confirm_fixes_everything_once(broken):
    ws, env, tag = broken["ws"], broken["env"], broken["tag"]
    bootstrap_toolkit(env, f"{tag}-toolkit", tag[:10], 21)
    before = snapshot(broken)
    assert before["stacks"] == {f"{tag}-rolled-back": "ROLLBACK_COMPLETE", f"{tag}-stuck": "DELETE_FAILED",
                                f"{tag}-healthy": "CREATE_COMPLETE", f"{tag}-toolkit": "CREATE_COMPLETE"}

    plan_file = ws.base / "fixes.json"
    plan = ws.play(FIXES, check=True, plan_out=str(plan_file))
    assert plan.rc == 0, plan.output
    for expected in (f"stack {tag}-rolled-back", "bucket name is not available", f"stack {tag}-stuck",
                     "delete, retaining Artifacts", "connect.amazonaws.com may not invoke it",
                     f"alarm {broken['function']}-errors", f"alarm {broken['table']}-write-throttles",
                     "point-in-time recovery is DISABLED"):
        assert expected in plan.output, expected
    assert f"{tag}-healthy" not in plan.output
    assert snapshot(broken) == before

    refused = ws.play(FIXES)
    assert refused.rc != 0 and refused.says("Not confirmed: nothing was changed"), refused.output
    assert snapshot(broken) == before

    # Someone turns point-in-time recovery on by hand after the plan: the table of fixes is not the one reviewed.
    [ddb] = clients(env, "dynamodb")
    pitr = {"TableName": broken["table"], "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}
    ddb.update_continuous_backups(**pitr)
    changed = ws.play(FIXES, plan=str(plan_file), confirm=True)
    assert changed.rc != 0 and changed.says("no longer holds, so nothing was changed"), changed.output
    assert snapshot(broken) == {**before, "pitr": "ENABLED"}
    pitr["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] = False
    ddb.update_continuous_backups(**pitr)

    fixed = ws.play(FIXES, plan=str(plan_file), confirm=True)  # the sealed plan, as it was reviewed
    assert fixed.rc == 0, fixed.output
    after = snapshot(broken)
    assert after["stacks"] == {f"{tag}-rolled-back": "DELETE_COMPLETE", f"{tag}-stuck": "DELETE_COMPLETE",
                               f"{tag}-healthy": "CREATE_COMPLETE", f"{tag}-toolkit": "CREATE_COMPLETE"}
    # The bucket that could not be deleted was retained, and still holds its object.
    kept = aws(env, "s3api", "list-objects", "--bucket", f"{tag}-full")["Contents"]
    assert [o["Key"] for o in kept] == ["statement.csv"]
    [statement] = after["statements"]
    assert statement["Sid"] == "AllowConnectInvoke"
    assert statement["Principal"] == {"Service": "connect.amazonaws.com"}
    assert after["pitr"] == "ENABLED"
    assert after["alarms"] == sorted([f"{broken['function']}-errors", f"{broken['table']}-read-throttles",
                                      f"{broken['table']}-write-throttles"])
    [record] = ws.audit()
    assert record["procedure"] == "bootstrap-fixes" and record["result"] == "acted"

    again = ws.play(FIXES, confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output
    assert again.says("No problem found")
    assert snapshot(broken) == after


def test_missing_cdk_bootstrap_without_the_cli_names_the_exact_command(broken):
    ws, tag = broken["ws"], broken["tag"]
    only_the_cdk_check(ws)
    ws.env["PATH"] = os.path.dirname(sys.executable) + ":/usr/bin:/bin"  # no cdk here
    command = f"cdk bootstrap aws://{MOTO_ACCOUNT}/us-east-1 --toolkit-stack-name {tag}-toolkit --qualifier {tag[:10]}"

    plan = ws.play(FIXES, check=True)
    assert plan.rc == 0 and command in plan.output and "no cdk CLI here" in plan.output, plan.output

    run = ws.play(FIXES, confirm=True)
    assert run.rc != 0, run.output
    assert run.says(f"run `{command}` where it is"), run.output
    assert f"{tag}-toolkit" not in stacks(broken["env"], tag)


def test_old_bootstrap_is_upgraded_by_the_cdk_cli(broken, tmp_path):
    """With a CDK CLI on PATH the module runs it and checks again. The CLI here is a stand-in (the real one needs
    the npm registry and deploys the whole bootstrap template): it updates what `cdk bootstrap` updates, the version
    parameter, and records its arguments and whether credentials reached it through the environment."""
    ws, env, tag = broken["ws"], broken["env"], broken["tag"]
    qualifier = tag[:10]
    bootstrap_toolkit(env, f"{tag}-toolkit", qualifier, 5)
    only_the_cdk_check(ws, bootstrap_fixes_cdk_required_version=6)
    bin_dir, calls = tmp_path / "bin", tmp_path / "cdk-calls.json"
    bin_dir.mkdir()
    cdk = bin_dir / "cdk"
    cdk.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys, boto3
        key_in_env = os.environ.get("AWS_SECRET_ACCESS_KEY") == {env["AWS_SECRET_ACCESS_KEY"]!r}
        json.dump({{"argv": sys.argv[1:], "key_in_env": key_in_env}}, open({str(calls)!r}, "w"))
        qualifier = sys.argv[sys.argv.index("--qualifier") + 1]
        boto3.client("ssm").put_parameter(Name=f"/cdk-bootstrap/{{qualifier}}/version", Value="21", Type="String",
                                          Overwrite=True)
        """))
    cdk.chmod(cdk.stat().st_mode | stat.S_IEXEC)
    ws.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"

    plan = ws.play(FIXES, check=True)
    assert plan.rc == 0 and "bootstrap version 5 is older than the 6 this app needs" in plan.output, plan.output
    assert not calls.exists()

    run = ws.play(FIXES, confirm=True)
    assert run.rc == 0, run.output
    called = json.loads(calls.read_text())
    assert called["argv"][:2] == ["bootstrap", f"aws://{MOTO_ACCOUNT}/us-east-1"]
    assert called["key_in_env"] and env["AWS_SECRET_ACCESS_KEY"] not in " ".join(called["argv"])
    parameter = aws(env, "ssm", "get-parameter", "--name", f"/cdk-bootstrap/{qualifier}/version")["Parameter"]
    assert parameter["Value"] == "21"
    again = ws.play(FIXES, confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output


def test_incomplete_permission_is_refused_before_anything_changes(broken):
    ws = broken["ws"]
    ws.extra["bootstrap_fixes_invoke_permissions"] = [
        {"function": broken["function"], "principal": "connect.amazonaws.com", "statement_id": "AllowConnectInvoke"}]
    ws.write_inventory({})
    before = snapshot(broken)
    run = ws.play(FIXES, confirm=True)
    assert run.rc != 0 and run.says("is incomplete: nothing was changed"), run.output
    assert run.says("source_arn"), run.output
    assert snapshot(broken) == before
