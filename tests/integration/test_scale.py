"""Scaling and its exact undo against the AWS emulator over HTTP: only the settings named change, AWS's
limits and DynamoDB's switch rule are refused before any change, and undo puts back exactly what was there."""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import time

import pytest
from aws_world import AwsWorkspace, World, aws, clients, lambda_zip

SCALE, UNDO = "scale.yml", "scale-undo.yml"


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator))


def function_with_everything(world: World) -> str:
    """A function with settings a careless update would reset: VPC, environment, layers-free role, memory."""
    iam, lam = clients(world.env, "iam", "lambda")
    role = iam.create_role(RoleName=f"{world.tag}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    name = f"{world.tag}-recommend"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                        Code={"ZipFile": lambda_zip()}, MemorySize=256, Timeout=30, Description="recommendations",
                        Environment={"Variables": {"SESSIONS_TABLE": "chatbot-sessions", "MODE": "live"}},
                        VpcConfig={"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    return name


def configuration(world: World, name: str, cli: bool = True) -> dict:
    config = aws(world.env, "lambda", "get-function-configuration", "--function-name", name, cli=cli)
    reserved = aws(world.env, "lambda", "get-function-concurrency", "--function-name", name, cli=cli)
    keep = ("MemorySize", "Timeout", "EphemeralStorage", "Environment", "VpcConfig", "Role", "Handler", "Runtime",
            "Description", "Layers")
    return {**{key: config.get(key) for key in keep}, "Reserved": reserved.get("ReservedConcurrentExecutions")}


def test_lambda_scale_changes_only_what_is_named_and_undo_restores_it(tmp_path, world):
    name = function_with_everything(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"recommendation": {"lambda": {"names": [name]}}})
    before = configuration(world, name)

    plan = ws.play(SCALE, check=True, scale_target="recommendation", lambda_memory_mb=2048, lambda_timeout_s=60)
    assert plan.rc == 0 and plan.says("memory_mb=2048"), plan.output
    assert configuration(world, name, cli=False) == before

    scaled = ws.play(SCALE, confirm=True, scale_target="recommendation", lambda_memory_mb=2048, lambda_timeout_s=60)
    assert scaled.rc == 0 and scaled.changed == 1, scaled.output
    after = configuration(world, name)
    assert after == {**before, "MemorySize": 2048, "Timeout": 60}  # VPC, environment, role... untouched

    again = ws.play(SCALE, confirm=True, scale_target="recommendation", lambda_memory_mb=2048, lambda_timeout_s=60)
    assert again.rc == 0 and again.changed == 0, again.output
    # A second, different scaling keeps the first record: undo goes back to before both.
    more = ws.play(SCALE, confirm=True, scale_target="recommendation", lambda_memory_mb=4096,
                   lambda_reserved_concurrency=50)
    assert more.rc == 0, more.output
    assert configuration(world, name, cli=False) == {**before, "MemorySize": 4096, "Timeout": 60, "Reserved": 50}

    assert ws.play(UNDO, check=True, scale_target="recommendation").rc == 0
    assert configuration(world, name, cli=False)["MemorySize"] == 4096
    undo = ws.play(UNDO, confirm=True, scale_target="recommendation")
    assert undo.rc == 0 and undo.changed == 1, undo.output
    assert configuration(world, name) == before
    tags = aws(world.env, "lambda", "list-tags", "--resource",
               f"arn:aws:lambda:us-east-1:123456789012:function:{name}")["Tags"]
    assert not [key for key in tags if key.startswith("runbook:")]
    second = ws.play(UNDO, confirm=True, scale_target="recommendation")
    assert second.rc == 0 and second.changed == 0, second.output
    assert [r["procedure"] for r in ws.audit()] == ["scale", "scale", "scale", "scale-undo", "scale-undo"]


def test_an_update_in_progress_is_retried(tmp_path, world, aws_emulator):
    name = function_with_everything(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"recommendation": {"lambda": {"names": [name]}}})
    aws_emulator.inject({"operation": "UpdateFunctionConfiguration", "match": name, "times": 2,
                         "code": "ResourceConflictException", "status": 409,
                         "message": "The operation cannot be performed at this time. An update is in progress"})
    run = ws.play(SCALE, confirm=True, scale_target="recommendation", lambda_memory_mb=1024)
    assert run.rc == 0, run.output
    assert len(aws_emulator.injected()) == 2
    assert configuration(world, name, cli=False)["MemorySize"] == 1024


