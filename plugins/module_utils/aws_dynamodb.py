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
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    delete_parameter,
    describe_error,
    error_code,
    fail_at_once,
    paginate,
    region_of,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_cloudwatch import (
    alarm_differences,
    alarms_named,
    alarms_on,
    moved_alarm,
    put_alarm,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import function_variables, set_variable
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    compact_timestamp,
    isoformat,
    parse_iso,
    utc_now,
)
from ansible_collections.runbook.recovery.plugins.module_utils.journal import crash_point
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
    if isinstance(last, str):  # a plan's row: the read went through JSON
        try:
            return float(last)
        except ValueError:
            moment = datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()
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
    raw_kept = ("BillingModeSummary",)  # check(): AWS's own time of the last switch to on-demand
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


# -- backups --------------------------------------------------------------------------------------
WAIT_SECONDS = TABLE_WAIT_SECONDS  # a table, a backup, a restore, and the Lambda update that repoints a function
# A backup's exact item count is kept in SSM Parameter Store, one String parameter per backup, named
# <prefix>/<table>/<backup id> and holding {"backup_arn", "item_count", "counted_at", "segments"}. Not a tag on the
# backup: "DynamoDB does not support assigning tags to backups unless you first enable Advanced DynamoDB backup"
# (AWS Backup Developer Guide, Copying tags onto backups). Retention removes a backup's record with the backup.
COUNT_RECORD_PREFIX = "/runbook/dynamodb-backup-counts"
COUNT_SEGMENTS = 4  # Scan segments counted in parallel
MAX_SEGMENTS = 1_000_000  # Scan's TotalSegments
COUNT_WORKERS = 16
# Without a recorded count, the restored table's count may differ from AWS's approximate ItemCount (refreshed about
# every six hours) by this share of the larger of the two.
COUNT_TOLERANCE = 0.1
_SSM_NAME = re.compile(r"/[A-Za-z0-9_.\-/]*")


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


def ensure_pitr(ddb, table: str, enabled: bool, check_mode: bool, outcome: Outcome | None = None) -> dict:
    """Point-in-time recovery on (or off) for one table: {table, before, after, changed}."""
    before = pitr_status(ddb, table).get("PointInTimeRecoveryStatus", "DISABLED")
    after = "ENABLED" if enabled else "DISABLED"
    changed = (before == "ENABLED") != enabled
    if changed and not check_mode:
        ddb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": enabled})
        said(outcome, f"point-in-time recovery of {table} turned {'on' if enabled else 'off'}")
    return {"table": table, "before": before, "after": after if changed else before, "changed": changed}


def check_count_options(segments: int, prefix: str, tolerance: float | None = None) -> None:
    """The counting options, refused before any change."""
    if not 1 <= segments <= MAX_SEGMENTS:
        raise RunbookError(f"count_segments={segments}: give 1 to {MAX_SEGMENTS} (Scan's TotalSegments). "
                           "Nothing was changed.")
    if not _SSM_NAME.fullmatch(prefix) or len(prefix) > 900:
        raise RunbookError(f"count_record_prefix={prefix!r} is not an SSM parameter path: start it with / and use "
                           "letters, digits, _ . - and /. Nothing was changed.")
    if tolerance is not None and not 0 <= tolerance <= 1:
        raise RunbookError(f"count_tolerance={tolerance} is outside 0-1: it is the share of the larger count by "
                           "which the restored table's count may differ from AWS's approximate one (0: equal, 1: any "
                           "count). Nothing was changed.")


def count_items(ddb, table: str, segments: int = COUNT_SEGMENTS) -> int:
    """An exact count: a strongly consistent parallel Scan with Select=COUNT, the segments counted at once (at most
    16 at a time). DescribeTable's ItemCount is refreshed only about every six hours."""
    def segment(number: int) -> int:
        split = {"TotalSegments": segments, "Segment": number} if segments > 1 else {}
        total, start = 0, None
        while True:
            page = ddb.scan(TableName=table, Select="COUNT", ConsistentRead=True, **split,
                            **({"ExclusiveStartKey": start} if start else {}))
            total += page["Count"]
            start = page.get("LastEvaluatedKey")
            if not start:
                return total

    if segments == 1:
        return segment(0)
    with ThreadPoolExecutor(max_workers=min(segments, COUNT_WORKERS)) as pool:
        return sum(pool.map(segment, range(segments)))


