"""The outcome seam's words: "Nothing was changed." only when nothing was (pure logic)."""

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import (
    SHOWN,
    Outcome,
    record,
    record_undo,
    reported,
)


def test_nothing_written_says_so_once():
    fresh = Outcome()
    assert fresh.told("UpdateStage failed: AccessDenied") == "UpdateStage failed: AccessDenied. Nothing was changed."
    assert fresh.told("no such table. Nothing was changed.") == "no such table. Nothing was changed."
    assert fresh.facts() == {"changed": False, "changes": [], "undone": []}


def test_a_claim_of_nothing_changed_after_a_write_is_corrected():
    done = Outcome()
    done.wrote("record tagged on f")
    assert done.told("PutFunctionConcurrency failed. Nothing was changed.") == (
        "PutFunctionConcurrency failed. Changed before the failure and still in place: record tagged on f.")
    assert done.told("refused (nothing was changed on this table).") == (
        "refused. Changed before the failure and still in place: record tagged on f.")


def test_undone_and_standing_are_told_apart():
    done = Outcome()
    record = done.wrote("record tagged on t")
    done.wrote("UpdateTable of t accepted")
    done.undid(record, "removed again")
    assert done.sentence() == ("Changed before the failure and still in place: UpdateTable of t accepted. "
                               "Undone: record tagged on t (removed again).")
    assert done.facts() == {"changed": True, "changes": ["UpdateTable of t accepted"],
                            "undone": ["record tagged on t (removed again)"]}


def test_everything_undone_leaves_nothing_changed():
    done = Outcome()
    done.undid(done.wrote("SESSIONS_TABLE of f set to t2"), "set back to t1")
    assert done.sentence() == ("Changed before the failure, then undone: SESSIONS_TABLE of f set to t2 (set back to "
                               "t1). Nothing is left changed.")
    assert not done.changed


def test_a_failed_undo_is_named_and_stays_a_change():
    done = Outcome()
    step = done.wrote("SESSIONS_TABLE of f set to t2")
    done.undo_failed(step, "AccessDeniedException")
    assert done.changed
    assert "SESSIONS_TABLE of f set to t2 (undoing it failed: AccessDeniedException)" in done.sentence()


def test_many_changes_are_counted_not_all_listed():
    done = Outcome()
    for number in range(SHOWN + 3):
        done.wrote(f"function {number} stopped")
    assert done.sentence().endswith("; and 3 more (see the result's changes).")
    assert len(done.facts()["changes"]) == SHOWN + 3


class Failed(Exception):
    pass


class FakeModule:
    """What the seam calls: fail_json ends the run (AnsibleModule exits; here it raises)."""

    def fail_json(self, **result):
        raise Failed(result)


def failure(body, describe=lambda exc: None, *context):
    with pytest.raises(Failed) as caught:
        with reported(FakeModule(), describe, *context):
            body()
    return caught.value.args[0]


def test_writes_said_deep_under_a_module_end_its_failure_message():
    def body():
        record("database a dropped")
        record_undo(record("staging b created"), "dropped")
        raise RunbookError("the swap failed.", swapped=False)

    result = failure(body, lambda exc: None, {"database": "a", "changed": False})
    assert result["msg"] == ("the swap failed. Changed before the failure and still in place: database a dropped. "
                             "Undone: staging b created (dropped).")
    assert result["changes"] == ["database a dropped"] and result["undone"] == ["staging b created (dropped)"]
    assert result["changed"] is True and result["swapped"] is False and result["database"] == "a"


def test_an_error_the_seam_describes_fails_with_its_words_and_anything_else_keeps_its_traceback():
    def body():
        record("session 7 terminated")
        raise OSError("disk gone")

    result = failure(body, lambda exc: f"the server said: {exc}" if isinstance(exc, OSError) else None)
    assert result["msg"] == ("the server said: disk gone. Changed before the failure and still in place: session 7 "
                             "terminated.")
    with pytest.raises(KeyError):
        with reported(FakeModule(), lambda exc: None):
            raise KeyError("a bug")


def test_nothing_written_is_said_once_and_a_write_outside_a_seam_goes_nowhere():
    assert record("written with no seam") is None

    def refused():
        raise RunbookError("bad input: nothing was changed.")

    result = failure(refused)
    assert result["msg"] == "bad input: nothing was changed." and result["changed"] is False
    with reported(FakeModule(), lambda exc: None) as outcome:
        record("kept")
    assert [step.what for step in outcome.steps] == ["kept"]
    assert record("after the seam") is None
