# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon DynamoDB: capacity (scaling and its undo) and backups, point-in-time recovery and restores.

- Capacity: billing mode and the provisioned capacity of a table and its indexes (`DynamoCapacity`), under AWS's
  current rule for switching modes (at most four switches to on-demand in a rolling 24 hours, to provisioned at
  any time) and its LimitExceededException said in plain words.
- Backups: on-demand backups with retention that never removes the only (or the newest) backup, point-in-time
  recovery ensured.
- Restores: into a new table, waited on until ACTIVE (`table_state`: a state a table cannot leave by waiting ends
  the wait with AWS's reason) and counted exactly. The source table is never deleted or changed."""

from __future__ import annotations

import contextlib
import datetime
import math
import re
import time

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    describe_error,
    error_code,
    fail_at_once,
    paginate,
    region_of,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    isoformat,
    parse_iso,
    utc_now,
)
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome, said
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    SCALE,
    Current,
    Kind,
    Resource,
)
from ansible_collections.runbook.recovery.plugins.module_utils.waits import wait_until

# -- DynamoDB capacity (scaling) ------------------------------------------------------------------
CAPACITY_LIMITS = (1, 40000)  # AWS's default per-table quota for read and write capacity units
# "You can switch tables from provisioned capacity mode to on-demand mode up to four times in a 24-hour rolling
# window. You can switch tables from on-demand mode to provisioned capacity mode at any time."
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/switching.capacitymode.html)
ON_DEMAND_SWITCHES, SWITCH_WINDOW_SECONDS = 4, 24 * 3600
# DescribeTable shows only the last switch to on-demand; the times of those this tool made are kept on the table,
# so the plan can count them. Switches made elsewhere are not in it: AWS's refusal is then reported instead.
SWITCH_HISTORY_TAG = "runbook:on-demand-switches"
_NEXT_TRY = re.compile(r"next (?:update|decrease) can be made at ([^.]+)", re.IGNORECASE)