def count_record_name(prefix: str, table: str, backup_arn: str) -> str:
    return f"{prefix.rstrip('/')}/{table}/{backup_arn.rsplit('/', 1)[-1]}"


def record_count(ssm, name: str, backup_arn: str, count: int, segments: int, counted_at: datetime.datetime) -> None:
    ssm.put_parameter(Name=name, Type="String", Overwrite=True,
                      Description="Exact item count of a DynamoDB backup, taken when it was made (runbook.recovery)",
                      Value=json.dumps({"backup_arn": backup_arn, "item_count": count, "segments": segments,
                                        "counted_at": isoformat(counted_at)}, sort_keys=True))


def recorded_count(ssm, name: str, backup_arn: str) -> int | None:
    """The count recorded for a backup, None when there is no record; a record this procedure did not write as it
    stands (another backup's, not a count) is refused."""
    try:
        text = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise
    try:
        record = json.loads(text)
        count = record["item_count"]
        # A whole number, not a bool (which isinstance counts as an int).
        sound = (record["backup_arn"] == backup_arn and isinstance(count, int) and not isinstance(count, bool)
                 and count >= 0)
    except (ValueError, KeyError, TypeError):
        sound = False
    if not sound:
        raise RunbookError(f"the item-count record {name} is not the one this procedure wrote for backup "
                           f"{backup_arn} ({text[:200]!r}). Restore another backup, or delete the record (aws ssm "
                           f"delete-parameter --name {name}) to compare with AWS's approximate count. Nothing was "
                           "changed.")
    return count


def forget_count(ssm, name: str) -> bool:
    return delete_parameter(ssm, name)


def backup_table(clients, table: str, keep_last: int, max_age_days: float | None, skip_if_newer_than: float,
                 with_pitr: bool, check_mode: bool, outcome: Outcome | None = None, count: bool = True,
                 segments: int = COUNT_SEGMENTS, count_prefix: str = COUNT_RECORD_PREFIX,
                 now: datetime.datetime | None = None) -> dict:
    """One table: PITR on, a new backup unless a recent one exists, counted exactly, then retention. Each write AWS
    accepts is said to `outcome`. Facts for the result.

    The count is a parallel Scan just before CreateBackup and another once the backup is AVAILABLE: equal counts
    are recorded (the table did not change meanwhile, so the backup holds that many items); different ones are
    not, and a restore from that backup compares with AWS's approximate count instead."""
    now = now or utc_now()
    ddb = clients("dynamodb")
    describe_table(ddb, table)
    result = {"table": table, "created": None, "deleted": [], "pitr_enabled_now": False, "item_count": None,
              "count_record": None}
    if with_pitr:
        result["pitr_enabled_now"] = ensure_pitr(ddb, table, True, check_mode, outcome)["changed"]
    backups = user_backups(ddb, table)
    newest_age = (now - as_utc(backups[0]["BackupCreationDateTime"])).total_seconds() if backups else None
    if newest_age is None or newest_age >= skip_if_newer_than:
        name = f"{table}-{compact_timestamp(now)}"
        result["created"] = name
        if not check_mode:
            before = count_items(ddb, table, segments) if count else None
            arn = ddb.create_backup(TableName=table, BackupName=name)["BackupDetails"]["BackupArn"]
            said(outcome, f"backup {name} of {table} created")
            wait_backup_available(ddb, arn)
            if count:
                after = count_items(ddb, table, segments)
                if after == before:
                    record = count_record_name(count_prefix, table, arn)
                    record_count(clients("ssm"), record, arn, after, segments, now)
                    said(outcome, f"item count of {name} ({after}) recorded in SSM parameter {record}")
                    result.update(item_count=after, count_record=record)
                else:
                    result["count_note"] = (f"{table} changed while it was counted ({before} items before the "
                                            f"backup, {after} after): no exact count recorded; a restore from {name} "
                                            "compares with AWS's approximate count")
            backups = user_backups(ddb, table)
    else:
        result["skipped_because"] = f"the newest backup {backups[0]['BackupName']} is {newest_age / 60:.0f} min old"
    doomed = expired(backups, keep_last, max_age_days, now)
    result["deleted"] = [b["BackupName"] for b in doomed]
    if not check_mode:
        for backup in doomed:
            ddb.delete_backup(BackupArn=backup["BackupArn"])
            said(outcome, f"backup {backup['BackupName']} of {table} deleted")
            record = count_record_name(count_prefix, table, backup["BackupArn"])
            if count and forget_count(clients("ssm"), record):
                said(outcome, f"its item-count record {record} deleted")
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
    """What to restore: {kind: backup|pitr, arn, name, at, approximate_count}; every refusal comes before any
    change. `approximate_count` is AWS's ItemCount: of the table when the backup was taken, or of the table now."""
    described = describe_table(ddb, table)
    if restore_from == "pitr":
        pitr = pitr_status(ddb, table)
        if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
            raise RunbookError(f"point-in-time recovery is not enabled on {table}: restore from a backup "
                               "(-e restore_from=latest-backup), and enable it (backup-dynamodb.yml) for next time.")
        approximate = described.get("ItemCount")
        if restore_time in (None, "", "latest"):
            return {"kind": "pitr", "at": None, "name": "latest restorable time", "approximate_count": approximate}
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
        return {"kind": "pitr", "at": moment, "name": isoformat(moment), "approximate_count": approximate}
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
            "at": as_utc(chosen["BackupCreationDateTime"]), "approximate_count": source.get("ItemCount")}


