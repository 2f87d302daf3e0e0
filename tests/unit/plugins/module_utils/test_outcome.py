"""The outcome seam's words: "Nothing was changed." only when nothing was (pure logic)."""

from ansible_collections.runbook.recovery.plugins.module_utils.outcome import SHOWN, Outcome


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
