"""Terraform lock decisions (pure logic): LockInfo as Terraform writes it, its age, and when a lock may be removed."""

import datetime
import json

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.terraform_lock import (
    FoundLock,
    check_backend,
    describe,
    human_duration,
    outcome,
    parse_created,
    plan,
    refusal,
    split_lock_path,
)

NOW = datetime.datetime(2026, 5, 2, 12, 0, 0, tzinfo=datetime.UTC)
LOCK_ID = "9db590f1-b6fe-c5f2-2678-8804f089deba"


def lock_info(created="2026-05-02T08:47:55.123456789Z", lock_id=LOCK_ID, **more) -> str:
    """As Terraform's json.Marshal(LockInfo) writes it: its field order, Go's RFC 3339 time with nanoseconds."""
    return json.dumps({"ID": lock_id, "Operation": "OperationTypeApply", "Info": "", "Who": "alice@ci-runner-7",
                       "Version": "1.9.5", "Created": created, "Path": "acme-tfstate/network/terraform.tfstate",
                       **more}, separators=(",", ":"))


def found(raw=None, store="dynamodb") -> FoundLock:
    return FoundLock(store, "DynamoDB table terraform-locks item acme-tfstate/network/terraform.tfstate",
                     lock_info() if raw is None else raw)


@pytest.mark.parametrize("text,expected", [
    ("2026-05-02T08:47:55.123456789Z", datetime.datetime(2026, 5, 2, 8, 47, 55, 123456, tzinfo=datetime.UTC)),
    ("2026-05-02T08:47:55Z", datetime.datetime(2026, 5, 2, 8, 47, 55, tzinfo=datetime.UTC)),
    ("2026-05-02T10:47:55.5+02:00", datetime.datetime(2026, 5, 2, 8, 47, 55, 500000, tzinfo=datetime.UTC)),
    ("2026-05-02 08:47:55.123456789 +0000 UTC", datetime.datetime(2026, 5, 2, 8, 47, 55, 123456, tzinfo=datetime.UTC)),
])
def test_created_is_read_as_go_writes_and_prints_it(text, expected):
    assert parse_created(text) == expected


@pytest.mark.parametrize("text", ["", None, "0001-01-01T00:00:00Z"])
def test_no_creation_time_is_none(text):
    assert parse_created(text) is None


def test_an_unreadable_time_is_refused():
    with pytest.raises(RunbookError, match="not an RFC 3339 time"):
        parse_created("yesterday")


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (45, "45s"), (3725, "1h 2m"), (11520, "3h 12m"),
                                          (90061, "1d 1h"), (10804, "3h"), (86400, "1d"), (3599, "59m 59s"),
                                          (-5, "0s")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_plan_without_lock_id_shows_holder_and_age():
    [row] = plan([found()], None, 3600, NOW)
    assert row["action"] == "show"
    assert (row["id"], row["who"], row["operation"], row["version"]) == (LOCK_ID, "alice@ci-runner-7",
                                                                         "OperationTypeApply", "1.9.5")
    assert row["created"] == "2026-05-02T08:47:55Z" and row["age"] == "3h 12m" and row["age_seconds"] == 11524
    assert row["path"] == "acme-tfstate/network/terraform.tfstate"
    assert "alice@ci-runner-7" in describe(row) and "3h 12m ago" in describe(row)
    assert refusal([row]).startswith("lock_id is required") and f"lock_id={LOCK_ID}" in refusal([row])


def test_an_old_lock_with_its_id_may_be_removed():
    rows = plan([found(), found(store="s3")], LOCK_ID, 3600, NOW)
    assert [r["action"] for r in rows] == ["remove", "remove"] and refusal(rows) is None
    result = outcome(rows, True, "acme-tfstate/network/terraform.tfstate")
    assert result["changed"] and result["msg"].startswith("Would remove the lock held by alice@ci-runner-7")


def test_a_young_lock_is_kept():
    [row] = plan([found(lock_info(created="2026-05-02T11:55:00Z"))], LOCK_ID, 3600, NOW)
    assert row["action"] == "refuse" and "younger than min_age=1h" in row["reason"] and "5m ago" in row["reason"]
    assert "Nothing was removed" in refusal([row])
    assert not outcome([row], True, "x")["changed"]


def test_min_age_zero_removes_a_young_lock():
    [row] = plan([found(lock_info(created="2026-05-02T11:59:59Z"))], LOCK_ID, 0, NOW)
    assert row["action"] == "remove"


def test_another_lock_id_is_refused_naming_the_holder():
    other = "0c1d2e3f-0000-4000-8000-000000000001"
    [row] = plan([found(lock_info(lock_id=other, Who="bob@laptop"))], LOCK_ID, 3600, NOW)
    assert row["action"] == "refuse"
    assert f"now held by bob@laptop (ID {other}" in row["reason"] and f"not by lock_id={LOCK_ID}" in row["reason"]
    assert "nothing was removed" in row["reason"]


def test_one_lock_of_two_with_another_id_keeps_both():
    rows = plan([found(), found(lock_info(lock_id="other"), store="s3")], LOCK_ID, 3600, NOW)
    assert [r["action"] for r in rows] == ["remove", "refuse"] and "ID other" in refusal(rows)


@pytest.mark.parametrize("raw", ["", "not json", json.dumps({"Who": "x"}), json.dumps(["a"])])
def test_an_unreadable_lock_is_refused(raw):
    [row] = plan([found(raw)], LOCK_ID, 0, NOW)
    assert row["action"] == "refuse" and "cannot be read" in row["reason"] and row["id"] is None


def test_a_lock_without_creation_time_needs_min_age_zero():
    [row] = plan([found(lock_info(created="0001-01-01T00:00:00Z"))], LOCK_ID, 3600, NOW)
    assert row["action"] == "refuse" and "min_age=0" in row["reason"]
    [row] = plan([found(lock_info(created="0001-01-01T00:00:00Z"))], LOCK_ID, 0, NOW)
    assert row["action"] == "remove"


def test_no_lock_is_no_change():
    result = outcome([], False, "acme-tfstate/network/terraform.tfstate (DynamoDB table terraform-locks)")
    assert not result["changed"] and result["msg"].startswith("No lock on acme-tfstate/network/terraform.tfstate")
    assert result["lines"] == [result["msg"]] and result["refused"] is None


def test_the_path_line_splits_at_the_first_slash():
    assert split_lock_path("acme-tfstate/env:/staging/network/terraform.tfstate") == (
        "acme-tfstate", "env:/staging/network/terraform.tfstate")
    with pytest.raises(RunbookError, match="is not BUCKET/KEY"):
        split_lock_path("acme-tfstate")


@pytest.mark.parametrize("bucket,key,message", [
    ("", "a.tfstate", "Give the state's bucket and key"),
    ("acme/x", "a.tfstate", "is not a bucket name"),
    ("acme", "/a.tfstate", "starts or ends with '/'"),
    ("acme", "a.tfstate.tflock", "names the S3 lock file, not the state: give key='a.tfstate'"),
    ("acme", "a.tfstate-md5", "names the DynamoDB digest item"),
])
def test_bad_backend_input_is_refused(bucket, key, message):
    with pytest.raises(RunbookError, match=message.replace("(", r"\(")):
        check_backend(bucket, key)
