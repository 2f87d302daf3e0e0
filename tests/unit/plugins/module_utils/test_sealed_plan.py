"""A sealed plan compared with what a run reads now: what a person would want refused, and what they would not."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.sealed_plan import compare, load, seal, write


def lock(lock_id: str, who: str, at: float) -> dict:
    return {"store": "dynamodb", "id": lock_id, "who": who, "age": "3h 0m", "age_seconds": 10800 + at,
            "read": {"at": at}, "lines": [f"held by {who}"], "action": "remove"}


def test_only_when_it_was_read_and_how_old_it_is_may_differ():
    plan = seal("terraform-unlock", {}, ["aws"], {"locks": [lock("A", "alice", 1.0)]}, now=1.0)
    compare(plan, {"locks": [lock("A", "alice", 99.0)]})  # read again later, untouched: holds


@pytest.mark.parametrize(("now", "said"), [
    ({"locks": [lock("B", "bob", 1.0)]}, 'locks[0].id: the plan read "A", now "B"'),
    ({"locks": []}, "locks: the plan read"),
    ({"locks": [lock("A", "alice", 1.0), lock("B", "bob", 1.0)]}, "locks: the plan read"),
    ({}, "locks is gone"),
    ({"locks": [lock("A", "alice", 1.0)], "tables": []}, "tables is new"),
])
def test_a_resource_changed_gone_or_new_refuses_the_plan_naming_it(now, said):
    plan = seal("terraform-unlock", {}, ["aws"], {"locks": [lock("A", "alice", 1.0)]}, now=1.0)
    with pytest.raises(RunbookError) as refused:
        compare(plan, now)
    assert said in str(refused.value) and "nothing was changed" in str(refused.value)


def test_partial_compares_the_hosts_given_and_ignore_leaves_out_a_decision():
    plan = seal("restart-app", {}, ["a", "b"], {"a": [{"id": "1"}], "b": [{"id": "2"}]}, now=1.0)
    compare(plan, {"b": [{"id": "2"}]}, partial=True)
    with pytest.raises(RunbookError):
        compare(plan, {"b": [{"id": "2"}]})
    with pytest.raises(RunbookError):
        compare(plan, {"b": [{"id": "3"}]}, partial=True)
    decided = seal("terraform-unlock", {}, ["aws"], {"locks": [{"id": "A", "action": "show"}]}, now=1.0)
    compare(decided, {"locks": [{"id": "A", "action": "remove"}]}, ignore=["action"])


def test_a_plan_named_without_a_directory_is_written_and_read_in_the_working_directory(tmp_path, monkeypatch):
    """-e plan_out=plan.json, as the README writes it: the file lands where the person runs the playbook."""
    monkeypatch.chdir(tmp_path)
    write("plan.json", seal("terraform-unlock", {}, ["aws"], {"locks": [lock("A", "alice", 1.0)]}, now=1.0))
    assert (tmp_path / "plan.json").stat().st_mode & 0o777 == 0o600
    assert load("plan.json", "terraform-unlock", max_age=3600, now=2.0)["resources"]["locks"][0]["id"] == "A"