def create_table(world: World) -> str:
    [ddb] = clients(world.env, "dynamodb")
    name = f"{world.tag}-sessions"
    ddb.create_table(TableName=name, BillingMode="PROVISIONED",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "user", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
                     GlobalSecondaryIndexes=[{"IndexName": "by-user", "KeySchema": [
                         {"AttributeName": "user", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"},
                         "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}}])
    return name


def capacity(world: World, table: str) -> dict:
    described = aws(world.env, "dynamodb", "describe-table", "--table-name", table)["Table"]
    [index] = described["GlobalSecondaryIndexes"]
    return {"mode": described.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
            "table": (described["ProvisionedThroughput"]["ReadCapacityUnits"],
                      described["ProvisionedThroughput"]["WriteCapacityUnits"]),
            "index": (index["ProvisionedThroughput"]["ReadCapacityUnits"],
                      index["ProvisionedThroughput"]["WriteCapacityUnits"])}


def test_dynamodb_capacity_change_and_undo(tmp_path, world):
    table = create_table(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"sessions": {"dynamodb_tables": [table]}})
    before = capacity(world, table)
    assert before == {"mode": "PROVISIONED", "table": (5, 5), "index": (2, 3)}
    run = ws.play(SCALE, confirm=True, scale_target="sessions", dynamodb_read_capacity=10, dynamodb_write_capacity=20,
                  dynamodb_indexes={"by-user": {"read_capacity": 7, "write_capacity": 8}})
    assert run.rc == 0, run.output
    assert capacity(world, table) == {"mode": "PROVISIONED", "table": (10, 20), "index": (7, 8)}
    assert ws.play(SCALE, confirm=True, scale_target="sessions", dynamodb_read_capacity=10,
                   dynamodb_write_capacity=20).changed == 0
    undo = ws.play(UNDO, confirm=True, scale_target="sessions")
    assert undo.rc == 0, undo.output
    assert capacity(world, table) == before


def table_tags(world: World, table: str) -> dict:
    tags = aws(world.env, "dynamodb", "list-tags-of-resource", "--resource-arn",
               f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}")["Tags"]
    return {tag["Key"]: tag["Value"] for tag in tags}


def test_dynamodb_undo_right_after_a_switch_to_on_demand_and_a_fifth_switch_in_a_day_refused(tmp_path, world):
    """AWS: up to four switches from provisioned to on-demand in a rolling 24 hours; to provisioned at any time."""
    table = create_table(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"sessions": {"dynamodb_tables": [table]}})
    before = capacity(world, table)
    switch = ws.play(SCALE, confirm=True, scale_target="sessions", dynamodb_billing_mode="PAY_PER_REQUEST")
    assert switch.rc == 0, switch.output
    assert capacity(world, table)["mode"] == "PAY_PER_REQUEST"
    undo = ws.play(UNDO, confirm=True, scale_target="sessions")
    assert undo.rc == 0 and undo.changed == 1, undo.output
    assert capacity(world, table) == before  # PROVISIONED again, table and index capacities as they were

    # Three more switches to on-demand and back, made elsewhere (the console, a script): four in 24 hours.
    [ddb] = clients(world.env, "dynamodb")
    switched = [table_switched_at(ddb, table)]
    for _ in range(3):
        ddb.update_table(TableName=table, BillingMode="PAY_PER_REQUEST")
        switched.append(table_switched_at(ddb, table))
        ddb.update_table(TableName=table, BillingMode="PROVISIONED",
                         ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
                         GlobalSecondaryIndexUpdates=[{"Update": {"IndexName": "by-user", "ProvisionedThroughput": {
                             "ReadCapacityUnits": 2, "WriteCapacityUnits": 3}}}])
    recorded = table_tags(world, table)
    assert recorded["runbook:on-demand-switches"] == iso(switched[0])  # the switch this tool made, AWS's time

    # This tool knows of two of them (its own and the last one DescribeTable shows): AWS refuses the fifth.
    fifth = ws.play(SCALE, confirm=True, scale_target="sessions", dynamodb_billing_mode="PAY_PER_REQUEST")
    assert fifth.rc != 0
    assert fifth.says("AWS refused the switch to on-demand (PAY_PER_REQUEST): a table can switch from provisioned "
                      "to on-demand at most 4 times in any rolling 24 hours"), fifth.output
    assert fifth.says(f"AWS says the next switch is possible at "
                      f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime(switched[0] + 86400))}")
    assert fifth.says("The table's billing mode and capacities are unchanged. Changed before the failure, then "
                      "undone: record runbook:scale-previous-read-capacity=5"), fifth.output
    assert fifth.says("(removed again: the service refused the change). Nothing is left changed.")
    assert not fifth.says("Resources already changed")
    assert capacity(world, table) == before
    assert table_tags(world, table) == recorded

    # Once this tool knows of the four (as it records the switches it makes), the plan itself refuses the fifth.
    aws(world.env, "dynamodb", "tag-resource", "--resource-arn",
        f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}", "--tags",
        json.dumps([{"Key": "runbook:on-demand-switches", "Value": " ".join(map(iso, switched))}]))
    plan = ws.play(SCALE, check=True, scale_target="sessions", dynamodb_billing_mode="PAY_PER_REQUEST")
    assert plan.rc != 0
    assert plan.says("AWS allows at most 4 switches of a table from provisioned to on-demand (PAY_PER_REQUEST) in "
                     "any rolling 24 hours, and this table made 4"), plan.output
    next_switch = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(switched[0] + 86400)))
    assert plan.says(f"The next switch to on-demand is possible after {next_switch}; switching to "
                     "PROVISIONED is allowed at any time. Nothing was changed.")
    assert capacity(world, table) == before


