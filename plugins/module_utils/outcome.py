# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run changed, so that a failure says exactly that: the one outcome seam of every module (AWS, PostgreSQL,
Redis, Docker).

Code that writes says so right after each write that AWS accepted (`outcome.wrote("reserved concurrency of f set
to 0")`), and after each undo (`outcome.undid(step, "set back to 7")`, or `outcome.undo_failed(step, why)`). When
the run fails, `sentence()` is the end of its message:

- nothing written: "Nothing was changed."
- everything written was undone: "Changed before the failure, then undone: A (set back to 7). Nothing is left
  changed."
- otherwise: "Changed before the failure and still in place: B; C. Undone: A (set back to 7)."

and `facts()` the same as result keys (`changes`, `undone`, `changed`). A message of the failing code that claims
"Nothing was changed" after a write is corrected here, so the claim appears only when it is true.

`Outcome` is thread-safe: one run's worker threads share it.

`reported(module, describe, *context)` is the seam itself: it yields the run's outcome and turns a RunbookError,
or an error `describe` knows (a database's, AWS's), into one fail_json whose message ends with that truth. Code
deep under a module (a database dropped, a session terminated) says its writes with `record(what)`, which goes to
the outcome of the seam the module runs under (one module run per process), and is a no-op outside one.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, failure_details
from ansible_collections.runbook.recovery.plugins.module_utils.journal import crash_after

_NOTHING_CHANGED = re.compile(r"\s*\(?\bnothing (?:was|has been) changed\b[^.;)]*[.;)]?", re.IGNORECASE)
SHOWN = 8  # changes named in a message; the result keeps them all


@dataclass
class Step:
    what: str
    undone: str | None = None  # how it was undone
    undo_error: str | None = None  # why undoing it failed


class Outcome:
    def __init__(self):
        self.steps: list[Step] = []
        self._lock = threading.Lock()

    def wrote(self, what: str) -> Step:
        step = Step(what)
        with self._lock:
            self.steps.append(step)
        return step

    @staticmethod
    def undid(step: Step, how: str) -> None:
        step.undone, step.undo_error = how, None

    def undo_failed(self, step: Step, why: str) -> None:
        step.undo_error = why

    @property
    def standing(self) -> list[Step]:
        """The writes still in place."""
        return [step for step in self.steps if step.undone is None]

    @property
    def changed(self) -> bool:
        return bool(self.standing)

    def sentence(self) -> str:
        if not self.steps:
            return "Nothing was changed."
        undone = [f"{step.what} ({step.undone})" for step in self.steps if step.undone is not None]
        standing = [step.what + (f" (undoing it failed: {step.undo_error})" if step.undo_error else "")
                    for step in self.standing]
        if not standing:
            return f"Changed before the failure, then undone: {_listed(undone)}. Nothing is left changed."
        text = f"Changed before the failure and still in place: {_listed(standing)}."
        return text + (f" Undone: {_listed(undone)}." if undone else "")

    def facts(self) -> dict:
        return {"changed": self.changed, "changes": [step.what for step in self.standing],
                "undone": [f"{step.what} ({step.undone})" for step in self.steps if step.undone is not None]}

    def told(self, message: str) -> str:
        """`message` with the truth about what changed: a claim that nothing changed is dropped when something did,
        and the sentence is added unless the message already makes the same claim."""
        message = message.rstrip()
        if self.steps:
            message = _NOTHING_CHANGED.sub("", message).rstrip(" ;:,")
        elif _NOTHING_CHANGED.search(message):
            return message
        return f"{message.rstrip('.')}. {self.sentence()}"


_ACTIVE: list[Outcome] = []  # the outcome of the seam this process runs under


@contextlib.contextmanager
def reported(module, describe: Callable[[Exception], str | None], *context: dict):
    """The failure seam of every module: yields the run's `Outcome`. A RunbookError, or an error for which
    `describe` returns a message, becomes one fail_json whose message ends with what was changed before it and
    what was undone, with the same in the result (`changes`, `undone`, `changed`) after the facts of `context`.
    Anything else is a bug and keeps its traceback."""
    outcome = Outcome()
    _ACTIVE.append(outcome)
    try:
        yield outcome
        crash_after(module, bool(outcome.steps))
    except RunbookError as exc:
        module.fail_json(msg=outcome.told(str(exc)), **failure_details(*context, exc.details, outcome.facts()))
    except Exception as exc:
        message = describe(exc)
        if message is None:
            raise
        module.fail_json(msg=outcome.told(message), **failure_details(*context, outcome.facts()))
    finally:
        _ACTIVE.remove(outcome)


def record(what: str) -> Step | None:
    """Say a write to the outcome of the seam this runs under (none: a function called on its own)."""
    return said(_ACTIVE[-1] if _ACTIVE else None, what)


def record_undo(step: Step | None, how: str) -> None:
    """Say the undo of a step `record` returned (None when it was said to no seam)."""
    if step is not None:
        Outcome.undid(step, how)


def said(outcome: Outcome | None, what: str) -> Step | None:
    """`outcome.wrote(what)` for code that may run without an outcome (a write called on its own)."""
    return outcome.wrote(what) if outcome is not None else None


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:SHOWN])
    return shown + (f"; and {len(items) - SHOWN} more (see the result's changes)" if len(items) > SHOWN else "")
