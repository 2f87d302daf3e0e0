"""DynamoDB backups and restores against the AWS emulator over HTTP: backups with retention and PITR, restores
into a new table with the same items, the consumer's variable repointed, and put back when the check fails."""

from __future__ import annotations

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

    plan = ws.play(RECOVER, check=True, table=table)
    assert plan.rc == 0 and plan.says(f"would restore {table} from {table}-"), plan.output
    assert variables(lam, function)["SESSIONS_TABLE"] == table
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


def test_restore_to_a_point_in_time(dynamo):
    ws, table, ddb = dynamo["ws"], dynamo["table"], dynamo["ddb"]
    assert ws.play(BACKUP).rc == 0  # turns PITR on
    run = ws.play(RECOVER, confirm=True, table=table, restore_from="pitr",
                  dynamodb_recover_target_table=f"{table}-pitr")
    assert run.rc == 0, run.output
    assert items(ddb, f"{table}-pitr") == items(ddb, table)


def test_a_failed_check_puts_the_variable_back(dynamo):
    ws, table, lam, function, ddb = dynamo["ws"], dynamo["table"], dynamo["lam"], dynamo["function"], dynamo["ddb"]
    assert ws.play(BACKUP).rc == 0
    run = ws.play(RECOVER, confirm=True, table=table, dynamodb_recover_check_item={"pk": {"S": "session-missing"}})
    assert run.rc != 0
    assert run.says("the check after repointing failed") and run.says(f"SESSIONS_TABLE of {function} is back to")
    assert variables(lam, function) == {"SESSIONS_TABLE": table, "MODEL": "claude"}
    kept = [t for t in ddb.list_tables()["TableNames"] if t.startswith(f"{table}-restored-")]
    assert len(kept) == 1  # kept for inspection
    assert [r["result"] for r in ws.audit() if r["procedure"] == "recover-dynamodb"] == ["rolled_back"]


@pytest.mark.parametrize(("extra", "message"), [
    ({"restore_from": "pitr", "restore_time": "2999-01-01T00:00:00Z"}, "is in the future"),
    ({"restore_from": "pitr", "restore_time": "2001-01-01T00:00:00Z"}, "is before the point-in-time window"),
    ({"restore_from": "pitr", "restore_time": "yesterday"}, "is not an ISO time"),
    ({"restore_from": "no-such-backup"}, "no backup 'no-such-backup'"),
])
def test_bad_restore_requests_are_refused_before_any_change(dynamo, extra, message):
    ws, table, ddb, lam, function = dynamo["ws"], dynamo["table"], dynamo["ddb"], dynamo["lam"], dynamo["function"]
    assert ws.play(BACKUP).rc == 0
    tables = set(ddb.list_tables()["TableNames"])
    run = ws.play(RECOVER, confirm=True, table=table, **extra)
    assert run.rc != 0 and run.says(message), run.output
    assert set(ddb.list_tables()["TableNames"]) == tables
    assert variables(lam, function)["SESSIONS_TABLE"] == table


def test_unknown_table_and_pitr_off_are_refused(dynamo):
    ws, table = dynamo["ws"], dynamo["table"]
    assert ws.play(RECOVER, confirm=True, table="nope-table").says("no DynamoDB table 'nope-table'")
    off = ws.play(RECOVER, confirm=True, table=table, restore_from="pitr")
    assert off.rc != 0 and off.says(f"point-in-time recovery is not enabled on {table}")
    none = ws.play(RECOVER, confirm=True, table=table)
    assert none.rc != 0 and none.says(f"{table} has no available on-demand backup")
    assert ws.play(RECOVER, confirm=True).says("Name the table to restore")