def target_name(table: str, source: dict, now: datetime.datetime) -> str:
    """<table>-restored-<time of the data>: the same request names the same table, so a rerun does not restore
    twice."""
    return f"{table}-restored-{compact_timestamp(source['at'] or now)}"


def restore(ddb, table: str, source: dict, target: str) -> None:
    if source["kind"] == "backup":
        ddb.restore_table_from_backup(TargetTableName=target, BackupArn=source["arn"])
    elif source["at"] is None:
        ddb.restore_table_to_point_in_time(SourceTableName=table, TargetTableName=target,
                                           UseLatestRestorableTime=True)
    else:
        ddb.restore_table_to_point_in_time(SourceTableName=table, TargetTableName=target,
                                           RestoreDateTime=source["at"])


def table_exists(ddb, name: str) -> bool:
    try:
        ddb.describe_table(TableName=name)
        return True
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise


def compare_counts(restored: int, recorded: int | None, approximate: int | None,
                   tolerance: float) -> tuple[str, str | None]:
    """(the comparison made, in words; why the restored table fails it, or None). Exact against a recorded count;
    otherwise within `tolerance` of the larger count against AWS's approximate ItemCount, which is 0 (and says
    nothing) until AWS first refreshes it."""
    if recorded is not None:
        said_ = f"exact: {restored} items, {recorded} counted when the backup was taken"
        return said_, None if restored == recorded else f"it holds {restored} items but {recorded} were counted " \
                                                        "when the backup was taken"
    if not approximate:
        return (f"none: no exact count was recorded and AWS's approximate ItemCount is {approximate} (refreshed about "
                f"every six hours), so {restored} items cannot be checked"), None
    allowed = tolerance * max(restored, approximate)
    said_ = (f"approximate: {restored} items against AWS's ItemCount of {approximate} (refreshed about every six "
             f"hours), tolerance {tolerance:g}")
    if abs(restored - approximate) > allowed:
        return said_, (f"it holds {restored} items, more than {tolerance:g} of the larger count away from AWS's "
                       f"approximate ItemCount of {approximate} (raise count_tolerance, up to 1, if the table "
                       "changed that much since the restore time)")
    return said_, None


# -- what a restore drops: read from the source, put on the restored table, read back ------------------------
COPIED_SETTINGS = ("pitr", "ttl", "stream", "tags", "deletion_protection", "auto_scaling", "alarms")
NOT_COPIED_TAGS = ("runbook:", "aws:")  # this tool's records of the source's own state; AWS's reserved prefix
SCALING = "dynamodb"  # Application Auto Scaling's service namespace


