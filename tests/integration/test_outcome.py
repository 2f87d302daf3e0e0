"""The outcome seam: an AWS module that fails after its first write says what it changed, and what it undid, and
the resources read back (AWS CLI) match the message. One playbook runs each writing module once, each against
resources of its own, with the emulator failing the call that follows the module's first write."""

from __future__ import annotations

import pytest
import yaml
from aws_world import AwsWorkspace, World, aws, clients, create_functions


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    yield World(dict(aws_emulator))
    aws_emulator.clear_faults()


def module_task(module: str, **args) -> dict:
    return {"name": module, f"runbook.recovery.{module}": args, "register": module, "ignore_errors": True}


def test_a_failure_after_the_first_write_names_what_was_changed_and_undone(tmp_path, world, aws_emulator):
    t = world.tag
    fn_stop, fn_scale = f"{t}-stop", f"{t}-scale"
    create_functions(world.env, {fn_stop: 7, fn_scale: 5})
    table, group = f"{t}-sessions", f"/aws/lambda/{t}-new"
    pitr_first, pitr_second = f"{t}-pitr-first", f"{t}-pitr-second"
    backup_first, backup_second = f"{t}-bk-first", f"{t}-bk-second"
    [ddb, apigw, ecs] = clients(world.env, "dynamodb", "apigatewayv2", "ecs")
    for name in (table, pitr_first, pitr_second, backup_first, backup_second):
        ddb.create_table(TableName=name, BillingMode="PROVISIONED",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    api = apigw.create_api(Name=f"{t}-ws", ProtocolType="WEBSOCKET",
                           RouteSelectionExpression="$request.body.action")["ApiId"]
    apigw.create_stage(ApiId=api, StageName="prod",
                       DefaultRouteSettings={"ThrottlingBurstLimit": 500, "ThrottlingRateLimit": 1000.0})
    ddb.put_item(TableName=backup_first, Item={"pk": {"S": "one"}})
    cluster, service = f"{t}-cluster", f"{t}-svc"
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(family=f"{t}-task", containerDefinitions=[{"name": "app", "image": "app:1",
                                                                            "memory": 256}])
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=f"{t}-task", desiredCount=3)
    # a deployment to roll back: revision 2 runs, 1 is the one before; version 2 is live, 1 the one before
    ecs.register_task_definition(family=f"{t}-task", containerDefinitions=[{"name": "app", "image": "app:2",
                                                                            "memory": 256}])
    deployed = f"{t}-deploy"
    ecs.create_service(cluster=cluster, serviceName=deployed, taskDefinition=f"{t}-task:2", desiredCount=1)
    fn_alias = f"{t}-alias"
    create_functions(world.env, {fn_alias: None})
    [lam] = clients(world.env, "lambda")
    for description in ("one", "two"):
        lam.update_function_configuration(FunctionName=fn_alias, Description=description)
        lam.get_waiter("function_updated_v2").wait(FunctionName=fn_alias)
        lam.publish_version(FunctionName=fn_alias)
    lam.create_alias(FunctionName=fn_alias, Name="live", FunctionVersion="2")
    playbook = tmp_path / "outcome.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Each writing module, failing after its first write", "hosts": "aws", "gather_facts": False,
        "module_defaults": {"group/runbook.recovery.aws": "{{ aws_connection }}"},
        "tasks": [
            # shutdown: the record is tagged, then PutFunctionConcurrency fails
            module_task("lambda_concurrency", names=[fn_stop], state="stopped"),
            # scaling: UpdateFunctionConfiguration is accepted, then PutFunctionConcurrency fails
            module_task("lambda_capacity", names=[fn_scale], state="present", memory_mb=512,
                        reserved_concurrency=3),
            # scaling: the record is tagged, AWS refuses UpdateTable, the record is taken back
            module_task("dynamodb_capacity", tables=[table], state="present", billing_mode="PAY_PER_REQUEST"),
            # retention: the missing group is created, then PutRetentionPolicy fails
            module_task("log_retention", groups=[group], retention_days=30),
            # shutdown of a stage: the record is tagged, then UpdateStage fails
            module_task("apigateway_stage_throttle", stages=[{"api": api, "stage": "prod"}], state="stopped"),
            # PITR on two tables, one at a time: the first turned on, the second refused
            module_task("dynamodb_pitr", tables=[pitr_first, pitr_second], workers=1),
            # shutdown of a service: the record is tagged, then UpdateService fails
            module_task("ecs_service_count", services=[{"cluster": cluster, "name": service}], state="stopped"),
            # backups of two tables, one after the other: the first made and its count recorded, the second refused
            module_task("dynamodb_backup", tables=[backup_first, backup_second], ensure_pitr=False),
            # rollbacks: the record of what runs is tagged, then UpdateService / UpdateAlias fails
            module_task("ecs_deployment", services=[{"cluster": cluster, "name": deployed}], state="rolled_back"),
            module_task("lambda_alias_rollback", aliases=[{"function": fn_alias, "alias": "live"}]),
        ]}]))
    aws_emulator.inject(
        {"operation": "PutFunctionConcurrency", "match": t, "code": "AccessDeniedException", "status": 403},
        {"operation": "UpdateTable", "match": table, "code": "LimitExceededException",
         "message": "Subscriber limit exceeded: Billing mode updates are limited."},
        {"operation": "PutRetentionPolicy", "match": group, "code": "AccessDeniedException", "status": 403},
        {"operation": "UpdateStage", "match": api, "code": "AccessDeniedException", "status": 403},
        {"operation": "UpdateContinuousBackups", "match": pitr_second, "code": "AccessDeniedException",
         "status": 400},
        {"operation": "UpdateService", "match": service, "code": "AccessDeniedException", "status": 400},
        {"operation": "CreateBackup", "match": backup_second, "code": "AccessDeniedException", "status": 400},
        {"operation": "UpdateService", "match": deployed, "code": "AccessDeniedException", "status": 400},
        {"operation": "UpdateAlias", "match": fn_alias, "code": "AccessDeniedException", "status": 403})
    ws = AwsWorkspace(tmp_path, world.env, {})
    run, tasks = ws.play_json(str(playbook))
    results = {name: hosts["testaws"] for name, hosts in tasks.items()}
    assert all(result.get("failed") for result in results.values()), run.output[-3000:]

    # shutdown: the record is still on the function, and says so; the concurrency is still 7
    message = results["lambda_concurrency"]["msg"]
    assert "AccessDeniedException" in message and "Nothing was changed" not in message, message
    assert "Changed before the failure and still in place: record runbook:previous-reserved-concurrency=7" in message
    tags = aws(world.env, "lambda", "list-tags", "--resource", arn(world, fn_stop))["Tags"]
    assert tags["runbook:previous-reserved-concurrency"] == "7" and "runbook:stopped-at" in tags
    assert concurrency(world, fn_stop) == 7

    # scaling: the memory is 512 (accepted before the failure), the reserved concurrency still 5
    message = results["lambda_capacity"]["msg"]
    assert f"UpdateFunctionConfiguration of {arn(world, fn_scale)} accepted (MemorySize)" in message, message
    assert "Nothing was changed" not in message
    config = aws(world.env, "lambda", "get-function-configuration", "--function-name", fn_scale)
    assert config["MemorySize"] == 512 and concurrency(world, fn_scale) == 5

    # AWS refused the switch: the record written before it was removed, and the message says nothing is left
    message = results["dynamodb_capacity"]["msg"]
    assert "Changed before the failure, then undone: record runbook:scale-previous-" in message, message
    assert "runbook:scale-previous-billing-mode=PROVISIONED" in message
    assert "Nothing is left changed." in message
    described = aws(world.env, "dynamodb", "describe-table", "--table-name", table)["Table"]
    assert described.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED") == "PROVISIONED"
    table_tags = aws(world.env, "dynamodb", "list-tags-of-resource", "--resource-arn", described["TableArn"])
    assert [tag for tag in table_tags.get("Tags", []) if tag["Key"].startswith("runbook:")] == []

    # retention: the group exists (created before the failure), without retention
    result = results["log_retention"]
    assert f"Changed before the failure and still in place: log group {group} created" in result["msg"], result
    assert result["changes"] == [f"log group {group} created"]
    [found] = aws(world.env, "logs", "describe-log-groups", "--log-group-name-prefix", group)["logGroups"]
    assert found["logGroupName"] == group and "retentionInDays" not in found

    # the stage: its record is tagged (and said), its throttling untouched
    message = results["apigateway_stage_throttle"]["msg"]
    assert "Changed before the failure and still in place: record runbook:previous-throttling-burst-limit=500" \
        in message and "Nothing was changed" not in message, message
    stage = aws(world.env, "apigatewayv2", "get-stage", "--api-id", api, "--stage-name", "prod")
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 500
    assert aws(world.env, "apigatewayv2", "get-tags", "--resource-arn",
               f"arn:aws:apigateway:{world.env['AWS_DEFAULT_REGION']}::/apis/{api}/stages/prod"
               )["Tags"]["runbook:previous-throttling-burst-limit"] == "500"

    # PITR: on for the first table (said), off for the second
    message = results["dynamodb_pitr"]["msg"]
    assert f"Changed before the failure and still in place: point-in-time recovery of {pitr_first} turned on" \
        in message, message
    assert [aws(world.env, "dynamodb", "describe-continuous-backups", "--table-name", name)[
        "ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
        for name in (pitr_first, pitr_second)] == ["ENABLED", "DISABLED"]

    # the service: its record is tagged (and said), its desired count still 3
    message = results["ecs_service_count"]["msg"]
    assert "Changed before the failure and still in place: record runbook:previous-desired-count=3" in message, \
        message
    [described] = aws(world.env, "ecs", "describe-services", "--cluster", cluster, "--services", service,
                      "--include", "TAGS")["services"]
    assert described["desiredCount"] == 3
    assert {tag["key"]: tag["value"] for tag in described["tags"]}["runbook:previous-desired-count"] == "3"

    # backups: the first table's backup and its count record are named, and exist; the second has none
    result = results["dynamodb_backup"]
    [made] = aws(world.env, "dynamodb", "list-backups", "--table-name", backup_first)["BackupSummaries"]
    assert f"Changed before the failure and still in place: backup {made['BackupName']} of {backup_first} " \
           "created" in result["msg"], result["msg"]
    assert any(change.startswith(f"item count of {made['BackupName']} (1) recorded in SSM parameter")
               for change in result["changes"]), result["changes"]
    assert aws(world.env, "dynamodb", "list-backups", "--table-name", backup_second)["BackupSummaries"] == []

    # rollbacks: the record is tagged and said; revision 2 and version 2 still run
    for module in ("ecs_deployment", "lambda_alias_rollback"):
        message = results[module]["msg"]
        assert "Changed before the failure and still in place: record runbook:" in message, message
        assert "Nothing was changed" not in message
    [described] = aws(world.env, "ecs", "describe-services", "--cluster", cluster, "--services", deployed,
                      "--include", "TAGS")["services"]
    assert described["taskDefinition"].endswith(f"{t}-task:2")
    assert any(tag["key"].startswith("runbook:") for tag in described["tags"])
    assert aws(world.env, "lambda", "get-alias", "--function-name", fn_alias, "--name", "live")["FunctionVersion"] \
        == "2"
    assert any(key.startswith("runbook:") for key in aws(world.env, "lambda", "list-tags", "--resource",
                                                          arn(world, fn_alias))["Tags"])

    # every injected fault was hit (none of the messages above came from elsewhere)
    assert {entry["operation"] for entry in aws_emulator.injected()} == {
        "PutFunctionConcurrency", "UpdateTable", "PutRetentionPolicy", "UpdateStage", "UpdateContinuousBackups",
        "UpdateService", "CreateBackup", "UpdateAlias"}


def arn(world: World, name: str) -> str:
    return f"arn:aws:lambda:{world.env['AWS_DEFAULT_REGION']}:123456789012:function:{name}"


def concurrency(world: World, name: str) -> int | None:
    found = aws(world.env, "lambda", "get-function-concurrency", "--function-name", name, cli=False)
    return found.get("ReservedConcurrentExecutions")