def table_switched_at(ddb, table: str) -> float:
    """When the table last switched to on-demand, as AWS reports it."""
    described = ddb.describe_table(TableName=table)["Table"]
    return described["BillingModeSummary"]["LastUpdateToPayPerRequestDateTime"].timestamp()


def iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_ecs_scale_to_n_and_back(tmp_path, world):
    world.build(reserved=(), throttled_stage=False, unthrottled_stage=False, rest_stage=False, ecs_desired=3)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"backend": {"ecs_services": world.services}})
    assert ws.play(SCALE, confirm=True, scale_target="backend", ecs_desired_count=6).rc == 0
    assert world.observe(cli=False)["ecs:backend"][0] == 6
    assert ws.play(UNDO, confirm=True, scale_target="backend").rc == 0
    assert world.observe(cli=False)["ecs:backend"] == (3, {})


# -- refused before anything changes ----------------------------------------------------------------
@pytest.mark.parametrize(("extra", "message"), [
    ({"lambda_memory_mb": 64}, "memory_mb=64 is outside what Lambda accepts (128-10240)"),
    ({"lambda_timeout_s": 901}, "timeout_s=901 is outside what Lambda accepts (1-900)"),
    ({}, "Nothing to set for target recommendation"),
    ({"dynamodb_billing_mode": "PAY_PER_REQUEST"}, "Nothing to set for target recommendation"),
])
def test_bad_lambda_values_are_refused(tmp_path, world, extra, message):
    name = function_with_everything(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"recommendation": {"lambda": {"names": [name]}}})
    before = configuration(world, name, cli=False)
    run = ws.play(SCALE, confirm=True, scale_target="recommendation", **extra)
    assert run.rc != 0 and run.says(message), run.output
    assert configuration(world, name, cli=False) == before