def _moved(value, old: str, new: str):
    """`value` with every {Name: TableName, Value: old} dimension naming `new` (a customized scaling metric)."""
    if isinstance(value, dict):
        if value.get("Name") == "TableName" and value.get("Value") == old:
            return {**value, "Value": new}
        return {key: _moved(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_moved(item, old, new) for item in value]
    return value


class SettingsCopy:
    """The settings AWS does not carry over to a restored table (PITR, TTL, stream, tags, deletion protection, auto
    scaling targets and policies, CloudWatch alarms), read from `source` and put on `target`, then read back.

    A table's settings, relative to the table so that two tables' compare: {pitr: days or None, ttl: attribute or
    None, stream: view type or None, tags: {}, deletion_protection: bool, auto_scaling: {targets: {key: {...}},
    policies: {key: {...}}}, alarms: {name: definition}}, scaling keys `<index/NAME or table> <dimension>`. Only
    what the source has is put; the restored table's own extras are left alone."""

    def __init__(self, clients, source: str, target: str, wanted=COPIED_SETTINGS):
        self.clients, self.source, self.target, self.wanted = clients, source, target, tuple(wanted)
        self.of_source: dict | None = None

    # -- reading
    def read(self, name: str) -> dict:
        ddb = self.clients("dynamodb")
        described = ddb.describe_table(TableName=name)["Table"]
        settings: dict = {}
        if "pitr" in self.wanted:
            pitr = pitr_status(ddb, name)
            settings["pitr"] = (pitr.get("RecoveryPeriodInDays") or 35) \
                if pitr.get("PointInTimeRecoveryStatus") == "ENABLED" else None
        if "ttl" in self.wanted:
            ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            settings["ttl"] = ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") \
                else None
        if "stream" in self.wanted:
            stream = described.get("StreamSpecification") or {}
            settings["stream"] = stream.get("StreamViewType") if stream.get("StreamEnabled") else None
        if "tags" in self.wanted:
            tags = paginate(ddb, "list_tags_of_resource", "Tags", ResourceArn=described["TableArn"])
            settings["tags"] = {t["Key"]: t["Value"] for t in tags if not t["Key"].startswith(NOT_COPIED_TAGS)}
        if "deletion_protection" in self.wanted:
            settings["deletion_protection"] = bool(described.get("DeletionProtectionEnabled"))
        if "auto_scaling" in self.wanted:
            settings["auto_scaling"] = self._scaling(name, described)
        return settings

    def _scaling(self, name: str, described: dict) -> dict:
        aas = self.clients("application-autoscaling")
        base = f"table/{name}"
        resources = [base] + [f"{base}/index/{index['IndexName']}"
                              for index in described.get("GlobalSecondaryIndexes") or []]

        def key(item: dict) -> str:
            return f"{item['ResourceId'][len(base) + 1:] or 'table'} {item['ScalableDimension']}"

        targets, policies = {}, {}
        for target in paginate(aas, "describe_scalable_targets", "ScalableTargets", ServiceNamespace=SCALING,
                               ResourceIds=resources):
            suspended = {k: v for k, v in (target.get("SuspendedState") or {}).items() if v}
            targets[key(target)] = {"min": target["MinCapacity"], "max": target["MaxCapacity"],
                                    **({"suspended": suspended} if suspended else {})}
            for policy in paginate(aas, "describe_scaling_policies", "ScalingPolicies", ServiceNamespace=SCALING,
                                   ResourceId=target["ResourceId"], ScalableDimension=target["ScalableDimension"]):
                if (policy["ResourceId"], policy["ScalableDimension"]) != (target["ResourceId"],
                                                                           target["ScalableDimension"]):
                    continue
                configuration = {member: policy[member] for member in (
                    "TargetTrackingScalingPolicyConfiguration", "StepScalingPolicyConfiguration",
                    "PredictiveScalingPolicyConfiguration") if policy.get(member)}
                policies[f"{key(policy)} {policy['PolicyName']}"] = {
                    "type": policy["PolicyType"], "configuration": configuration, "arn": policy["PolicyARN"]}
        return {"targets": targets, "policies": policies}

    def read_source(self) -> dict:
        """The source's settings, read once (before any change: a source that cannot be read fails the plan)."""
        if self.of_source is None:
            self.of_source = self.read(self.source)
            if "alarms" in self.wanted:
                self.of_source["alarms"] = alarms_on(self.clients("cloudwatch"), "TableName", self.source)
        return self.of_source

    def expected(self, policy_arns: dict | None = None) -> dict:
        """The source's settings as the restored table must have them."""
        source = self.read_source()
        wanted = {key: value for key, value in source.items() if key not in ("auto_scaling", "alarms")}
        if "auto_scaling" in source:
            wanted["auto_scaling"] = {
                "targets": source["auto_scaling"]["targets"],
                "policies": {key: {**policy, "configuration": _moved(policy["configuration"], self.source,
                                                                     self.target)}
                             for key, policy in source["auto_scaling"]["policies"].items()}}
        if "alarms" in source:
            moved = [moved_alarm(alarm, "TableName", self.source, self.target, policy_arns)
                     for alarm in source["alarms"]]
            wanted["alarms"] = {alarm["AlarmName"]: alarm for alarm in moved}
        return wanted

    def current(self, expected: dict, exists: bool = True) -> dict:
        """The restored table's settings (none while it does not exist), alarms by the names expected."""
        if not exists:
            return {"pitr": None, "ttl": None, "stream": None, "tags": {}, "deletion_protection": False,
                    "auto_scaling": {"targets": {}, "policies": {}}, "alarms": {}}
        current = self.read(self.target)
        if "alarms" in expected:
            current["alarms"] = alarms_named(self.clients("cloudwatch"), sorted(expected["alarms"]))
        return current

    # -- comparing
    @staticmethod
    def missing(expected: dict, current: dict) -> list[str]:
        """What of `expected` the table lacks, one phrase each; [] when it has everything."""
        lacks = []
        if expected.get("pitr") and current.get("pitr") != expected["pitr"]:
            lacks.append(f"point-in-time recovery ({expected['pitr']} days)")
        if expected.get("ttl") and current.get("ttl") != expected["ttl"]:
            lacks.append(f"TTL on {expected['ttl']}")
        if expected.get("stream") and current.get("stream") != expected["stream"]:
            lacks.append(f"stream {expected['stream']}")
        tags = sorted(k for k, v in (expected.get("tags") or {}).items() if (current.get("tags") or {}).get(k) != v)
        if tags:
            lacks.append(f"tags {', '.join(tags)}")
        for key, target in ((expected.get("auto_scaling") or {}).get("targets") or {}).items():
            if current["auto_scaling"]["targets"].get(key) != target:
                lacks.append(f"auto scaling target {key} ({target['min']}-{target['max']})")
        for key, policy in ((expected.get("auto_scaling") or {}).get("policies") or {}).items():
            found = current["auto_scaling"]["policies"].get(key)
            if not found or (found["type"], found["configuration"]) != (policy["type"], policy["configuration"]):
                lacks.append(f"scaling policy {key}")
        for name, alarm in (expected.get("alarms") or {}).items():
            differing = alarm_differences(alarm, current["alarms"].get(name))
            if differing:
                lacks.append(f"alarm {name} ({', '.join(differing)})")
        if expected.get("deletion_protection") and not current.get("deletion_protection"):
            lacks.append("deletion protection")
        return lacks

    def plan(self, exists: bool) -> list[str]:
        return self.missing(self.expected(), self.current(self.expected(), exists))

    # -- writing
    def apply(self, outcome: Outcome | None = None) -> list[str]:
        """Put what the restored table lacks, each write said to `outcome`; deletion protection last, so a failure
        before it leaves a table that can simply be deleted. Returns what was put."""
        expected = self.expected()
        current = self.current(expected)
        put = self.missing(expected, current)
        ddb, target = self.clients("dynamodb"), self.target
        if expected.get("pitr") and current["pitr"] != expected["pitr"]:
            self._enable_pitr(expected["pitr"])
            said(outcome, f"point-in-time recovery of {target} turned on ({expected['pitr']} days)")
        if expected.get("ttl") and current["ttl"] != expected["ttl"]:
            if current["ttl"]:
                ddb.update_time_to_live(TableName=target, TimeToLiveSpecification={
                    "Enabled": False, "AttributeName": current["ttl"]})
                said(outcome, f"TTL of {target} on {current['ttl']} turned off")
            ddb.update_time_to_live(TableName=target, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": expected["ttl"]})
            said(outcome, f"TTL of {target} turned on (attribute {expected['ttl']})")
        if expected.get("stream") and current["stream"] != expected["stream"]:
            if current["stream"]:
                self._update_table({"StreamSpecification": {"StreamEnabled": False}})
                said(outcome, f"stream of {target} ({current['stream']}) turned off")
            self._update_table({"StreamSpecification": {"StreamEnabled": True,
                                                        "StreamViewType": expected["stream"]}})
            said(outcome, f"stream of {target} turned on ({expected['stream']})")
        tags = {k: v for k, v in (expected.get("tags") or {}).items() if current["tags"].get(k) != v}
        if tags:
            arn = ddb.describe_table(TableName=target)["Table"]["TableArn"]
            ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())])
            said(outcome, f"tags {', '.join(sorted(tags))} put on {target}")
        policy_arns = self._put_scaling(expected, current, outcome) if "auto_scaling" in expected else {}
        if "alarms" in expected:
            expected = self.expected(policy_arns)  # a step scaling policy's alarm acts on the new policy
            cw = self.clients("cloudwatch")
            for name, alarm in expected["alarms"].items():
                if alarm_differences(alarm, current["alarms"].get(name)):
                    put_alarm(cw, alarm, current["alarms"].get(name), outcome)
        if expected.get("deletion_protection") and not current["deletion_protection"]:
            self._update_table({"DeletionProtectionEnabled": True})
            said(outcome, f"deletion protection of {target} turned on")
        return put

    def _update_table(self, update: dict) -> None:
        ddb = self.clients("dynamodb")
        ddb.update_table(TableName=self.target, **update)
        wait_table_active(ddb, self.target, WAIT_SECONDS, what=f"the update of {self.target}")

    def _enable_pitr(self, days: int) -> None:
        """AWS answers ContinuousBackupsUnavailableException while it is still enabling backups on a new table."""
        ddb = self.clients("dynamodb")
        specification = {"PointInTimeRecoveryEnabled": True, **({"RecoveryPeriodInDays": days} if days != 35 else {})}

        def attempt() -> tuple[str, str]:
            try:
                ddb.update_continuous_backups(TableName=self.target, PointInTimeRecoverySpecification=specification)
            except Exception as exc:
                if error_code(exc) == "ContinuousBackupsUnavailableException":
                    return "pending", "AWS is still enabling continuous backups on the table"
                raise
            return "done", "ENABLED"

        wait_until(attempt, WAIT_SECONDS, f"point-in-time recovery of {self.target}")

    def _put_scaling(self, expected: dict, current: dict, outcome: Outcome | None) -> dict:
        """Targets, then their policies (a policy needs its target). Returns {source policy ARN: new ARN}."""
        aas = self.clients("application-autoscaling")

        def resource(key: str) -> tuple[str, str]:
            where, dimension = key.split(" ")[:2]
            return f"table/{self.target}" + ("" if where == "table" else f"/{where}"), dimension

        for key, target in expected["auto_scaling"]["targets"].items():
            if current["auto_scaling"]["targets"].get(key) != target:
                resource_id, dimension = resource(key)
                aas.register_scalable_target(ServiceNamespace=SCALING, ResourceId=resource_id,
                                             ScalableDimension=dimension, MinCapacity=target["min"],
                                             MaxCapacity=target["max"],
                                             **({"SuspendedState": target["suspended"]} if "suspended" in target
                                                else {}))
                said(outcome, f"auto scaling target {dimension} of {resource_id} registered "
                              f"({target['min']}-{target['max']})")
        arns = {}
        for key, policy in expected["auto_scaling"]["policies"].items():
            found = current["auto_scaling"]["policies"].get(key)
            if found and (found["type"], found["configuration"]) == (policy["type"], policy["configuration"]):
                arns[policy["arn"]] = found["arn"]
                continue
            resource_id, dimension = resource(key)
            name = key.split(" ", 2)[2]
            answer = aas.put_scaling_policy(PolicyName=name, ServiceNamespace=SCALING, ResourceId=resource_id,
                                            ScalableDimension=dimension, PolicyType=policy["type"],
                                            **policy["configuration"])
            said(outcome, f"scaling policy {name} put on {dimension} of {resource_id}")
            arns[policy["arn"]] = answer["PolicyARN"]
        return arns

    def verify(self) -> list[str]:
        """Read the restored table back; what it still lacks is a failure. Returns the settings checked."""
        source = self.read_source()
        aas = self.clients("application-autoscaling") if "auto_scaling" in source else None
        arns = {}
        if aas is not None:
            current = self.read(self.target)["auto_scaling"]["policies"]
            arns = {policy["arn"]: current[key]["arn"] for key, policy in source["auto_scaling"]["policies"].items()
                    if key in current}
        expected = self.expected(arns)
        lacks = self.missing(expected, self.current(expected))
        if lacks:
            raise RunbookError(f"{self.target} read back without what {self.source} has: {'; '.join(lacks)}. "
                               f"Nothing was repointed; {self.target} is kept for inspection.")
        return self.summary(expected)

    @staticmethod
    def summary(settings: dict) -> list[str]:
        """The settings in words (what the result reports as copied and checked)."""
        words = []
        if settings.get("pitr"):
            words.append(f"point-in-time recovery ({settings['pitr']} days)")
        if settings.get("ttl"):
            words.append(f"TTL on {settings['ttl']}")
        if settings.get("stream"):
            words.append(f"stream {settings['stream']}")
        if settings.get("tags"):
            words.append(f"tags {', '.join(sorted(settings['tags']))}")
        if settings.get("deletion_protection"):
            words.append("deletion protection")
        for key, target in ((settings.get("auto_scaling") or {}).get("targets") or {}).items():
            words.append(f"auto scaling target {key} ({target['min']}-{target['max']})")
        words += [f"scaling policy {key}" for key in ((settings.get("auto_scaling") or {}).get("policies") or {})]
        words += [f"alarm {name}" for name in settings.get("alarms") or {}]
        return words


