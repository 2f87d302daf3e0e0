"""DynamoDB's capacity-mode switching rule as AWS documents it, and the states the Lambda and DynamoDB waits end on
(pure logic and fake clients; the emulator and a real table are tested in tests/integration/test_scale.py)."""

from __future__ import annotations

import calendar
import datetime
import functools
import time

import pytest
from botocore.exceptions import ClientError

from ansible_collections.runbook.recovery.plugins.module_utils import aws_lambda, waits
from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import (
    SWITCH_HISTORY_TAG,
    DynamoCapacity,
    explain_update_limit,
    on_demand_switch_refusal,
    switch_history,
    table_state,
    wait_table_active,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import (
    function_update_state,
    provisioned_concurrency_state,
    update_function_configuration,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import Current
from ansible_collections.runbook.recovery.plugins.module_utils.waits import WaitFailed

NOW = calendar.timegm((2026, 11, 23, 12, 0, 0))
HOUR = 3600


def test_four_switches_in_a_rolling_day_are_allowed_the_fifth_is_not():
    assert on_demand_switch_refusal([], NOW) is None
    assert on_demand_switch_refusal([NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR], NOW) is None
    refusal = on_demand_switch_refusal([NOW - 20 * HOUR, NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR], NOW)
    assert refusal.startswith("AWS allows at most 4 switches of a table from provisioned to on-demand "
                              "(PAY_PER_REQUEST) in any rolling 24 hours, and this table made 4, at "
                              "2026-11-22T16:00:00Z, 2026-11-23T09:00:00Z")
    # The window rolls: the oldest leaves it 24 hours after it was made.
    assert "The next switch to on-demand is possible after 2026-11-23T16:00:00Z" in refusal
    assert "switching to PROVISIONED is allowed at any time. Nothing was changed." in refusal


def test_switches_older_than_24_hours_do_not_count():
    assert on_demand_switch_refusal([NOW - 24 * HOUR, NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR], NOW) is None
    assert on_demand_switch_refusal([NOW - 24 * HOUR + 1, NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR], NOW)


def test_the_same_switch_seen_twice_counts_once():
    """The recorded time and DescribeTable's LastUpdateToPayPerRequestDateTime of one switch are one switch (to the
    millisecond); switches a quarter of a second apart are two."""
    recorded = [NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR + 0.123]
    assert on_demand_switch_refusal([*recorded, NOW - HOUR + 0.1230004], NOW) is None
    assert on_demand_switch_refusal([*recorded, NOW - HOUR + 0.373], NOW)


def test_more_than_four_known_the_next_switch_waits_for_the_fourth_most_recent():
    switches = [NOW - 23 * HOUR, NOW - 22 * HOUR, NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR]
    assert "possible after 2026-11-23T14:00:00Z" in on_demand_switch_refusal(switches, NOW)


def test_the_recorded_history_is_read_and_a_bad_entry_skipped():
    tags = {SWITCH_HISTORY_TAG: "2026-11-23T09:00:00.000000Z not-a-time 2026-11-23T10:00:00.250000Z"}
    assert switch_history(tags) == [NOW - 3 * HOUR, NOW - 2 * HOUR + 0.25]
    assert switch_history({}) == []


def test_aws_refusal_of_a_switch_in_plain_words_with_the_time_aws_gives():
    message = ("Subscriber limit exceeded: Update to PayPerRequest mode are limited to 4 times in 1 day(s). Last "
               "update at Mon Nov 23 11:00:00 UTC 2026. Next update can be made at Mon Nov 23 16:00:00 UTC 2026")
    text = explain_update_limit(message)
    assert text.startswith("AWS refused the switch to on-demand (PAY_PER_REQUEST): a table can switch from "
                           "provisioned to on-demand at most 4 times in any rolling 24 hours")
    assert "AWS says the next switch is possible at Mon Nov 23 16:00:00 UTC 2026." in text
    assert text.endswith(f"AWS's message: {message}")


def test_the_refusal_as_aws_answered_it_in_a_public_report_is_read_the_same_way():
    """AWS's own text, as quoted in aws-amplify/amplify-cli issue 1054 (when the limit was one switch a day), not the
    emulator's: read as the on-demand switch limit, and no time claimed that AWS did not give."""
    text = explain_update_limit("Subscriber limit exceeded: Update to PayPerRequest mode are limited to once in 1 "
                                "day(s).")
    assert text.startswith("AWS refused the switch to on-demand (PAY_PER_REQUEST)")
    assert "AWS did not say when the next switch is possible" in text


def test_aws_refusal_without_a_time_says_how_to_know_it():
    text = explain_update_limit("Subscriber limit exceeded: on-demand switches")
    assert "AWS did not say when the next switch is possible: 24 hours after the oldest of the last 4" in text


def test_other_limits_are_named_as_such():
    decrease = ("Subscriber limit exceeded: Provisioned throughput decreases are limited within a given UTC day. "
                "Number of decreases today: 4. Last decrease at Mon Nov 23 10:00:00 UTC 2026. Next decrease can be "
                "made at Mon Nov 23 13:00:00 UTC 2026")
    assert explain_update_limit(decrease).startswith(
        "AWS refused to lower the provisioned capacity: DynamoDB limits how many times a day a table's capacity can "
        "be decreased; AWS says the next decrease is possible at Mon Nov 23 13:00:00 UTC 2026.")
    other = explain_update_limit("Too many operations for a given subscriber.")
    assert other == ("AWS refused the update with LimitExceededException (an account or table limit). AWS's "
                     "message: Too many operations for a given subscriber")


def table(mode: str, last_switch: float | None, history: str = "") -> Current:
    summary = {"BillingMode": mode}
    if last_switch is not None:
        summary["LastUpdateToPayPerRequestDateTime"] = last_switch
    values = {"billing_mode": mode, "read_capacity": None if mode == "PAY_PER_REQUEST" else 5,
              "write_capacity": None if mode == "PAY_PER_REQUEST" else 5}
    return Current(values, {SWITCH_HISTORY_TAG: history} if history else {}, {"BillingModeSummary": summary})


def test_the_undo_right_after_a_switch_to_on_demand_is_allowed():
    DynamoCapacity(None).check(table("PAY_PER_REQUEST", time.time() - 1),
                               {"billing_mode": "PROVISIONED", "read_capacity": 5, "write_capacity": 5})


def test_the_plan_counts_recorded_switches_and_the_last_one_aws_reports():
    now = time.time()
    recorded = " ".join(isoformat(datetime.datetime.fromtimestamp(now - hours * HOUR, datetime.UTC))
                        for hours in (5, 4, 3))
    DynamoCapacity(None).check(table("PROVISIONED", now - 3 * HOUR, recorded), {"billing_mode": "PAY_PER_REQUEST"})
    with pytest.raises(RunbookError, match="this table made 4"):
        # The last switch (made elsewhere, an hour ago) is not in the record but DescribeTable shows it.
        DynamoCapacity(None).check(table("PROVISIONED", now - HOUR, recorded), {"billing_mode": "PAY_PER_REQUEST"})


# -- the states the waits end on ------------------------------------------------------------------------
FAILED_UPDATE = {"State": "Active", "LastUpdateStatus": "Failed", "LastUpdateStatusReasonCode": "EniLimitExceeded",
                 "LastUpdateStatusReason": "The function could not create a network interface in subnet-1"}


@pytest.mark.parametrize(("config", "state", "detail"), [
    ({"State": "Active", "LastUpdateStatus": "Successful"}, "done", "LastUpdateStatus Successful"),
    ({"State": "Active"}, "done", "LastUpdateStatus Successful"),
    ({"State": "Active", "LastUpdateStatus": "InProgress"}, "pending", "LastUpdateStatus InProgress"),
    (FAILED_UPDATE, "failed", "The function could not create a network interface in subnet-1 (EniLimitExceeded)"),
    ({"State": "Active", "LastUpdateStatus": "Failed"}, "failed", "no reason given"),
    ({"State": "Failed", "StateReason": "The role cannot be assumed", "LastUpdateStatus": "Successful"}, "failed",
     "the function's State is Failed: The role cannot be assumed"),
])
def test_a_lambda_update_is_done_pending_or_failed_with_aws_reason(config, state, detail):
    assert function_update_state(config) == (state, detail)


class FakeLambda:
    """UpdateFunctionConfiguration refused `conflicts` times with ResourceConflictException, then accepted;
    GetFunctionConfiguration answers each of `configs` in turn, then the last one again."""

    def __init__(self, *configs, conflicts=0):
        self.configs, self.conflicts, self.updates, self.reads = list(configs), conflicts, [], 0

    def update_function_configuration(self, FunctionName, **update):
        if self.conflicts:
            self.conflicts -= 1
            raise ClientError({"Error": {"Code": "ResourceConflictException", "Message": "An update is in progress"}},
                              "UpdateFunctionConfiguration")
        self.updates.append(update)

    def get_function_configuration(self, FunctionName):
        self.reads += 1
        return self.configs.pop(0) if len(self.configs) > 1 else self.configs[0]


@pytest.fixture
def slept(monkeypatch):
    """The conflict retries' sleeps, recorded instead of slept."""
    sleeps = []
    monkeypatch.setattr(aws_lambda, "retry_conflicts", functools.partial(waits.retry_conflicts, sleep=sleeps.append))
    return sleeps


def test_a_failed_lambda_update_ends_the_wait_at_once_with_aws_reason(slept):
    lam, started = FakeLambda(FAILED_UPDATE), time.monotonic()
    with pytest.raises(WaitFailed) as failed:
        update_function_configuration(lam, "handler", {"MemorySize": 1024}, wait_seconds=300)
    assert str(failed.value) == ("the update failed: The function could not create a network interface in subnet-1 "
                                 "(EniLimitExceeded)")
    assert lam.reads == 1 and time.monotonic() - started < 1 and lam.updates == [{"MemorySize": 1024}]


def test_a_lambda_update_in_progress_is_retried_then_waited_for(slept):
    lam = FakeLambda({"State": "Active", "LastUpdateStatus": "Successful", "MemorySize": 1024}, conflicts=2)
    assert update_function_configuration(lam, "handler", {"MemorySize": 1024})["MemorySize"] == 1024
    assert slept == [0.5, 1.0] and lam.updates == [{"MemorySize": 1024}]


def test_a_lambda_update_still_in_progress_after_the_bound_is_given_up_in_plain_words(slept):
    lam = FakeLambda({"LastUpdateStatus": "Successful"}, conflicts=100)
    with pytest.raises(RunbookError, match="UpdateFunctionConfiguration of handler was refused 8 times over 35.5s "
                                           "because another update is in progress"):
        update_function_configuration(lam, "handler", {"Timeout": 60})
    assert lam.updates == [] and lam.reads == 0 and len(slept) == 7


@pytest.mark.parametrize(("config", "state", "detail"), [
    ({"Status": "READY"}, "done", "Status READY"),
    ({"Status": "IN_PROGRESS"}, "pending", "Status IN_PROGRESS"),
    ({}, "pending", "Status not visible yet"),
    ({"Status": "FAILED", "StatusReason": "FUNCTION_ERROR_INIT_FAILURE"}, "failed", "FUNCTION_ERROR_INIT_FAILURE"),
])
def test_provisioned_concurrency_is_ready_pending_or_failed_with_aws_reason(config, state, detail):
    assert provisioned_concurrency_state(config) == (state, detail)


def described_table(status, *indexes, **more):
    return {"TableName": "sessions", "TableStatus": status, **more,
            "GlobalSecondaryIndexes": [{"IndexName": name, "IndexStatus": index} for name, index in indexes]}


@pytest.mark.parametrize(("described", "indexes", "state", "detail"), [
    (described_table("ACTIVE"), False, "done", "ACTIVE"),
    (described_table("CREATING"), False, "pending", "CREATING"),
    (described_table("ACTIVE", ("by-user", "UPDATING")), False, "done", "ACTIVE"),
    (described_table("UPDATING", ("by-user", "UPDATING")), True, "pending", "UPDATING, by-user UPDATING"),
    (described_table("DELETING"), False, "failed", "DELETING: the table is being deleted"),
    (described_table("INACCESSIBLE_ENCRYPTION_CREDENTIALS"), True, "failed",
     "INACCESSIBLE_ENCRYPTION_CREDENTIALS: the table's AWS KMS key is inaccessible (disabled, or its grant revoked)"),
    (described_table("ARCHIVED", ArchivalSummary={"ArchivalReason": "INACCESSIBLE_ENCRYPTION_CREDENTIALS"}), False,
     "failed",
     "ARCHIVED: the table is archived: its AWS KMS key was inaccessible for seven days "
     "(INACCESSIBLE_ENCRYPTION_CREDENTIALS)"),
])
def test_a_table_is_active_pending_or_cannot_become_active(described, indexes, state, detail):
    assert table_state(described, indexes) == (state, detail)


class FakeTables:
    def __init__(self, *tables):
        self.tables, self.reads = list(tables), 0

    def describe_table(self, TableName):
        self.reads += 1
        if not self.tables:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}}, "DescribeTable")
        return {"Table": self.tables.pop(0) if len(self.tables) > 1 else self.tables[0]}


def test_a_table_that_cannot_become_active_ends_the_wait_at_once():
    ddb = FakeTables(described_table("DELETING"))
    with pytest.raises(WaitFailed, match="table sessions becoming ACTIVE failed: DELETING: the table is being deleted"):
        wait_table_active(ddb, "sessions", 1800)
    assert ddb.reads == 1
    with pytest.raises(WaitFailed, match="the update failed: the table no longer exists"):
        wait_table_active(FakeTables(), "sessions", 600, what="the update")
    assert wait_table_active(FakeTables(described_table("ACTIVE")), "sessions")["TableStatus"] == "ACTIVE"
