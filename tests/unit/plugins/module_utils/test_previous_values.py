"""The decisions of stop, resume and scale, and the record they keep (pure logic, a fake resource type)."""

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.aws import Clients
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    STOPPED_AT,
    Current,
    Kind,
    Resource,
    from_plan,
    plan_resume,
    plan_set,
    plan_stop,
    run,
)

NOW = "2026-11-23T03:00:00.000000Z"
KEY = "runbook:previous-count"


class Counter(Kind):
    """A resource type held in a dict: {name: {"count": n, "tags": {...}}}; `reads` counts the reads."""

    noun = "counter"
    settings = {"count": ("count", int)}
    stopped = {"count": 0}

    def __init__(self, store, fail_write=()):
        super().__init__(clients=None)
        self.store, self.fail_write, self.reads = store, fail_write, 0

    def read(self, resource):
        self.reads += 1
        item = self.store[resource.name]
        return Current({"count": item["count"]}, dict(item["tags"]))

    def write(self, resource, current, values, outcome=None):
        if resource.name in self.fail_write:
            raise RuntimeError("write refused")
        self.store[resource.name]["count"] = values["count"]

    def tag(self, resource, tags):
        self.store[resource.name]["tags"].update(tags)

    def untag(self, resource, keys):
        for key in keys:
            self.store[resource.name]["tags"].pop(key, None)


def current(count, **tags):
    return Current({"count": count}, {k.replace("_", "-"): v for k, v in tags.items()})


def recorded(count, value):
    return Current({"count": count}, {KEY: value, STOPPED_AT: NOW})


def test_stop_records_the_value_before_changing_it():
    plan = plan_stop(Counter({}), current(7), NOW)
    assert plan.action == "stop" and plan.write == {"count": 0}
    assert plan.add_tags == {KEY: "7", STOPPED_AT: NOW}


def test_stop_records_not_set_as_none():
    assert plan_stop(Counter({}), current(None), NOW).add_tags[KEY] == "none"


def test_already_zero_without_record_is_left_alone():
    plan = plan_stop(Counter({}), current(0), NOW)
    assert plan.action == "already_stopped" and not plan.changes


def test_second_stop_keeps_the_first_record():
    plan = plan_stop(Counter({}), recorded(0, "7"), NOW)
    assert plan.action == "already_stopped" and not plan.changes
    again = plan_stop(Counter({}), recorded(3, "7"), NOW)  # someone raised it during the incident
    assert again.write == {"count": 0} and again.add_tags == {}


def test_resume_restores_then_forgets():
    plan = plan_resume(Counter({}), recorded(0, "7"))
    assert plan.write == {"count": 7} and sorted(plan.remove_tags) == sorted([KEY, STOPPED_AT])
    assert plan_resume(Counter({}), recorded(0, "none")).write == {"count": None}


def test_resume_without_record_does_nothing_and_a_changed_value_is_kept():
    assert not plan_resume(Counter({}), current(5)).changes
    kept = plan_resume(Counter({}), recorded(4, "7"))
    assert kept.write is None and kept.remove_tags and "changed by someone else" in kept.note


@pytest.mark.parametrize("tags", [{KEY: "seven"}, {KEY: ""}])
def test_an_unreadable_record_is_an_error_not_a_guess(tags):
    with pytest.raises(RunbookError, match="set the value by hand"):
        plan_resume(Counter({}), Current({"count": 0}, tags))


def test_scaling_a_stopped_resource_is_refused():
    assert plan_set(Counter({}), recorded(0, "7"), {"count": 3}, NOW).action == "refused"
    assert plan_set(Counter({}), current(3), {"count": 3}, NOW).action == "unchanged"
    scaled = plan_set(Counter({}), current(3), {"count": 5}, NOW)
    assert scaled.write == {"count": 5}
    assert scaled.add_tags == {"runbook:scale-previous-count": "3", "runbook:scaled-at": NOW}


def test_scale_twice_then_undo_returns_to_before_the_first():
    store = {"a": {"count": 3, "tags": {}}}
    kind = Counter(store)
    for count in (5, 9):
        run(kind, [Resource("a", "a")], "present", check_mode=False, wanted={"count": count})
    assert store["a"]["count"] == 9 and store["a"]["tags"]["runbook:scale-previous-count"] == "3"
    undone = run(kind, [Resource("a", "a")], "undone", check_mode=False)
    assert undone["counts"] == {"undo": 1} and store["a"] == {"count": 3, "tags": {}}
    again = run(kind, [Resource("a", "a")], "undone", check_mode=False)
    assert again["counts"] == {"not_scaled": 1} and not again["changed"]