# -- repointing the consumer, as one unit with its rollback ------------------------------------------
def post_check(ddb, lam, function: str, variable: str, target: str, check_item: dict | None) -> str | None:
    """Why the repointed function is not right, or None (an AWS error, such as a check_item key of the wrong
    shape, is raised)."""
    now_set = function_variables(lam, function).get(variable)
    if now_set != target:
        return f"{variable} reads back as {now_set!r}, not {target!r}"
    if check_item and "Item" not in ddb.get_item(TableName=target, Key=check_item, ConsistentRead=True):
        return f"the item {check_item} is not in {target}"
    return None


def repoint_and_check(ddb, lam, function: str, variables: dict, variable: str, target: str,
                      check_item: dict | None, outcome: Outcome) -> None:
    """Set `variable` of `function` to `target`, then check; on ANY failure after AWS accepted the write (a check
    that fails, an AWS error of the check itself, a wait that fails), put the variable back as it was. The error
    says the variable was put back, or, if that failed too, that it still names `target` and what to do."""
    previous = variables.get(variable)
    try:
        set_variable(lam, function, variable, target)
    except Exception as exc:
        # The update may have been accepted before the wait failed: only a variable that reads back unchanged
        # means nothing was written.
        if function_variables(lam, function).get(variable) != target:
            raise
        step = outcome.wrote(f"{variable} of {function} set to {target}")
        _put_back(lam, function, variables, variable, previous, target, step, outcome,
                  describe_error(exc, f"the update of {function}"))
    step = outcome.wrote(f"{variable} of {function} set to {target}")
    try:
        problem = post_check(ddb, lam, function, variable, target, check_item)
    except Exception as exc:
        problem = str(exc) if isinstance(exc, RunbookError) else describe_error(exc, "the check")
    if problem:
        _put_back(lam, function, variables, variable, previous, target, step, outcome,
                  f"the check after repointing failed ({problem})")