def utc_text(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def distinct_switches(switches: list[float]) -> list[float]:
    """One time per switch, oldest first: the recorded time and DescribeTable's of one switch are the same to the
    millisecond (AWS's precision), and two switches are never that close."""
    return sorted({round(moment * 1000): moment for moment in switches}.values())


def on_demand_switch_refusal(switches: list[float], now: float) -> str | None:
    """Why AWS would refuse a switch to on-demand now, given the times (epoch seconds) of earlier switches to
    on-demand, duplicates allowed; None when it would not."""
    recent = [moment for moment in distinct_switches(switches) if now - moment < SWITCH_WINDOW_SECONDS]
    if len(recent) < ON_DEMAND_SWITCHES:
        return None
    possible = math.ceil(recent[-ON_DEMAND_SWITCHES] + SWITCH_WINDOW_SECONDS)
    return (f"AWS allows at most {ON_DEMAND_SWITCHES} switches of a table from provisioned to on-demand "
            f"(PAY_PER_REQUEST) in any rolling 24 hours, and this table made {len(recent)}, at "
            f"{', '.join(utc_text(moment) for moment in recent)}. The next switch to on-demand is possible after "
            f"{utc_text(possible)}; switching to PROVISIONED is allowed at any time. Nothing was changed.")


def explain_update_limit(message: str) -> str:
    """AWS's LimitExceededException on UpdateTable in plain words: which limit, and when the next try can succeed
    if AWS's message says."""
    squashed = re.sub(r"[^a-z]", "", message.lower())
    said = _NEXT_TRY.search(message)
    if "payperrequest" in squashed or "ondemand" in squashed:
        text = (f"AWS refused the switch to on-demand (PAY_PER_REQUEST): a table can switch from provisioned to "
                f"on-demand at most {ON_DEMAND_SWITCHES} times in any rolling 24 hours, and this table has used them "
                "(switching to PROVISIONED is allowed at any time)")
        when = (f"AWS says the next switch is possible at {said.group(1).strip()}" if said else
                "AWS did not say when the next switch is possible: 24 hours after the oldest of the last "
                f"{ON_DEMAND_SWITCHES} switches to on-demand")
    elif "decrease" in squashed:
        text = ("AWS refused to lower the provisioned capacity: DynamoDB limits how many times a day a table's "
                "capacity can be decreased")
        when = (f"AWS says the next decrease is possible at {said.group(1).strip()}" if said else
                "AWS did not say when the next decrease is possible")
    else:
        text = "AWS refused the update with LimitExceededException (an account or table limit)"
        when = f"AWS says the next try is possible at {said.group(1).strip()}" if said else ""
    return f"{text}{'; ' + when if when else ''}. AWS's message: {message.rstrip('. ')}"


def switch_history(tags: dict) -> list[float]:
    """The switches to on-demand recorded on a table; an unreadable entry is skipped (AWS still enforces the rule)."""
    moments = []
    for text in tags.get(SWITCH_HISTORY_TAG, "").split():
        with contextlib.suppress(ValueError):
            moments.append(parse_iso(text).timestamp())
    return moments


def last_switch_to_on_demand(table: dict) -> float | None:
    last = (table.get("BillingModeSummary") or {}).get("LastUpdateToPayPerRequestDateTime")
    if last is None:
        return None
    return last.timestamp() if hasattr(last, "timestamp") else float(last)


# A table in one of these states will not become ACTIVE by waiting (ARCHIVED: its KMS key was inaccessible for
# seven days; only a restore from a backup brings the data back).
TABLE_CANNOT_BECOME_ACTIVE = {
    "DELETING": "the table is being deleted",
    "INACCESSIBLE_ENCRYPTION_CREDENTIALS": "the table's AWS KMS key is inaccessible (disabled, or its grant revoked)",
    "ARCHIVING": "the table is being archived: its AWS KMS key has been inaccessible for seven days",
    "ARCHIVED": "the table is archived: its AWS KMS key was inaccessible for seven days",
}
TABLE_WAIT_SECONDS = 1800


def table_state(table: dict, indexes: bool = False) -> tuple[str, str]:
    """A DynamoDB table (DescribeTable's `Table`), for wait_until: done when ACTIVE (with `indexes`, every global
    secondary index too); a status it cannot leave by waiting ends the wait with what AWS says."""
    status = table["TableStatus"]
    if status in TABLE_CANNOT_BECOME_ACTIVE:
        archived = (table.get("ArchivalSummary") or {}).get("ArchivalReason")
        return "failed", f"{status}: {TABLE_CANNOT_BECOME_ACTIVE[status]}" + (f" ({archived})" if archived else "")
    busy = [status] if status != "ACTIVE" else []
    if indexes:
        busy += [f"{i['IndexName']} {i['IndexStatus']}" for i in table.get("GlobalSecondaryIndexes") or []
                 if i.get("IndexStatus", "ACTIVE") != "ACTIVE"]
    return ("pending", ", ".join(busy)) if busy else ("done", "ACTIVE")


def wait_table_active(ddb, name: str, wait_seconds: float = TABLE_WAIT_SECONDS, what: str | None = None,
                      indexes: bool = False) -> dict:
    """Wait until table `name` is ACTIVE (see table_state); a table that disappears ends the wait too. Returns
    the table as DescribeTable gave it last."""
    table: dict = {}

    def check() -> tuple[str, str]:
        try:
            found = ddb.describe_table(TableName=name)["Table"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return "failed", "the table no longer exists"
            raise
        table.clear()
        table.update(found)
        return table_state(found, indexes)

    wait_until(check, wait_seconds, what or f"table {name} becoming ACTIVE")
    return table


class DynamoCapacity(Kind):
    """Billing mode and provisioned capacity of a table and its global secondary indexes. GSI settings are
    named `gsi/<index>/read_capacity`; their tag suffixes `gsi/<index>/read-capacity`."""

    noun = "DynamoDB table"
    settings = {"billing_mode": ("billing-mode", str), "read_capacity": ("read-capacity", int),
                "write_capacity": ("write-capacity", int)}
    wait_seconds = 600

    def suffix(self, setting: str) -> str:
        if setting.startswith("gsi/"):
            return setting.replace("_", "-")
        return super().suffix(setting)

    def setting(self, suffix: str) -> tuple[str, type] | None:
        if suffix.startswith("gsi/") and suffix.rsplit("/", 1)[-1] in ("read-capacity", "write-capacity"):
            return suffix[:suffix.rindex("/") + 1] + suffix.rsplit("/", 1)[-1].replace("-", "_"), int
        return super().setting(suffix)

    def read(self, resource: Resource) -> Current:
        ddb = self.clients("dynamodb")
        try:
            table = ddb.describe_table(TableName=resource.name)["Table"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise RunbookError("the table no longer exists") from None
            raise
        mode = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
        on_demand = mode == "PAY_PER_REQUEST"

        def capacity(throughput, member):
            return None if on_demand else (throughput or {}).get(member)

        values = {"billing_mode": mode,
                  "read_capacity": capacity(table.get("ProvisionedThroughput"), "ReadCapacityUnits"),
                  "write_capacity": capacity(table.get("ProvisionedThroughput"), "WriteCapacityUnits")}
        for index in table.get("GlobalSecondaryIndexes") or []:
            for member, setting in (("ReadCapacityUnits", "read_capacity"), ("WriteCapacityUnits", "write_capacity")):
                values[f"gsi/{index['IndexName']}/{setting}"] = capacity(index.get("ProvisionedThroughput"), member)
        tags = paginate(ddb, "list_tags_of_resource", "Tags", ResourceArn=resource.arn)
        return Current(values, {t["Key"]: t["Value"] for t in tags}, table)

    def related(self, changing: dict, current: Current) -> dict:
        """Leaving provisioned mode loses the capacities: record them too, or an undo could not set them back."""
        if changing.get("billing_mode") == "PAY_PER_REQUEST":
            return {key: value for key, value in current.values.items() if key.endswith("_capacity")}
        return {}

    def check(self, current: Current, changing: dict) -> None:
        """AWS's rules, as clear errors before any change."""
        if changing.get("billing_mode") == "PAY_PER_REQUEST":
            last = last_switch_to_on_demand(current.raw)
            refusal = on_demand_switch_refusal(switch_history(current.tags) + ([last] if last else []), time.time())
            if refusal:
                raise RunbookError(refusal)
        mode = changing.get("billing_mode", current.values["billing_mode"])
        capacities = {k: v for k, v in changing.items() if k.endswith("_capacity") and v is not None}
        if capacities and mode == "PAY_PER_REQUEST":
            raise RunbookError("the table is (or is becoming) PAY_PER_REQUEST: capacities apply only to PROVISIONED "
                               "tables; give dynamodb_billing_mode=PROVISIONED with them. Nothing was changed.")
        low, high = CAPACITY_LIMITS
        for key, value in capacities.items():
            if not low <= value <= high:
                raise RunbookError(f"{key}={value} is outside {low}-{high} capacity units (AWS's default table "
                                   "quota; ask AWS to raise it first). Nothing was changed.")
        unknown = sorted(set(changing) - set(current.values))
        if unknown:
            indexes = sorted({key.split("/")[1] for key in current.values if key.startswith("gsi/")})
            raise RunbookError(f"the table has no {', '.join(unknown)} (its indexes: {', '.join(indexes) or 'none'}). "
                               "Nothing was changed.")

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        target = {**current.values, **values}
        provisioned = target["billing_mode"] == "PROVISIONED"
        update: dict = {}
        if values.get("billing_mode", current.values["billing_mode"]) != current.values["billing_mode"]:
            update["BillingMode"] = target["billing_mode"]
        if provisioned and ("BillingMode" in update or {"read_capacity", "write_capacity"} & set(values)):
            update["ProvisionedThroughput"] = {"ReadCapacityUnits": target["read_capacity"],
                                              "WriteCapacityUnits": target["write_capacity"]}
        indexes = sorted({key.split("/")[1] for key in target if key.startswith("gsi/")})
        gsi_updates = []
        for index in indexes:
            keys = (f"gsi/{index}/read_capacity", f"gsi/{index}/write_capacity")
            if provisioned and ("BillingMode" in update or set(keys) & set(values)):
                gsi_updates.append({"Update": {"IndexName": index, "ProvisionedThroughput": {
                    "ReadCapacityUnits": target[keys[0]], "WriteCapacityUnits": target[keys[1]]}}})
        if gsi_updates:
            update["GlobalSecondaryIndexUpdates"] = gsi_updates
        if not update:
            return
        ddb = self.clients("dynamodb")
        fail_at_once(ddb, "UpdateTable", "LimitExceededException")
        try:
            ddb.update_table(TableName=resource.name, **update)
        except Exception as exc:
            if error_code(exc) != "LimitExceededException":
                raise
            raise self._limit_refusal(resource, current, exc) from None
        said(outcome, f"UpdateTable of {resource.name} accepted ({', '.join(sorted(update))})")
        table = self.wait_active(resource.name)
        if update.get("BillingMode") == "PAY_PER_REQUEST":
            self._remember_switch(resource, current, last_switch_to_on_demand(table) or time.time())

    def _limit_refusal(self, resource: Resource, current: Current, exc: Exception) -> RunbookError:
        """AWS changed nothing on the table; take back the scaling record written just before, so that is all true."""
        message = explain_update_limit(exc.response.get("Error", {}).get("Message", str(exc)))
        written: list = []
        try:
            tags = paginate(self.clients("dynamodb"), "list_tags_of_resource", "Tags", ResourceArn=resource.arn)
            written = sorted(tag["Key"] for tag in tags if tag["Key"] not in current.tags
                             and (tag["Key"].startswith(SCALE.prefix) or tag["Key"] == SCALE.stamp))
            if written:
                self.untag(resource, written)
        except Exception as cleanup:
            return RunbookError(f"{message}. The table's billing mode and capacities are unchanged, but the scaling "
                                f"record written just before ({', '.join(written) or 'runbook:scale-* tags'}) may "
                                f"remain ({describe_error(cleanup, 'removing it')}): remove those tags by hand.")
        return RunbookError(f"{message}. The table's billing mode and capacities are unchanged.",
                            record_removed=bool(written))

    def _remember_switch(self, resource: Resource, current: Current, switched: float) -> None:
        kept = [moment for moment in switch_history(current.tags) if switched - moment < SWITCH_WINDOW_SECONDS]
        history = " ".join(isoformat(datetime.datetime.fromtimestamp(moment, datetime.UTC))
                           for moment in distinct_switches([*kept, switched]))
        # Only a hint for the next plan: the switch itself succeeded, and without the hint AWS's own refusal of a
        # fifth switch is still reported in plain words.
        with contextlib.suppress(Exception):
            self.tag(resource, {SWITCH_HISTORY_TAG: history})

    def wait_active(self, name: str) -> dict:
        return wait_table_active(self.clients("dynamodb"), name, self.wait_seconds, what="the update",
                                 indexes=True)

    def tag(self, resource: Resource, tags: dict) -> None:
        self.clients("dynamodb").tag_resource(ResourceArn=resource.arn,
                                              Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def untag(self, resource: Resource, keys: list) -> None:
        self.clients("dynamodb").untag_resource(ResourceArn=resource.arn, TagKeys=keys)


def resolve_tables(clients, names: list[str]) -> list[Resource]:
    if not names:
        raise RunbookError("no DynamoDB tables selected: give table names.")
    existing = set(paginate(clients("dynamodb"), "list_tables", "TableNames"))
    missing = [name for name in names if name not in existing]
    if missing:
        raise RunbookError(f"no DynamoDB table {', '.join(map(repr, missing))} in {region_of(clients('dynamodb'))} "
                           f"(tables: {', '.join(sorted(existing)) or 'none'}). Nothing was changed.")
    ddb = clients("dynamodb")
    return [Resource(name, ddb.describe_table(TableName=name)["Table"]["TableArn"]) for name in names]

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
