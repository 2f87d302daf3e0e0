"""Which retention values are accepted, and what the plan does with each group (pure logic)."""

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.aws_cloudwatch import (
    RETENTION_DAYS,
    check_retention,
    plan,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


@pytest.mark.parametrize("days", [1, 30, 1096, 2192, 2557, 2922, 3288, 3653])
def test_every_value_aws_accepts_is_accepted(days):
    check_retention(days)


@pytest.mark.parametrize("days,nearest", [(0, "1"), (13, "7 or 14"), (1000, "731 or 1096"), (4000, "3653")])
def test_other_values_are_refused_with_the_nearest(days, nearest):
    with pytest.raises(RunbookError, match=f"the nearest are {nearest}\\."):
        check_retention(days)


def test_the_accepted_values_are_sorted_and_unique():
    assert list(RETENTION_DAYS) == sorted(set(RETENTION_DAYS))


def test_plan_sets_creates_and_leaves_alone():
    groups = {"/a": {"logGroupName": "/a"}, "/b": {"logGroupName": "/b", "retentionInDays": 7},
              "/c": {"logGroupName": "/c", "retentionInDays": 30}}
    rows = {r["name"]: r for r in plan(groups, ["/new"], 30, only_unset=False)}
    assert rows["/a"] == {"name": "/a", "created": False, "before": None, "after": 30, "changed": True}
    assert rows["/b"]["after"] == 30 and rows["/b"]["changed"]
    assert not rows["/c"]["changed"]
    assert rows["/new"] == {"name": "/new", "created": True, "before": None, "after": 30, "changed": True}


def test_only_unset_keeps_an_explicit_retention():
    groups = {"/a": {"logGroupName": "/a"}, "/b": {"logGroupName": "/b", "retentionInDays": 7}}
    rows = {r["name"]: r for r in plan(groups, [], 30, only_unset=True)}
    assert rows["/a"]["after"] == 30 and rows["/a"]["changed"]
    assert rows["/b"]["after"] == 7 and not rows["/b"]["changed"]