def _put_back(lam, function: str, variables: dict, variable: str, previous: str | None, target: str, step,
              outcome: Outcome, why: str) -> None:
    try:
        set_variable(lam, function, variable, previous)
    except Exception as exc:
        reason = describe_error(exc, "putting it back")
        outcome.undo_failed(step, reason)
        back = f"--environment Variables={{{variable}={previous}}}" if previous is not None else "without it"
        raise RunbookError(f"{why}; putting {variable} of {function} back to {previous!r} failed too ({reason}): "
                           f"it still names {target}. Set it back by hand (aws lambda update-function-configuration "
                           f"--function-name {function}, keeping its other variables, {back}); {target} is kept for "
                           "inspection.", repointed=True, rolled_back=False) from None
    outcome.undid(step, f"put back to {previous!r}")
    raise RunbookError(f"{why}: {variable} of {function} is back to {previous!r}; {target} is kept for inspection.",
                       repointed=False, rolled_back=True)


class TableRestore:
    """A DynamoDB restore as one unit: plan (every refusal, before any change), then restore into a new table,
    count it (exactly against the backup's recorded count, or against AWS's approximate count within a tolerance),
    put back what the restore drops and read it back, repoint the consumer and check, with the repointing put back
    on any failure after it. The source table is never changed; a restored table is kept on any failure."""

    def __init__(self, clients, table: str, restore_from: str = "latest-backup", restore_time: str | None = None,
                 target_table: str | None = None, function: str | None = None, variable: str | None = None,
                 check_item: dict | None = None, copy_settings=COPIED_SETTINGS, tolerance: float = COUNT_TOLERANCE,
                 segments: int = COUNT_SEGMENTS, count_prefix: str = COUNT_RECORD_PREFIX):
        check_count_options(segments, count_prefix, tolerance)
        self.clients, self.table, self.restore_from, self.restore_time = clients, table, restore_from, restore_time
        self.target_table, self.function, self.variable, self.check_item = target_table, function, variable, check_item
        self.copy_settings, self.tolerance, self.segments, self.count_prefix = \
            tuple(copy_settings), tolerance, segments, count_prefix
        self.ddb = clients("dynamodb")

    def plan(self, now: datetime.datetime) -> dict:
        ddb = self.ddb
        self.source = choose_source(ddb, self.table, self.restore_from, self.restore_time, now)
        self.target = self.target_table or target_name(self.table, self.source, now)
        if self.target == self.table:
            raise RunbookError("target_table is the source table: a restore always goes into a new table.")
        self.recorded = None
        if self.source["kind"] == "backup":
            self.source["count_record"] = count_record_name(self.count_prefix, self.table, self.source["arn"])
            self.recorded = recorded_count(self.clients("ssm"), self.source["count_record"], self.source["arn"])
        self.source["recorded_count"] = self.recorded
        self.variables = function_variables(self.clients("lambda"), self.function) if self.function else {}
        self.settings = SettingsCopy(self.clients, self.table, self.target, self.copy_settings)
        self.exists = table_exists(ddb, self.target)
        self.settings.read_source()
        result = {"changed": False, "repointed": False, "target_table": self.target, "item_count": None,
                  "source": {**self.source, "at": isoformat(self.source["at"]) if self.source["at"] else None},
                  "settings_to_copy": self.settings.plan(self.exists)}
        if self.function:
            result["previous_value"] = self.variables.get(self.variable)
        return result

    def check_mode_result(self, result: dict) -> dict:
        """The plan in words; its message starts with "would" exactly when the run would change something."""
        copying = result["settings_to_copy"]
        repoint = self.function is not None and result.get("previous_value") != self.target
        steps = ([] if self.exists else [f"restore {self.table} from {self.source['name']} into {self.target}"]) + \
            ([f"put on {self.target}: {'; '.join(copying)}"] if copying else []) + \
            ([f"point {self.variable} of {self.function} at {self.target}"] if repoint else [])
        result["changed"] = bool(steps)
        result["msg"] = "would " + ", then ".join(steps) if steps else f"{self.target} is already restored"
        return result

    def apply(self, result: dict, outcome: Outcome) -> dict:
        """The change; a refusal or failure after the restore carries the result so far (target, counts)."""
        try:
            return self._apply(result, outcome)
        except RunbookError as exc:
            exc.details = {**result, **exc.details}
            raise

    def _apply(self, result: dict, outcome: Outcome) -> dict:
        ddb, target = self.ddb, self.target
        if not self.exists:
            restore(ddb, self.table, self.source, target)
            outcome.wrote(f"table {target} restored from {self.source['name']}")
            result["changed"] = True
            crash_point("dynamodb-restore-requested")  # a test's kill: the next run finds the table by its name
        wait_table_active(ddb, target, WAIT_SECONDS)
        result["item_count"] = count_items(ddb, target, self.segments)
        result["count_check"], problem = compare_counts(result["item_count"], self.recorded,
                                                        self.source.get("approximate_count"), self.tolerance)
        if problem:
            raise RunbookError(f"{target} failed the count check: {problem}. Nothing was repointed; {target} is "
                               "kept for inspection.")
        copied = self.settings.apply(outcome)
        crash_point("dynamodb-settings-copied")
        result.update(settings_copied=copied, changed=result["changed"] or bool(copied))
        result["settings_checked"] = self.settings.verify()
        if self.function and self.variables.get(self.variable) != target:
            repoint_and_check(ddb, self.clients("lambda"), self.function, self.variables, self.variable, target,
                              self.check_item, outcome)
            crash_point("dynamodb-repointed")
            result.update(changed=True, repointed=True)
        elif self.function:
            result["repointed"] = True
        result["msg"] = (f"{target} restored from {self.source['name']} ({result['item_count']} items; count check "
                         f"{result['count_check']})" + (f"; {self.variable} of {self.function} names it"
                                                        if result["repointed"] else ""))
        return result
