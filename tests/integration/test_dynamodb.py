"""DynamoDB backups and restores against the AWS emulator over HTTP: backups with retention, PITR and an exact item
count kept in SSM, restores into a new table with the same items and with what AWS drops put back (PITR, TTL,
stream, tags, deletion protection, auto scaling, alarms), the consumer's variable repointed, and put back on any
failure after it; failures that say what was changed and what was undone."""

from __future__ import annotations

import json

import pytest
from aws_world import AwsWorkspace, aws, clients, create_functions

BACKUP, RECOVER = "backup-dynamodb.yml", "recover-dynamodb.yml"


@pytest.fixture
def dynamo(aws_emulator, tmp_path):
    """A table of 30 sessions, a function that reads it through SESSIONS_TABLE, and a workspace for both."""
    aws_emulator.clear_faults()
    env = dict(aws_emulator)
    tag = tmp_path.name[-20:].replace("_", "-").strip("-")
    table = f"{tag}-sessions"
    [ddb, lam] = clients(env, "dynamodb", "lambda")
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for i in range(30):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"session-{i}"}, "user": {"S": f"user-{i % 7}"},
                                             "turns": {"N": str(i * 3)}})
    function = f"{tag}-handler"
    create_functions(env, {function: None})
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": {
        "SESSIONS_TABLE": table, "MODEL": "claude"}})
    ws = AwsWorkspace(tmp_path, env, {})
    ws.extra = {"dynamodb_tables": [table], "dynamodb_consumers": {table: {"function": function,
                                                                            "variable": "SESSIONS_TABLE"}}}
    ws.write_inventory({})
    return {"env": env, "table": table, "function": function, "ws": ws, "ddb": ddb, "lam": lam}


def items(ddb, table: str) -> list:
    found, start = [], None
    while True:
        page = ddb.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        found += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return sorted(found, key=lambda item: item["pk"]["S"])


def backups(env, table: str) -> list[str]:
    listed = aws(env, "dynamodb", "list-backups", "--table-name", table)["BackupSummaries"]
    return sorted(b["BackupName"] for b in listed)


def variables(lam, function: str) -> dict:
    return lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]


def test_backup_turns_pitr_on_and_a_second_run_changes_nothing(dynamo):
    ws, env, table = dynamo["ws"], dynamo["env"], dynamo["table"]
    plan = ws.play(BACKUP, check=True)
    assert plan.rc == 0, plan.output
    assert backups(env, table) == []
    pitr = aws(env, "dynamodb", "describe-continuous-backups", "--table-name", table)
    assert pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == \
        "DISABLED"

    run = ws.play(BACKUP)
    assert run.rc == 0 and run.changed == 1, run.output
    [name] = backups(env, table)
    assert name.startswith(f"{table}-")
    pitr = aws(env, "dynamodb", "describe-continuous-backups", "--table-name", table)
    assert pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == \
        "ENABLED"
    again = ws.play(BACKUP)
    assert again.rc == 0 and again.changed == 0, again.output
    assert backups(env, table) == [name]


def test_retention_keeps_the_newest_and_never_the_last_one(dynamo):
    ws, env, table, ddb = dynamo["ws"], dynamo["env"], dynamo["table"], dynamo["ddb"]
    for i in range(4):
        ddb.create_backup(TableName=table, BackupName=f"{table}-old-{i}")
    run = ws.play(BACKUP, dynamodb_backup_keep_last=2, dynamodb_backup_skip_if_newer_than="0")
    assert run.rc == 0, run.output
    kept = backups(env, table)
    assert len(kept) == 2 and f"{table}-old-3" in kept and not any(k.endswith(("old-0", "old-1", "old-2"))
                                                                    for k in kept)
    # keep_last=1 with a maximum age nothing has reached: the newest stays whatever happens.
    once = ws.play(BACKUP, dynamodb_backup_keep_last=1, dynamodb_backup_max_age_days=30)
    assert once.rc == 0 and len(backups(env, table)) == 2
    bad = ws.play(BACKUP, dynamodb_backup_keep_last=0)
    assert bad.rc != 0 and bad.says("keep at least 1 backup")