def test_unknown_function_table_target_and_missing_confirm(tmp_path, world):
    name = function_with_everything(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={
        "recommendation": {"lambda": {"names": [name]}}, "typo": {"lambda": {"names": [f"{name}-x"]}},
        "no-table": {"dynamodb_tables": [f"{world.tag}-nope"]}})
    before = configuration(world, name, cli=False)
    assert ws.play(SCALE, confirm=True, scale_target="typo", lambda_memory_mb=512).says(
        f"function '{name}-x' does not exist")
    assert ws.play(SCALE, confirm=True, scale_target="no-table", dynamodb_billing_mode="PAY_PER_REQUEST").says(
        f"no DynamoDB table '{world.tag}-nope'")
    unknown = ws.play(SCALE, confirm=True, scale_target="nope", lambda_memory_mb=512)
    assert unknown.rc != 0 and unknown.says('Unknown target "nope"')
    unconfirmed = ws.play(SCALE, scale_target="recommendation", lambda_memory_mb=512)
    assert unconfirmed.rc != 0 and unconfirmed.says("Not confirmed: nothing was changed")
    assert configuration(world, name, cli=False) == before


def test_undo_refuses_an_unknown_target_none_and_no_confirmation_with_nothing_changed(tmp_path, world):
    """scale-undo.yml's refusals, after a real scaling: an unknown target, no target and no confirm=true each stop
    before any change, saying what is wrong and what to do; the scaled values and their record stay."""
    name = function_with_everything(world)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"recommendation": {"lambda": {"names": [name]}}})
    assert ws.play(SCALE, confirm=True, scale_target="recommendation", lambda_memory_mb=1024).rc == 0
    scaled = configuration(world, name, cli=False)
    for extra, says in (({"scale_target": "nope", "confirm": True}, 'Unknown target "nope": nothing was changed'),
                        ({"confirm": True}, "No target given: nothing was changed"),
                        ({"scale_target": "recommendation"}, "Not confirmed: nothing was changed")):
        run = ws.play(UNDO, **extra)
        assert run.rc != 0 and run.says(says), (extra, run.output[-3000:])
        assert configuration(world, name, cli=False) == scaled, extra
    undo = ws.play(UNDO, confirm=True, scale_target="recommendation")  # the record survived the refusals
    assert undo.rc == 0 and configuration(world, name, cli=False)["MemorySize"] != 1024, undo.output[-3000:]


def test_a_function_held_by_an_emergency_shutdown_is_not_scaled(tmp_path, world):
    name = function_with_everything(world)
    ws = AwsWorkspace(tmp_path, world.env, {"incident": {"lambda": {"names": [name]}}},
                      targets={"recommendation": {"lambda": {"names": [name]}}})
    assert ws.play("emergency-shutdown.yml", confirm=True, shutdown_scope="incident").rc == 0
    run = ws.play(SCALE, confirm=True, scale_target="recommendation", lambda_reserved_concurrency=50)
    assert run.rc != 0 and run.says("stopped by an emergency shutdown")
    assert configuration(world, name, cli=False)["Reserved"] == 0