def test_one_failing_resource_does_not_stop_the_others_and_its_record_stays_true():
    store = {name: {"count": n, "tags": {}} for name, n in (("a", 1), ("b", 2), ("c", 3))}
    kind = Counter(store, fail_write={"b"})
    result = run(kind, [Resource(n, n) for n in store], "stopped", check_mode=False)
    assert result["failed_resources"] == ["b"] and result["counts"] == {"stop": 2, "failed": 1}
    assert [store[n]["count"] for n in "abc"] == [0, 2, 0]
    # b kept its value and a record of it; the resume after the incident brings every one back.
    assert store["b"]["tags"][KEY] == "2"
    kind.fail_write = ()
    resumed = run(kind, [Resource(n, n) for n in store], "resumed", check_mode=False)
    assert resumed["failed_resources"] == [] and [store[n]["count"] for n in "abc"] == [1, 2, 3]
    assert all(store[n]["tags"] == {} for n in "abc")


def test_a_refusal_that_changed_nothing_is_reported_unchanged():
    """A kind that takes back what it wrote before a refused call says so; the row then does not claim a change."""
    store = {"a": {"count": 4, "tags": {}}}

    class Refused(Counter):
        def write(self, resource, current, values, outcome=None):
            self.store[resource.name]["tags"].clear()
            raise RunbookError("refused by the service; the counter is unchanged.", record_removed=True)

    result = run(Refused(store), [Resource("a", "a")], "present", check_mode=False, wanted={"count": 9})
    [row] = result["resources"]
    assert row["action"] == "failed" and row["changed"] is False and not result["changed"]
    assert row["after"] == row["before"] == {"count": 4} and store["a"] == {"count": 4, "tags": {}}
    assert "the counter is unchanged" in result["msg"]
    assert "then undone: record runbook:scale-previous-count=4" in result["msg"], result["msg"]
    assert "Nothing is left changed." in result["msg"]


def test_check_mode_writes_nothing():
    store = {"a": {"count": 4, "tags": {}}}
    result = run(Counter(store), [Resource("a", "a")], "stopped", check_mode=True)
    assert result["changed"] and result["resources"][0]["after"] == {"count": 0}
    assert store == {"a": {"count": 4, "tags": {}}}


def test_workers_must_be_positive():
    with pytest.raises(RunbookError, match="workers=0"):
        Clients({}, workers=0)


def test_an_apply_from_its_plan_reads_nothing_again_and_acts_only_where_the_plan_said():
    store = {"a": {"count": 4, "tags": {"team": "chat"}}, "b": {"count": 0, "tags": {}}}
    plan = run(Counter(store), [Resource(n, n) for n in store], "stopped", check_mode=True)
    assert [row["read"]["tags"] for row in plan["resources"]] == [{}, {}]  # only runbook:* tags are kept

    kind = Counter(store)
    resources, known = from_plan("counter", plan["resources"])
    assert [r.name for r in resources] == ["a", "b"] and all(known[n].fresh for n in "ab")
    result = run(kind, resources, "stopped", check_mode=False, known=known)
    assert kind.reads == 0
    assert result["counts"] == {"stop": 1, "already_stopped": 1}
    assert store["a"]["count"] == 0 and store["a"]["tags"][KEY] == "4" and store["b"]["tags"] == {}


def test_an_old_plan_is_compared_before_the_write_and_a_changed_resource_refused():
    store = {"a": {"count": 4, "tags": {}}, "b": {"count": 2, "tags": {}}, "c": {"count": 3, "tags": {}}}
    plan = run(Counter(store), [Resource(n, n) for n in store], "stopped", check_mode=True)["resources"]
    del plan[2]["read"]  # c's read failed in the plan: read as if there were no plan
    store["a"]["count"] = 6  # changed after the plan, which is older than PLAN_FRESH_SECONDS when acted on
    resources, known = from_plan("counter", plan, now=plan[0]["read"]["at"] + 121)
    assert sorted(known) == ["a", "b"] and not any(planned.fresh for planned in known.values())
    kind = Counter(store)
    result = run(kind, resources, "stopped", check_mode=False, known=known)
    assert kind.reads == 3
    assert result["failed_resources"] == ["a"] and "changed since the plan read it" in result["msg"]
    assert "count=4, now count=6" in result["msg"] and "nothing was written to it" in result["msg"]
    assert store["a"] == {"count": 6, "tags": {}}
    assert store["b"]["count"] == 0 and store["b"]["tags"][KEY] == "2" and store["c"]["tags"][KEY] == "3"


def test_a_plan_of_another_kind_is_not_acted_on_and_a_bad_row_is_refused():
    assert from_plan("counter", [{"kind": "other", "resource": "x", "arn": "x"}]) == ([], {})
    with pytest.raises(RunbookError, match="planned holds a row without kind, resource and arn"):
        from_plan("counter", [{"resource": "x"}])