def test_restore_from_backup_brings_the_same_items_and_repoints_the_function(dynamo):
    ws, table, ddb, lam, function = dynamo["ws"], dynamo["table"], dynamo["ddb"], dynamo["lam"], dynamo["function"]
    assert ws.play(BACKUP).rc == 0
    original = items(ddb, table)
    ddb.delete_item(TableName=table, Key={"pk": {"S": "session-3"}})  # the incident

    audited = ws.audit()
    plan = ws.play(RECOVER, check=True, table=table)
    assert plan.rc == 0 and plan.says(f"would restore {table} from {table}-"), plan.output
    assert ws.audit() == audited, "the check mode wrote an audit record"
    assert variables(lam, function)["SESSIONS_TABLE"] == table
    tables_now = ddb.list_tables()["TableNames"]
    assert not [t for t in tables_now if t.startswith(f"{table}-restored-")], "the check mode restored a table"
    unconfirmed = ws.play(RECOVER, table=table)
    assert unconfirmed.rc != 0 and unconfirmed.says("Not confirmed: nothing was changed")

    run = ws.play(RECOVER, confirm=True, table=table)
    assert run.rc == 0, run.output
    restored = variables(lam, function)["SESSIONS_TABLE"]
    assert restored.startswith(f"{table}-restored-")
    assert items(ddb, restored) == original  # every item, every attribute
    assert variables(lam, function)["MODEL"] == "claude"  # the other variable untouched
    assert len(items(ddb, table)) == 29  # the source table is never changed
    again = ws.play(RECOVER, confirm=True, table=table)
    assert again.rc == 0 and again.changed == 0, again.output
    [record] = [r for r in ws.audit() if r["procedure"] == "recover-dynamodb" and r["result"] == "recovered"]
    assert record["previous_value"] == table and record["item_count"] == 30


def test_a_sealed_plan_restores_the_backup_it_resolved_not_a_newer_one(dynamo):
    """--check -e plan_out=FILE resolves latest-backup once; a backup of the damaged table taken after the plan is
    not what was reviewed, so the apply restores the planned one. A consumer repointed after the plan refuses the
    apply with nothing changed."""
    ws, table, ddb, lam, function = dynamo["ws"], dynamo["table"], dynamo["ddb"], dynamo["lam"], dynamo["function"]
    assert ws.play(BACKUP).rc == 0
    original = items(ddb, table)
    ddb.delete_item(TableName=table, Key={"pk": {"S": "session-3"}})  # the incident
    plan_file = ws.base / "restore.json"
    made = ws.play(RECOVER, check=True, table=table, plan_out=str(plan_file))
    assert made.rc == 0, made.output
    planned = json.loads(plan_file.read_text())["inputs"]["restore_from"]
    ddb.create_backup(TableName=table, BackupName=f"{table}-after-the-incident")  # the nightly backup lands

    lam.update_function_configuration(FunctionName=function, Environment={"Variables": {
        "SESSIONS_TABLE": f"{table}-elsewhere", "MODEL": "claude"}})
    refused = ws.play(RECOVER, plan=str(plan_file), confirm=True)
    assert refused.rc != 0 and refused.says("no longer holds, so nothing was changed"), refused.output
    assert refused.says(f"{table}-elsewhere"), refused.output
    assert not [t for t in ddb.list_tables()["TableNames"] if t.startswith(f"{table}-restored-")]

    lam.update_function_configuration(FunctionName=function, Environment={"Variables": {
        "SESSIONS_TABLE": table, "MODEL": "claude"}})
    run = ws.play(RECOVER, plan=str(plan_file), confirm=True)
    assert run.rc == 0, run.output
    restored = variables(lam, function)["SESSIONS_TABLE"]
    assert items(ddb, restored) == original  # the planned backup's 30 items, not the newer backup's 29
    [record] = [r for r in ws.audit() if r["procedure"] == "recover-dynamodb" and r["result"] == "recovered"]
    assert record["source"]["arn"] == planned and record["item_count"] == 30


def test_an_unknown_table_or_none_named_is_refused(dynamo):
    ws = dynamo["ws"]
    assert ws.play(RECOVER, confirm=True, table="nope-table").says("no DynamoDB table 'nope-table'")
    assert ws.play(RECOVER, confirm=True).says("Name the table to restore")


