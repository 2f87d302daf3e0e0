# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DynamoDB backups and restores: on-demand backups with retention that never removes the only (or the
newest) backup, point-in-time recovery ensured, and restores into a new table that is checked before a
Lambda function is pointed at it (and pointed back if the check after fails). The source table is
never deleted or changed."""

from __future__ import annotations

import datetime

from ansible_collections.runbook.recovery.plugins.module_utils.aws import error_code, paginate
from ansible_collections.runbook.recovery.plugins.module_utils.aws_resources import (
    TABLE_WAIT_SECONDS,
    update_function_configuration,
    wait_table_active,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    isoformat,
    utc_now,
)
from ansible_collections.runbook.recovery.plugins.module_utils.waits import wait_until

WAIT_SECONDS = TABLE_WAIT_SECONDS  # a table, a backup, a restore, and the Lambda update that repoints a function


def as_utc(moment) -> datetime.datetime:
    if isinstance(moment, (int, float)):
        return datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return moment.astimezone(datetime.UTC)


def describe_table(ddb, name: str) -> dict:
    try:
        return ddb.describe_table(TableName=name)["Table"]
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            tables = paginate(ddb, "list_tables", "TableNames")
            raise RunbookError(f"no DynamoDB table {name!r} in {ddb.meta.region_name} (tables: "
                               f"{', '.join(tables) or 'none'}). Nothing was changed.") from None
        raise


def user_backups(ddb, table: str) -> list[dict]:
    """The table's on-demand backups that are AVAILABLE, newest first."""
    found = paginate(ddb, "list_backups", "BackupSummaries", TableName=table, BackupType="USER")
    available = [b for b in found if b.get("BackupStatus") == "AVAILABLE"]
    return sorted(available, key=lambda b: as_utc(b["BackupCreationDateTime"]), reverse=True)


def pitr_status(ddb, table: str) -> dict:
    return ddb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"].get(
        "PointInTimeRecoveryDescription", {})


def ensure_pitr(ddb, table: str, enabled: bool, check_mode: bool) -> dict:
    """Point-in-time recovery on (or off) for one table: {table, before, after, changed}."""
    before = pitr_status(ddb, table).get("PointInTimeRecoveryStatus", "DISABLED")
    after = "ENABLED" if enabled else "DISABLED"
    changed = (before == "ENABLED") != enabled
    if changed and not check_mode:
        ddb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": enabled})
    return {"table": table, "before": before, "after": after if changed else before, "changed": changed}


def backup_table(ddb, table: str, keep_last: int, max_age_days: float | None, skip_if_newer_than: float,
                 with_pitr: bool, check_mode: bool, now: datetime.datetime | None = None) -> dict:
    """One table: PITR on, a new backup unless a recent one exists, then retention. Facts for the result."""
    now = now or utc_now()
    describe_table(ddb, table)
    result = {"table": table, "created": None, "deleted": [], "pitr_enabled_now": False}
    if with_pitr:
        result["pitr_enabled_now"] = ensure_pitr(ddb, table, True, check_mode)["changed"]
    backups = user_backups(ddb, table)
    newest_age = (now - as_utc(backups[0]["BackupCreationDateTime"])).total_seconds() if backups else None
    if newest_age is None or newest_age >= skip_if_newer_than:
        name = f"{table}-{compact_timestamp(now)}"
        result["created"] = name
        if not check_mode:
            created = ddb.create_backup(TableName=table, BackupName=name)["BackupDetails"]
            wait_backup_available(ddb, created["BackupArn"])
            backups = user_backups(ddb, table)
    else:
        result["skipped_because"] = f"the newest backup {backups[0]['BackupName']} is {newest_age / 60:.0f} min old"
    result["deleted"] = [b["BackupName"] for b in expired(backups, keep_last, max_age_days, now)]
    if not check_mode:
        for backup in expired(backups, keep_last, max_age_days, now):
            ddb.delete_backup(BackupArn=backup["BackupArn"])
    result["kept"] = [b["BackupName"] for b in backups if b["BackupName"] not in result["deleted"]]
    result["changed"] = bool(result["created"] or result["deleted"] or result["pitr_enabled_now"])
    return result


def expired(backups: list[dict], keep_last: int, max_age_days: float | None, now: datetime.datetime) -> list[dict]:
    """Backups (newest first) past both limits: beyond the newest `keep_last` and, when a maximum age is given,
    older than it. The newest backup is never expired, so a table always keeps at least one."""
    doomed = []
    for position, backup in enumerate(backups):
        if position == 0 or position < keep_last:
            continue
        if max_age_days is not None and (now - as_utc(backup["BackupCreationDateTime"])).days < max_age_days:
            continue
        doomed.append(backup)
    return doomed


def backup_state(details: dict) -> tuple[str, str]:
    """A backup (DescribeBackup's BackupDetails), for wait_until: AVAILABLE, or DELETED, which it never leaves."""
    status = details["BackupStatus"]
    if status == "DELETED":
        return "failed", "DELETED: the backup was deleted before it became AVAILABLE"
    return ("done" if status == "AVAILABLE" else "pending"), status