def test_postgres_settings_restart_the_server_and_undo_restores_them(private_pg, tmp_path):
    import sys

    from conftest import ROOT, Workspace, connect

    def settings() -> tuple:
        with connect(private_pg) as conn:
            return tuple(conn.execute(f"SHOW {name}").fetchone()[0] for name in ("max_connections", "shared_buffers"))

    ws = Workspace(private_pg, [], tmp_path)
    ws.write_inventory(scale_targets_inventory={"db": {"postgres_hosts": ["testdb"]}},
                       scale_pg_state_dir=str(tmp_path / "scale"),
                       scale_pg_restart_command=[sys.executable, str(ROOT / "sandbox/pgcluster.py"), "restart",
                                                 str(private_pg.base), str(private_pg.port)])
    before = settings()
    assert before == ("100", "128MB")
    plan_file = tmp_path / "scale-db.json"
    plan = ws.play(SCALE, check=True, scale_target="db", pg_max_connections=120, pg_shared_buffers="64MB",
                   plan_out=str(plan_file))
    assert plan.rc == 0 and plan.says("max_connections 100 120"), plan.output
    assert settings() == before
    assert ["max_connections", "100", "120"] in json.loads(plan_file.read_text())["resources"]["postgres:testdb"]

    run = ws.play(SCALE, plan=str(plan_file), confirm=True)  # the sealed plan: its target and settings
    assert run.rc == 0, run.output
    assert settings() == ("120", "64MB")  # both need a restart: the server was restarted and answers again
    [record] = [r for r in ws.audit() if r["result"] == "acted"]
    assert record["restore_point"]["name"].startswith("runbook-scale-") and record["restore_point"]["lsn"]
    again = ws.play(SCALE, confirm=True, scale_target="db", pg_max_connections=120, pg_shared_buffers="64MB")
    assert again.rc == 0 and again.changed == 0, again.output

    undo = ws.play(UNDO, confirm=True, scale_target="db")
    assert undo.rc == 0, undo.output
    assert settings() == before
    assert not (tmp_path / "scale" / "db.json").exists()
    second = ws.play(UNDO, confirm=True, scale_target="db")
    assert second.rc == 0 and second.changed == 0, second.output


def test_provisioned_concurrency_on_an_alias_and_back(tmp_path, world):
    name = function_with_everything(world)
    [lam] = clients(world.env, "lambda")
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"live": {"lambda": {"names": [name], "qualifier": "live"}}})

    def provisioned():
        try:
            return aws(world.env, "lambda", "get-provisioned-concurrency-config", "--function-name", name,
                       "--qualifier", "live")["RequestedProvisionedConcurrentExecutions"]
        except subprocess.CalledProcessError as exc:  # only "no such configuration" means none
            if "ProvisionedConcurrencyConfigNotFoundException" not in exc.stderr:
                raise
            return None

    assert provisioned() is None
    run = ws.play(SCALE, confirm=True, scale_target="live", lambda_provisioned_concurrency=10)
    assert run.rc == 0, run.output
    assert provisioned() == 10
    # The run waited through IN_PROGRESS (the emulator's, as AWS's, allocates after the Put): all 10 are there.
    config = aws(world.env, "lambda", "get-provisioned-concurrency-config", "--function-name", name,
                 "--qualifier", "live")
    assert (config["Status"], config["AllocatedProvisionedConcurrentExecutions"]) == ("READY", 10), config
    assert ws.play(SCALE, confirm=True, scale_target="live", lambda_provisioned_concurrency=10).changed == 0
    assert ws.play(UNDO, confirm=True, scale_target="live").rc == 0
    assert provisioned() is None  # it had none: the configuration is deleted, not set to 0


def test_provisioned_concurrency_that_fails_to_allocate_is_named_with_aws_reason(tmp_path, world):
    """A function whose initialization fails: AWS leaves its provisioned concurrency FAILED with a StatusReason. The
    scaling waits through IN_PROGRESS, fails naming the reason, and says what it had changed."""
    name = function_with_everything(world)
    [lam] = clients(world.env, "lambda")
    reason = "FUNCTION_ERROR_INIT_FAILURE: Init error in the handler module"
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {
        "RUNBOOK_EMULATOR_INIT_FAILS": reason}})
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    ws = AwsWorkspace(tmp_path, world.env, {}, targets={"live": {"lambda": {"names": [name], "qualifier": "live"}}})
    run = ws.play(SCALE, confirm=True, scale_target="live", lambda_provisioned_concurrency=5)
    assert run.rc != 0 and run.says(f"provisioned concurrency failed: {reason}"), run.output[-4000:]
    assert run.says(f"provisioned concurrency of {name}:live set to 5"), run.output[-4000:]
    config = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert config["Status"] == "FAILED" and config["StatusReason"] == reason, config
