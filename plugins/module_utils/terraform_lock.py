# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Terraform's S3-backend state locks: read them, say who holds them and since when, decide whether one may be
removed, and remove exactly the lock that was read.

Terraform (internal/backend/remote-state/s3/client.go) locks the state at s3://BUCKET/KEY in one or both of:
- the DynamoDB table of its `dynamodb_table` setting: an item {LockID: "BUCKET/KEY", Info: "<LockInfo JSON>"}, put
  with attribute_not_exists(LockID). The item {LockID: "BUCKET/KEY-md5", Digest} beside it is the state's checksum,
  not a lock, and is never touched here.
- S3 itself (`use_lockfile = true`, Terraform 1.10+): the object KEY.tflock in the state's bucket, its body the same
  LockInfo JSON, put with If-None-Match: *.
With both settings Terraform takes both locks under one ID. LockInfo (internal/states/statemgr/locker.go) is
{"ID", "Operation", "Info", "Who", "Version", "Created", "Path"}; Created is Go's RFC 3339 time with nanoseconds.

A removal is conditional, so a lock taken again between the read and the delete is never removed: the DynamoDB
delete requires the Info just read (ConditionExpression), the S3 delete the ETag of the body just read (If-Match).
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.aws import describe_error, error_code, is_aws_error
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, parse_duration
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome

LOCKFILE_SUFFIX = ".tflock"
DIGEST_SUFFIX = "-md5"
# Go's time.Time in JSON (RFC 3339, up to nanoseconds); the space-separated form is what `terraform` prints.
_CREATED_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\s*(Z|[+-]\d\d:?\d\d)?"
                         r"(?:\s+[A-Z]{3,5})?$")
_CONFLICT = ("ConditionalCheckFailedException", "PreconditionFailed")


@dataclass
class FoundLock:
    """A lock as read: where it is, and its content exactly as stored (the condition of its removal)."""

    store: str  # "dynamodb" or "s3"
    location: str
    raw: str
    etag: str | None = None


# -- what a person types --------------------------------------------------------------------------------------------
def check_backend(bucket: str, key: str) -> None:
    """Refuse what cannot be a Terraform S3 backend's bucket and key before any call."""
    if not bucket or not key:
        raise RunbookError("Give the state's bucket and key (Terraform's Path line is BUCKET/KEY): nothing was "
                           "removed.")
    if "/" in bucket or bucket != bucket.strip():
        raise RunbookError(f"bucket {bucket!r} is not a bucket name (no slashes or spaces): give the first part of "
                           "Terraform's Path line, BUCKET/KEY. Nothing was removed.")
    if key.startswith("/") or key.endswith("/"):
        raise RunbookError(f"key {key!r} starts or ends with '/', which Terraform's S3 backend refuses: give the key "
                           "as in the backend settings (the Path line after the bucket). Nothing was removed.")
    for suffix, what in ((LOCKFILE_SUFFIX, "S3 lock file"), (DIGEST_SUFFIX, "DynamoDB digest item")):
        if key.endswith(suffix):
            raise RunbookError(f"key {key!r} names the {what}, not the state: give key={key[:-len(suffix)]!r}. "
                               "Nothing was removed.")


def parse_min_age(value) -> float:
    try:
        return parse_duration(value)
    except RunbookError as exc:
        raise RunbookError(f"min_age: {exc} Nothing was removed.") from None


def lock_path(bucket: str, key: str) -> str:
    """The LockID of the DynamoDB item and the Path of LockInfo."""
    return f"{bucket}/{key}"


def split_lock_path(path: str) -> tuple[str, str]:
    """Terraform's Path line (BUCKET/KEY) -> (bucket, key); a bucket name never holds a slash."""
    bucket, _slash, key = (path or "").strip().partition("/")
    if not bucket or not key:
        raise RunbookError(f"lock_path {path!r} is not BUCKET/KEY: copy the Path line of Terraform's \"Error "
                           "acquiring the state lock\" message. Nothing was removed.")
    return bucket, key


