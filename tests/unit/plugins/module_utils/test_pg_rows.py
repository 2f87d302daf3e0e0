"""recover-rows' pure decisions: what a predicate, a table name and a source may be, and the order tables go in."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.pg_rows import (
    check_predicate,
    dependency_order,
    source_stamp,
    split_table,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import Target, parse_target


@pytest.mark.parametrize("where", ["id > 3; DROP TABLE users", "true;", "x = 1\x00"])
def test_a_predicate_is_one_expression(where):
    with pytest.raises(RunbookError) as refused:
        check_predicate(where)
    assert "one SQL expression" in str(refused.value) and "Nothing was changed" in str(refused.value)


def test_a_predicate_without_a_separator_is_kept_as_given():
    assert check_predicate("  created_at >= '2026-12-01' ") == "created_at >= '2026-12-01'"
    assert check_predicate("") == ""


@pytest.mark.parametrize(("given", "parts"), [("users", (None, "users")), ("public.users", ("public", "users")),
                                              ("données.été", ("données", "été"))])
def test_table_names(given, parts):
    assert split_table(given) == parts


@pytest.mark.parametrize("given", ["", "a.b.c", ".users", "public.", "x" * 64])
def test_bad_table_names_are_refused(given):
    with pytest.raises(RunbookError):
        split_table(given)


def test_parents_come_before_their_children_and_a_cycle_keeps_the_given_order():
    parents = {"public.posts": {"public.users"}, "public.comments": {"public.posts", "public.users"},
               "public.users": set()}
    assert dependency_order(["public.comments", "public.posts", "public.users"], parents) == [
        "public.users", "public.posts", "public.comments"]
    assert dependency_order(["a", "b"], {"a": {"b"}, "b": {"a"}}) == ["b", "a"]
    assert dependency_order(["a"], {"a": {"a", "elsewhere"}}) == ["a"]  # itself and a table not listed: no wait


def test_the_side_table_names_its_source_in_lower_case():
    now = datetime.datetime(2026, 12, 7, 14, 3, tzinfo=datetime.UTC)
    assert source_stamp("20261123T051200Z", None) == "20261123t051200z"
    assert source_stamp(None, parse_target(target_time="2026-12-07T14:02:00.5Z", now=now)) == "20261207t140200z"
    assert source_stamp(None, Target("lsn", "0/3000148")) == "lsn_0_3000148"
    named = Target("name", "runbook-recover-db-20261207T140200Z")
    assert source_stamp(None, named) == "runbook_recover_db_20261207t140200z"