COUNTS = "/runbook/dynamodb-backup-counts"
READ_UTILIZATION = {"PredefinedMetricSpecification": {"PredefinedMetricType": "DynamoDBReadCapacityUtilization"}}


def empty_table(ddb, name: str) -> str:
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    return name


def restored_tables(ddb, table: str) -> list[str]:
    return sorted(t for t in ddb.list_tables()["TableNames"] if t.startswith(f"{table}-restored-"))


def test_a_restore_puts_back_what_aws_drops_and_counts_exactly(dynamo):
    """A source with PITR, TTL, a stream, tags, deletion protection, auto scaling and two alarms: the restored table
    has each, read back; the count recorded at backup time is compared exactly (AWS's ItemCount still says 0); a
    rerun changes nothing; a tampered count refuses and keeps the table."""
    ws, env, table, ddb, lam, function = (dynamo[k] for k in ("ws", "env", "table", "ddb", "lam", "function"))
    aas, cw, ssm = clients(env, "application-autoscaling", "cloudwatch", "ssm")
    ddb.update_table(TableName=table, BillingMode="PROVISIONED",
                     ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    ddb.update_table(TableName=table, DeletionProtectionEnabled=True)
    ddb.tag_resource(ResourceArn=ddb.describe_table(TableName=table)["Table"]["TableArn"], Tags=[
        {"Key": "team", "Value": "chat"}, {"Key": "cost-center", "Value": "42"},
        {"Key": "runbook:scale-previous-read-capacity", "Value": "5"}])
    aas.register_scalable_target(ServiceNamespace="dynamodb", ResourceId=f"table/{table}", MinCapacity=5,
                                 MaxCapacity=50, ScalableDimension="dynamodb:table:ReadCapacityUnits")
    aas.put_scaling_policy(PolicyName="read-target", ServiceNamespace="dynamodb", ResourceId=f"table/{table}",
                           ScalableDimension="dynamodb:table:ReadCapacityUnits", PolicyType="TargetTrackingScaling",
                           TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **READ_UTILIZATION})
    topic = "arn:aws:sns:us-east-1:123456789012:oncall"
    cw.put_metric_alarm(AlarmName=f"{table}-read-throttles", Namespace="AWS/DynamoDB", MetricName="ReadThrottleEvents",
                        Dimensions=[{"Name": "TableName", "Value": table}], Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
                        AlarmActions=[topic], Tags=[{"Key": "team", "Value": "chat"}])
    cw.put_metric_alarm(AlarmName="sessions-get-errors", Namespace="AWS/DynamoDB", MetricName="SystemErrors",
                        Dimensions=[{"Name": "TableName", "Value": table}, {"Name": "Operation", "Value": "GetItem"}],
                        Statistic="Sum", Period=300, EvaluationPeriods=2, Threshold=5.0,
                        ComparisonOperator="GreaterThanThreshold", OKActions=[topic])

    backed_up = ws.play(BACKUP)
    assert backed_up.rc == 0 and backed_up.says("(30 items, recorded in"), backed_up.output
    [backup] = aws(env, "dynamodb", "list-backups", "--table-name", table, cli=False)["BackupSummaries"]
    record = f"{COUNTS}/{table}/{backup['BackupArn'].rsplit('/', 1)[-1]}"
    assert json.loads(ssm.get_parameter(Name=record)["Parameter"]["Value"])["item_count"] == 30
    assert ddb.describe_table(TableName=table)["Table"]["ItemCount"] == 0  # AWS's count lags: no basis to compare

    run = ws.play(RECOVER, confirm=True, table=table, dynamodb_recover_check_item={"pk": {"S": "session-3"}})
    assert run.rc == 0, run.output
    assert run.says("count check exact: 30 items, 30 counted when the backup was taken"), run.output
    [restored] = restored_tables(ddb, table)
    assert variables(lam, function)["SESSIONS_TABLE"] == restored
    # What a person checks: a few through the AWS CLI, the rest through boto3.
    pitr = aws(env, "dynamodb", "describe-continuous-backups", "--table-name", restored)
    assert pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == \
        "ENABLED"
    described = ddb.describe_table(TableName=restored)["Table"]
    tags = aws(env, "dynamodb", "list-tags-of-resource", "--resource-arn", described["TableArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "chat", "cost-center": "42"}  # not the source's records
    assert ddb.describe_time_to_live(TableName=restored)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}
    assert described["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert described["DeletionProtectionEnabled"] is True
    [target] = aas.describe_scalable_targets(ServiceNamespace="dynamodb",
                                             ResourceIds=[f"table/{restored}"])["ScalableTargets"]
    assert (target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == \
        ("dynamodb:table:ReadCapacityUnits", 5, 50)
    [policy] = aas.describe_scaling_policies(ServiceNamespace="dynamodb", ResourceId=f"table/{restored}")[
        "ScalingPolicies"]
    assert policy["PolicyName"] == "read-target"
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70.0
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]
              if {"Name": "TableName", "Value": restored} in a.get("Dimensions", [])}
    tracking = {name for name in alarms if name.startswith(f"TargetTracking-table/{restored}-")}
    assert len(tracking) == 4  # made by the policy put on the new table, as AWS does, not copied
    assert set(alarms) - tracking == {f"{restored}-read-throttles", f"sessions-get-errors-{restored}"}
    assert alarms[f"{restored}-read-throttles"]["AlarmActions"] == [topic]
    assert cw.list_tags_for_resource(ResourceARN=alarms[f"{restored}-read-throttles"]["AlarmArn"])["Tags"] == [
        {"Key": "team", "Value": "chat"}]
    errors = alarms[f"sessions-get-errors-{restored}"]
    assert errors["Dimensions"] == [{"Name": "TableName", "Value": restored}, {"Name": "Operation", "Value": "GetItem"}]
    assert (errors["Threshold"], errors["Period"], errors["OKActions"]) == (5.0, 300, [topic])

    again = ws.play(RECOVER, confirm=True, table=table)
    assert again.rc == 0 and again.changed == 0, again.output

    # A count record changed by hand: the restore refuses after counting, keeps its table, repoints nothing.
    ssm.put_parameter(Name=record, Overwrite=True, Type="String",
                      Value=json.dumps({"backup_arn": backup["BackupArn"], "item_count": 31}))
    tampered = ws.play(RECOVER, confirm=True, table=table, dynamodb_recover_target_table=f"{table}-tampered")
    assert tampered.rc != 0
    assert tampered.says(f"{table}-tampered failed the count check: it holds 30 items but 31 were counted when the "
                         "backup was taken. Nothing was repointed"), tampered.output
    assert tampered.says(f"Changed before the failure and still in place: table {table}-tampered restored from")
    assert ddb.describe_table(TableName=f"{table}-tampered")["Table"]["TableStatus"] == "ACTIVE"  # kept
    assert variables(lam, function)["SESSIONS_TABLE"] == restored


def test_failures_say_what_was_changed_and_what_was_undone(dynamo, aws_emulator):
    """A backup failing on its second table names what it did on the first; a restore failing after its first
    write names it and keeps it; a check_item key of the wrong shape puts the variable back and says so."""
    ws, env, table, ddb, lam, function = (dynamo[k] for k in ("ws", "env", "table", "ddb", "lam", "function"))
    [ssm] = clients(env, "ssm")
    other = empty_table(ddb, table.replace("-sessions", "-connections"))
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    ws.extra["dynamodb_tables"] = [table, other]
    ws.write_inventory({})

    aws_emulator.inject({"operation": "CreateBackup", "match": other, "code": "AccessDeniedException"})
    run = ws.play(BACKUP)
    assert run.rc != 0 and run.says("backing up DynamoDB failed: AccessDeniedException"), run.output
    [backup] = aws(env, "dynamodb", "list-backups", "--table-name", table)["BackupSummaries"]
    record = f"{COUNTS}/{table}/{backup['BackupArn'].rsplit('/', 1)[-1]}"
    assert run.says(f"Changed before the failure and still in place: point-in-time recovery of {table} turned on; "
                    f"backup {backup['BackupName']} of {table} created; item count of {backup['BackupName']} (30) "
                    f"recorded in SSM parameter {record}; point-in-time recovery of {other} turned on."), run.output
    assert aws(env, "dynamodb", "list-backups", "--table-name", other)["BackupSummaries"] == []
    pitr = aws(env, "dynamodb", "describe-continuous-backups", "--table-name", other)
    assert pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == \
        "ENABLED"
    assert json.loads(ssm.get_parameter(Name=record)["Parameter"]["Value"])["item_count"] == 30

    aws_emulator.inject({"operation": "UpdateTimeToLive", "code": "AccessDeniedException"})
    failed = ws.play(RECOVER, confirm=True, table=table)
    assert failed.rc != 0, failed.output
    [restored] = restored_tables(ddb, table)
    assert failed.says(f"Changed before the failure and still in place: table {restored} restored from "
                       f"{backup['BackupName']}; point-in-time recovery of {restored} turned on (35 days)."), \
        failed.output
    assert ddb.describe_time_to_live(TableName=restored)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
    assert ddb.describe_continuous_backups(TableName=restored)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert variables(lam, function)["SESSIONS_TABLE"] == table

    aws_emulator.clear_faults()
    wrong = ws.play(RECOVER, confirm=True, table=table, dynamodb_recover_check_item={"id": {"S": "session-3"}})
    assert wrong.rc != 0
    assert wrong.says("the check after repointing failed (the check failed: ValidationException: The provided key "
                      f"element does not match the schema): SESSIONS_TABLE of {function} is back to '{table}'; "
                      f"{restored} is kept for inspection."), wrong.output
    assert wrong.says(f"Changed before the failure and still in place: TTL of {restored} turned on (attribute "
                      f"expires). Undone: SESSIONS_TABLE of {function} set to {restored} (put back to '{table}').")
    assert variables(lam, function) == {"SESSIONS_TABLE": table, "MODEL": "claude"}
    assert ddb.describe_time_to_live(TableName=restored)["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    assert restored_tables(ddb, table) == [restored]  # kept for inspection
    assert [r["result"] for r in ws.audit() if r["procedure"] == "recover-dynamodb"] == ["failed", "rolled_back"]


BAD_REQUESTS = {
    "future": ({"restore_from": "pitr", "restore_time": "2999-01-01T00:00:00Z"}, "is in the future"),
    "before the window": ({"restore_from": "pitr", "restore_time": "2001-01-01T00:00:00Z"},
                          "is before the point-in-time window"),
    "not a time": ({"restore_from": "pitr", "restore_time": "yesterday"}, "is not an ISO time"),
    "no such backup": ({"restore_from": "no-such-backup"}, "no backup 'no-such-backup'"),
    "tolerance below 0": ({"restore_from": "pitr", "count_tolerance": -0.1}, "count_tolerance=-0.1 is outside 0-1"),
    "tolerance above 1": ({"restore_from": "pitr", "count_tolerance": 1.5}, "count_tolerance=1.5 is outside 0-1"),
    "pitr off": ({"table": "{orders}", "restore_from": "pitr"}, "point-in-time recovery is not enabled on {orders}"),
    "no backup": ({"table": "{orders}"}, "{orders} has no available on-demand backup"),
}


def test_bad_requests_change_nothing_a_pitr_restore_works_and_a_partial_pitr_failure_names_what_changed(
        dynamo, aws_emulator, tmp_path):
    """One playbook of module runs (a playbook each would cost seconds apiece): bad restore requests (a time in the
    future, before the window, not a time, a backup that does not exist, a tolerance below 0 or above 1, PITR off,
    no backup) change nothing; a restore to the latest restorable time brings every item, and says it could not
    compare the count (AWS's ItemCount is not refreshed yet); point-in-time recovery failing on one of two tables
    names the other, which was changed."""
    ws, table, ddb, lam, function = (dynamo[k] for k in ("ws", "table", "ddb", "lam", "function"))
    assert ws.play(BACKUP).rc == 0  # PITR on, a backup
    orders, carts = empty_table(ddb, f"{table}-orders"), empty_table(ddb, f"{table}-carts")
    tasks = [{"name": name, "ignore_errors": True, "runbook.recovery.dynamodb_restore": {
        "table": table, "function": function, "variable": "SESSIONS_TABLE",
        **{key: value.format(orders=orders) if isinstance(value, str) else value for key, value in request.items()}}}
        for name, (request, _) in BAD_REQUESTS.items()]
    tasks.append({"name": "to a point in time", "runbook.recovery.dynamodb_restore": {
        "table": table, "restore_from": "pitr", "target_table": f"{table}-pitr"}})
    tasks.append({"name": "pitr", "runbook.recovery.dynamodb_pitr": {"tables": [orders, carts]},
                  "ignore_errors": True})
    playbook = tmp_path / "bad-input.yml"
    playbook.write_text(json.dumps([{"name": "Bad input", "hosts": "aws", "gather_facts": False, "tasks": tasks,
                                     "module_defaults": {"group/runbook.recovery.aws": "{{ aws_connection }}"}}]))
    tables = set(ddb.list_tables()["TableNames"])
    aws_emulator.inject({"operation": "UpdateContinuousBackups", "match": carts, "code": "AccessDeniedException"})
    _, results = ws.play_json(str(playbook))
    for name, (_, message) in BAD_REQUESTS.items():
        result = results[name]["testaws"]
        assert result["failed"] and message.format(orders=orders) in result["msg"] and not result["changed"], \
            (name, result)
        assert result["msg"].endswith("Nothing was changed."), (name, result["msg"])
    assert set(ddb.list_tables()["TableNames"]) == tables | {f"{table}-pitr"}
    pitr_restore = results["to a point in time"]["testaws"]
    assert pitr_restore["changed"] and pitr_restore["count_check"].startswith("none: no exact count was recorded")
    assert "point-in-time recovery (35 days)" in pitr_restore["settings_checked"]
    assert items(ddb, f"{table}-pitr") == items(ddb, table)
    assert variables(lam, function)["SESSIONS_TABLE"] == table
    pitr = results["pitr"]["testaws"]
    assert pitr["failed"] and pitr["msg"].startswith(f"1 of 2 tables failed: point-in-time recovery of {carts} failed")
    assert pitr["msg"].endswith(f"Changed before the failure and still in place: point-in-time recovery of {orders} "
                                "turned on.") and pitr["changes"] == [f"point-in-time recovery of {orders} turned on"]
    assert ddb.describe_continuous_backups(TableName=carts)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"


def test_repointing_keeps_an_environment_change_made_between_its_read_and_its_write(aws_emulator, tmp_path):
    """Someone changes another variable of the function while the restore repoints it: the write names the
    revision it read, the emulator refuses it as AWS does (412 PreconditionFailedException), and the variable is
    set again on top of their change instead of writing back the map read before it."""
    from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import set_variable

    env = dict(aws_emulator)
    function = f"{tmp_path.name[-20:].replace('_', '-').strip('-')}-repoint"
    create_functions(env, {function: None})
    [lam, someone] = clients(env, "lambda", "lambda")
    someone.update_function_configuration(FunctionName=function,
                                          Environment={"Variables": {"TABLE": "sessions", "MODE": "live"}})
    stale = lam.get_function_configuration(FunctionName=function)["RevisionId"]
    someone.update_function_configuration(FunctionName=function,
                                          Environment={"Variables": {"TABLE": "sessions", "MODE": "live", "X": "1"}})
    with pytest.raises(Exception) as refused:  # AWS's rule, as the emulator now keeps it
        lam.update_function_configuration(FunctionName=function, RevisionId=stale,
                                          Environment={"Variables": {"TABLE": "t"}})
    assert refused.value.response["Error"]["Code"] == "PreconditionFailedException"

    class Racing:
        """The real client; someone else's real write lands just after its first read."""
        def __init__(self):
            self.raced = False

        def __getattr__(self, name):
            return getattr(lam, name)

        def get_function_configuration(self, **kwargs):
            read = lam.get_function_configuration(**kwargs)
            if not self.raced:
                self.raced = True
                someone.update_function_configuration(FunctionName=function, Environment={"Variables": {
                    **read["Environment"]["Variables"], "MODE": "maintenance"}})
            return read

    set_variable(Racing(), function, "TABLE", "sessions-restored")
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    assert variables == {"TABLE": "sessions-restored", "MODE": "maintenance", "X": "1"}
