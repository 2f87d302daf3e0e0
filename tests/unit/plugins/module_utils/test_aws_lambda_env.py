"""lambda-env's pure decisions: which names and values are refused, when a change is lifted, and what an undo does with
each recorded variable (put back, already back, or changed since by someone else)."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda_env import (
    FunctionEnvironment,
    check_changes,
    check_size,
    digest,
    due,
    expiry,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError

NOW = datetime.datetime(2026, 12, 8, 1, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(("values", "unset", "says"), [
    ({}, [], "name the variables to change"),
    ({"AWS_REGION": "x"}, [], "AWS_REGION is reserved"),
    ({}, ["LAMBDA_TASK_ROOT"], "LAMBDA_TASK_ROOT is reserved"),
    ({"X": "1"}, [], "'X' is not a Lambda environment variable name"),
    ({"9LIVES": "x"}, [], "is not a Lambda environment variable name"),
    ({"A-B": "x"}, [], "is not a Lambda environment variable name"),
    ({"AB": "1"}, ["AB"], "AB is both set and removed"),
    ({"AB": 1}, [], "the value of AB must be text"),
])
def test_refused_changes(values, unset, says):
    with pytest.raises(RunbookError, match=says):
        check_changes(values, unset)


def test_accepted_changes():
    check_changes({"LOG_LEVEL": "DEBUG", "feature_x": ""}, ["OLD_FLAG"])


def test_the_4_kb_limit_counts_the_variables_as_the_api_carries_them():
    check_size("f", {"AB": "x" * 4000})
    with pytest.raises(RunbookError, match="over Lambda's 4 KB"):
        check_size("f", {"AB": "x" * 4090})


def test_expiry():
    assert expiry(None, NOW) is None and expiry("", NOW) is None
    assert expiry("30m", NOW) == "2026-12-08T01:30:00.000000Z"
    with pytest.raises(RunbookError, match="not understood"):
        expiry("soon", NOW)


def test_due_records_are_those_whose_time_has_passed():
    records = [{"function": "b", "expires_at": "2026-12-08T00:59:59.000000Z"},
               {"function": "a", "expires_at": "2026-12-08T01:00:00.000000Z"},
               {"function": "later", "expires_at": "2026-12-08T01:00:01.000000Z"},
               {"function": "until-undone", "expires_at": None}]
    assert due(records, NOW) == ["a", "b"]


def environment(variables: dict) -> FunctionEnvironment:
    env = FunctionEnvironment(lambda service: None, "chat", shown=("LOG_LEVEL",))
    env.variables = variables
    return env


def test_an_undo_puts_back_what_is_still_ours_and_refuses_what_someone_changed():
    record = {"variables": {
        "LOG_LEVEL": {"previous": "INFO", "set": digest("DEBUG")},       # still what we set: put back
        "ADDED": {"previous": None, "set": digest("1")},                 # we added it: removed
        "REMOVED": {"previous": "old", "set": None},                     # we removed it, still absent: put back
        "BACK": {"previous": "x", "set": digest("y")},                   # someone put it back already
        "THEIRS": {"previous": "a", "set": digest("b")},                 # someone set it to c since
    }}
    rows = {r["name"]: r for r in environment({"LOG_LEVEL": "DEBUG", "ADDED": "1", "BACK": "x", "THEIRS": "c",
                                               "OTHER": "kept"}).plan_undo(record)}
    assert {name: r["action"] for name, r in rows.items()} == {
        "LOG_LEVEL": "restore", "ADDED": "restore", "REMOVED": "restore", "BACK": "unchanged", "THEIRS": "conflict"}
    assert rows["LOG_LEVEL"]["before"] == "'DEBUG'" and rows["LOG_LEVEL"]["after"] == "'INFO'"
    assert rows["THEIRS"]["before"] == "set (1 characters)" and rows["ADDED"]["after"] == "not set"


def test_a_plan_masks_every_value_but_the_shown_ones():
    rows = environment({"LOG_LEVEL": "INFO", "DB_PASSWORD": "hunter2"}).plan_set(
        {"LOG_LEVEL": "DEBUG", "DB_PASSWORD": "hunter3"}, ["GONE"])
    assert rows == [
        {"name": "LOG_LEVEL", "action": "set", "before": "'INFO'", "after": "'DEBUG'"},
        {"name": "DB_PASSWORD", "action": "set", "before": "set (7 characters)", "after": "set (7 characters)"},
        {"name": "GONE", "action": "unchanged", "before": "not set", "after": "not set"}]