def wait_backup_available(ddb, arn: str, wait_seconds: float = WAIT_SECONDS) -> None:
    def check() -> tuple[str, str]:
        try:
            return backup_state(ddb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"])
        except Exception as exc:
            if error_code(exc) == "BackupNotFoundException":
                return "failed", "the backup no longer exists"
            raise

    wait_until(check, wait_seconds, f"backup {arn} becoming AVAILABLE")


# -- restore --------------------------------------------------------------------------------------
def choose_source(ddb, table: str, restore_from: str, restore_time: str | None, now: datetime.datetime) -> dict:
    """What to restore: {kind: backup|pitr, arn, name, at, item_count}; every refusal comes before any change."""
    describe_table(ddb, table)
    if restore_from == "pitr":
        pitr = pitr_status(ddb, table)
        if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
            raise RunbookError(f"point-in-time recovery is not enabled on {table}: restore from a backup "
                               "(-e restore_from=latest-backup), and enable it (backup-dynamodb.yml) for next time.")
        if restore_time in (None, "", "latest"):
            return {"kind": "pitr", "at": None, "name": "latest restorable time"}
        try:
            moment = datetime.datetime.fromisoformat(restore_time.replace("Z", "+00:00"))
        except ValueError:
            raise RunbookError(f"restore_time {restore_time!r} is not an ISO time like 2026-11-23T10:00:00Z.") from None
        if moment.tzinfo is None:
            raise RunbookError(f"restore_time {restore_time!r} has no time zone: add Z for UTC.")
        earliest = pitr.get("EarliestRestorableDateTime")
        if moment > now:
            raise RunbookError(f"restore_time {restore_time} is in the future (now is {isoformat(now)}).")
        if earliest is not None and moment < as_utc(earliest):
            raise RunbookError(f"restore_time {restore_time} is before the point-in-time window of {table}, which "
                               f"starts at {isoformat(as_utc(earliest))}.")
        return {"kind": "pitr", "at": moment, "name": isoformat(moment)}
    backups = user_backups(ddb, table)
    if not backups:
        raise RunbookError(f"{table} has no available on-demand backup: take one (backup-dynamodb.yml) or restore "
                           "from a point in time (-e restore_from=pitr).")
    if restore_from == "latest-backup":
        chosen = backups[0]
    else:
        matches = [b for b in backups if restore_from in (b["BackupArn"], b["BackupName"])]
        if not matches:
            raise RunbookError(f"no backup {restore_from!r} of {table}; available: "
                               f"{', '.join(b['BackupName'] for b in backups[:10])}.")
        chosen = matches[0]
    source = ddb.describe_backup(BackupArn=chosen["BackupArn"])["BackupDescription"].get("SourceTableDetails", {})
    return {"kind": "backup", "arn": chosen["BackupArn"], "name": chosen["BackupName"],
            "at": as_utc(chosen["BackupCreationDateTime"]), "item_count": source.get("ItemCount")}


def target_name(table: str, source: dict, now: datetime.datetime) -> str:
    """<table>-restored-<time of the data>: the same request names the same table, so a rerun does not restore
    twice."""
    return f"{table}-restored-{compact_timestamp(source['at'] or now)}"


def count_items(ddb, table: str) -> int:
    """An exact count (a full Scan with Select=COUNT; DescribeTable's ItemCount lags by hours)."""
    total, start = 0, None
    while True:
        page = ddb.scan(TableName=table, Select="COUNT", **({"ExclusiveStartKey": start} if start else {}))
        total += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return total


def restore(ddb, table: str, source: dict, target: str) -> None:
    if source["kind"] == "backup":
        ddb.restore_table_from_backup(TargetTableName=target, BackupArn=source["arn"])
    elif source["at"] is None:
        ddb.restore_table_to_point_in_time(SourceTableName=table, TargetTableName=target,
                                           UseLatestRestorableTime=True)
    else:
        ddb.restore_table_to_point_in_time(SourceTableName=table, TargetTableName=target,
                                           RestoreDateTime=source["at"])
    wait_table_active(ddb, target, WAIT_SECONDS)


def table_exists(ddb, name: str) -> bool:
    try:
        ddb.describe_table(TableName=name)
        return True
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise


# -- pointing a Lambda function at the restored table ---------------------------------------------
def function_variables(lam, function: str) -> dict:
    try:
        config = lam.get_function_configuration(FunctionName=function)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise RunbookError(f"Lambda function {function!r} does not exist: nothing was changed.") from None
        raise
    return dict((config.get("Environment") or {}).get("Variables") or {})


def set_variable(lam, function: str, variables: dict, name: str, value: str | None) -> None:
    """Only the one variable changes (None: it is removed); every other variable is sent back as it was."""
    others = {key: kept for key, kept in variables.items() if key != name}
    update_function_configuration(lam, function, {"Environment": {"Variables": {
        **others, **({} if value is None else {name: value})}}}, f"the update of {function}", WAIT_SECONDS)