# -- LockInfo -------------------------------------------------------------------------------------------------------
def parse_lock_info(raw: str) -> dict:
    try:
        info = json.loads(raw)
    except ValueError:
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("ID"), str) or not info["ID"]:
        raise RunbookError(f"its content is not Terraform's LockInfo JSON with an ID: {raw[:200]!r}")
    return info


def parse_created(text) -> datetime.datetime | None:
    """LockInfo's Created -> an aware datetime; None for Go's zero time or none at all."""
    if not text or str(text).startswith("0001-01-01"):
        return None
    match = _CREATED_RE.match(str(text).strip())
    if not match:
        raise RunbookError(f"Created {text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                               int((fraction or "0").ljust(6, "0")[:6]), tzinfo=datetime.UTC)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment


def human_duration(seconds: float) -> str:
    """3725 -> '1h 2m', 10804 -> '3h': the largest unit and the next (when not 0), as a person reads an age."""
    seconds = int(max(0, seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    first = next((i for i, (_unit, size) in enumerate(units) if seconds >= size), len(units) - 1)
    parts = []
    for unit, size in units[first:first + 2]:
        if seconds // size or not parts:
            parts.append(f"{seconds // size}{unit}")
        seconds %= size
    return " ".join(parts)


def holder(row: dict) -> str:
    """'alice@ci-7 (ID 4c2f..., OperationTypeApply since 2026-05-02T03:04:05Z, 3h 12m ago)'."""
    if row["id"] is None:
        return "an unreadable lock"
    since = f" since {row['created']}" if row["created"] else ""
    ago = f", {row['age']} ago" if row["age"] else ""
    return f"{row['who'] or 'someone'} (ID {row['id']}, {row['operation'] or 'an operation'}{since}{ago})"


# -- the decision ---------------------------------------------------------------------------------------------------
def plan(found: list[FoundLock], lock_id: str | None, min_age: float, now: datetime.datetime) -> list[dict]:
    """One row per lock found: who holds it, since when, and whether it may be removed (action remove), is only shown
    (no lock_id given: action show) or must be kept (action refuse, with the reason)."""
    return [decide(lock, lock_id, min_age, now) for lock in found]


def decide(lock: FoundLock, lock_id: str | None, min_age: float, now: datetime.datetime) -> dict:
    row = {"store": lock.store, "location": lock.location, "id": None, "who": None, "operation": None,
           "created": None, "age": None, "age_seconds": None, "version": None, "path": None, "info": None}
    try:
        info = parse_lock_info(lock.raw)
    except RunbookError as exc:
        return {**row, "action": "refuse",
                "reason": f"the lock at {lock.location} cannot be read ({exc}): it was left as it is; look at it "
                          "and remove it by hand if you are sure it is stale."}
    row.update(id=info["ID"], who=info.get("Who") or None, operation=info.get("Operation") or None,
               version=info.get("Version") or None, path=info.get("Path") or None, info=info.get("Info") or None)
    try:
        created = parse_created(info.get("Created"))
    except RunbookError:
        created = None
    if created is not None:
        age = (now - created).total_seconds()
        row.update(created=created.strftime("%Y-%m-%dT%H:%M:%SZ"), age_seconds=int(age), age=human_duration(age))
    if lock_id is not None and lock_id != row["id"]:
        reason = (f"the lock at {lock.location} is now held by {holder(row)}, not by lock_id={lock_id}: nothing was "
                  "removed. Run the plan again (--check), make sure that holder's run is gone, and give its ID.")
    elif created is None and min_age > 0:
        reason = (f"the lock at {lock.location}, held by {holder(row)}, records no readable creation time "
                  f"({info.get('Created')!r}), so its age is unknown: nothing was removed. Give min_age=0 to remove "
                  "it anyway once you know its run is gone.")
    elif created is not None and row["age_seconds"] < min_age:
        reason = (f"the lock at {lock.location}, held by {holder(row)}, is younger than "
                  f"min_age={human_duration(min_age)}: its Terraform run may still be going. Nothing was removed. "
                  "Check that the run is gone (the CI job, the holder's terminal), then wait or give a smaller "
                  "min_age.")
    else:
        reason = None
    if reason:
        return {**row, "action": "refuse", "reason": reason}
    if lock_id is None:
        return {**row, "action": "show",
                "reason": f"give lock_id={row['id']} and confirm=true to remove it (as terraform force-unlock "
                          f"{row['id']} would)."}
    return {**row, "action": "remove", "reason": None}


def refusal(rows: list[dict]) -> str | None:
    """Why a removal must not run (every reason), or None when every lock may go."""
    reasons = [r["reason"] for r in rows if r["action"] == "refuse"]
    if not reasons and any(r["action"] == "show" for r in rows):
        shown = next(r for r in rows if r["action"] == "show")
        reasons = [f"lock_id is required to remove a lock: the lock at {shown['location']} is held by {holder(shown)}. "
                   f"Give lock_id={shown['id']} (the ID of the lock you mean to remove). Nothing was removed."]
    return " ".join(reasons) or None


def describe(row: dict) -> str:
    """One line for the plan: where, who, since when, and what happens to it."""
    outcome = {"remove": "will be removed", "show": "kept (no lock_id given)", "refuse": "kept: refused"}
    facts = f"held by {holder(row)}" if row["id"] is not None else "unreadable"
    version = f", Terraform {row['version']}" if row["version"] else ""
    return f"{row['location']}: {facts}{version} -> {row.get('result') or outcome[row['action']]}"


# -- AWS ------------------------------------------------------------------------------------------------------------
def read_locks(ddb, s3, bucket: str, key: str, table: str | None, use_lockfile: bool) -> list[FoundLock]:
    """The locks on s3://bucket/key now: the DynamoDB item (when a table is given), then the S3 lock file."""
    found = []
    if table:
        lock = read_dynamodb_lock(ddb, table, bucket, key)
        if lock:
            found.append(lock)
    if use_lockfile:
        lock = read_s3_lock(s3, bucket, key)
        if lock:
            found.append(lock)
    return found


def read_dynamodb_lock(ddb, table: str, bucket: str, key: str) -> FoundLock | None:
    path = lock_path(bucket, key)
    try:
        item = ddb.get_item(TableName=table, Key={"LockID": {"S": path}}, ConsistentRead=True).get("Item")
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise RunbookError(f"DynamoDB table {table!r} does not exist here: give lock_table as the backend's "
                               "dynamodb_table setting (and the region it is in). Nothing was removed.") from None
        raise
    if not item:
        return None
    return FoundLock("dynamodb", f"DynamoDB table {table} item {path}", item.get("Info", {}).get("S", ""))


def read_s3_lock(s3, bucket: str, key: str) -> FoundLock | None:
    try:
        obj = s3.get_object(Bucket=bucket, Key=key + LOCKFILE_SUFFIX)
    except Exception as exc:
        code = error_code(exc)
        if code == "NoSuchKey":
            return None
        if code == "NoSuchBucket":
            raise RunbookError(f"bucket {bucket!r} does not exist: give the backend's bucket (the Path line's first "
                               "part). Nothing was removed.") from None
        if code in ("AccessDenied", "403"):
            raise RunbookError(f"reading s3://{bucket}/{key}{LOCKFILE_SUFFIX} was denied ({code}). If this backend "
                               "does not set use_lockfile, give use_lockfile=false (only the DynamoDB table is "
                               "read then). Nothing was removed.") from None
        raise
    with obj["Body"] as body:
        raw = body.read().decode("utf-8", errors="replace")
    return FoundLock("s3", f"s3://{bucket}/{key}{LOCKFILE_SUFFIX}", raw, obj.get("ETag"))


def state_exists(s3, bucket: str, key: str) -> bool:
    """Whether the state object is there; a refused look (403) counts as there, it may be a narrower policy."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return False
        if error_code(exc) in ("403", "AccessDenied"):
            return True
        raise
    return True


def remove(ddb, s3, found: list[FoundLock], rows: list[dict], bucket: str, key: str, table: str | None,
           outcome: Outcome) -> list[dict]:
    """Remove each lock exactly as it was read, saying each removal to `outcome`. A lock that changed in between is
    kept and the run fails naming its holder now (the outcome seam adds what was removed before it)."""
    for lock, row in zip(found, rows, strict=True):
        try:
            if lock.store == "dynamodb":
                ddb.delete_item(TableName=table, Key={"LockID": {"S": lock_path(bucket, key)}},
                                ConditionExpression="Info = :info",
                                ExpressionAttributeValues={":info": {"S": lock.raw}})
            else:
                s3.delete_object(Bucket=bucket, Key=key + LOCKFILE_SUFFIX, IfMatch=lock.etag)
        except Exception as exc:
            if not is_aws_error(exc):
                raise
            if error_code(exc) in _CONFLICT or (lock.store == "s3" and error_code(exc) in ("NoSuchKey", "404")):
                now = (read_dynamodb_lock(ddb, table, bucket, key) if lock.store == "dynamodb"
                       else read_s3_lock(s3, bucket, key))
                if now is None:  # released meanwhile, by its holder or someone else: the state is unlocked
                    row["result"] = "already gone"
                    continue
                current = decide(now, None, 0, datetime.datetime.now(datetime.UTC))
                raise RunbookError(f"The lock at {lock.location} changed while it was being removed: it is now held "
                                   f"by {holder(current)}, and was kept.", locks=rows) from None
            raise RunbookError(describe_error(exc, f"removing the lock at {lock.location}") + ".",
                               locks=rows) from None
        row["result"] = "removed"
        outcome.wrote(f"the lock at {lock.location} removed")
    return rows


def searched(bucket: str, key: str, table: str | None, use_lockfile: bool) -> str:
    places = ([f"DynamoDB table {table}"] if table else []) + ([f"s3://{bucket}/{key}{LOCKFILE_SUFFIX}"]
                                                               if use_lockfile else [])
    return f"{lock_path(bucket, key)} ({' and '.join(places)})"


def outcome(rows: list[dict], check_mode: bool, where: str) -> dict:
    """The module's result: changed, one line per lock, and one message for a person."""
    removed = [r for r in rows if r.get("result") == "removed"]
    removable = [r for r in rows if r["action"] == "remove"]
    if not rows:
        msg = f"No lock on {where}: nothing to remove."
    elif removed:
        msg = f"Removed the lock held by {holder(removed[0])} from {' and '.join(r['location'] for r in removed)}."
    elif not check_mode and all(r.get("result") == "already gone" for r in rows):
        msg = f"The lock held by {holder(rows[0])} was released before it was removed: {where} is unlocked."
    elif any(r["action"] == "refuse" for r in rows):
        msg = refusal(rows)
    elif any(r["action"] == "show" for r in rows):
        msg = f"To remove it once its run is gone: lock_id={rows[0]['id']} with confirm=true."
    else:
        msg = (f"Would remove the lock held by {holder(removable[0])} from "
               f"{', '.join(r['location'] for r in removable)}.")
    refused = [r["reason"] for r in rows if r["action"] == "refuse"]
    return {"changed": bool(removed) or (check_mode and bool(removable) and not refusal(rows)), "locks": rows,
            "lines": [describe(r) for r in rows] or [msg], "msg": msg, "refused": " ".join(refused) or None,
            "needs_lock_id": any(r["action"] == "show" for r in rows)}
