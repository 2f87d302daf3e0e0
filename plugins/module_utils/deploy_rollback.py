# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deployment rollbacks recorded on the resource itself: an ECS service back to an earlier task definition
revision (or restarted on the one it runs), a Lambda alias back to an earlier published version.

Before it changes anything, a rollback records on the resource what it replaced and what it set:

    ECS service      runbook:rollback-previous-task-definition = <ARN replaced>
                     runbook:rollback-task-definition = <ARN set>, runbook:rolled-back-at = <UTC time>
    Lambda function  runbook:rollback-previous-<alias>-version = 7, runbook:rollback-previous-<alias>-weights =
                     8=0.1 (the second version of a weighted alias; empty when none)
                     runbook:rollback-<alias>-version = 6, runbook:rolled-back-<alias>-at = <UTC time>

($LATEST is recorded as LATEST: tag values take no "$".)

The record stays on the resource; the next rollback replaces it. Where a rollback goes (`choose_target`, pure):

1. the revision or version given: nothing to do when it already runs;
2. the one the record names, when the resource still runs what the last rollback set: a second rollback undoes
   the first (a record the resource has moved on from, by a deploy since, is not followed);
3. otherwise the newest usable one (an ACTIVE revision of the same family; a published version) older than the
   one running. A weighted alias first loses its second version: the canary is what is rolled back.

A revision that is missing or INACTIVE, $LATEST, or nothing older to go back to, is refused in the plan, before
any change, with what to do. This file holds the choice; the kinds live with their service, `EcsDeployment` in
aws_ecs.py and `AliasVersion` in aws_lambda.py. They are `previous_values.Kind`s, so rows, plan lines, diff and the
thread pool are those of every other AWS module; the waits are `waits.wait_until`, that of every AWS module (a
deadline, failure states, polls growing from half a second to 15 s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError

LATEST, LATEST_IN_TAGS = "$LATEST", "LATEST"
DEFAULT_WAIT_SECONDS = 600


# -- the choice (pure) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class History:
    """What a rollback chooses from. Keys are what a person reads: `family:revision`, or a Lambda version.

    `states` holds every revision or version known to exist, with its state; `line` gives a key's place among
    the ones a rollback may step back through (None: not among them, such as another family, or $LATEST)."""

    running: str
    states: dict[str, str]
    usable: str
    what: str  # what a usable one is called: "ACTIVE revision", "published version"
    line: Callable[[str], int | None]
    unusable: Callable[[str, str | None], str]  # (key, its state or None when missing) -> why and what to do
    nothing_older: Callable[[list[str]], str]  # (older keys that are not usable) -> why and what to do
    recorded_previous: str | None = None
    recorded_set: str | None = None
    recorded_at: str | None = None


@dataclass(frozen=True)
class Choice:
    action: str  # rollback, undo, unchanged
    target: str
    note: str


# to=recorded: what the last rollback set, as recorded on the resource. A run with it in check mode changes nothing
# while each resource still runs what its last rollback set: the rollback_deploy DAG's verify step.
RECORDED = "recorded"


def recorded_target(history: History) -> str:
    if not history.recorded_set:
        raise RunbookError(f"to={RECORDED}: no rollback is recorded on it (it has never been rolled back by this "
                           "collection), so there is nothing to compare with. Nothing was changed.")
    return history.recorded_set


def choose_target(history: History, wanted: str | None) -> Choice:
    """Where a rollback goes (see the module's docstring); a RunbookError says why it cannot go anywhere."""
    if wanted == RECORDED:
        wanted = recorded_target(history)

    def require_usable(key: str) -> None:
        state = history.states.get(key)
        if state != history.usable:
            raise RunbookError(history.unusable(key, state))

    if wanted is not None:
        if wanted == history.running:
            return Choice("unchanged", wanted, f"already runs {wanted}, as asked")
        require_usable(wanted)
        return Choice("rollback", wanted, f"to {wanted}, as asked")
    if history.recorded_previous and history.recorded_set == history.running \
            and history.recorded_previous != history.running:
        require_usable(history.recorded_previous)
        return Choice("undo", history.recorded_previous,
                      f"undoes the rollback of {history.recorded_at or 'an earlier run'} "
                      f"({history.recorded_previous} -> {history.running})")
    place = history.line(history.running)
    places = {key: history.line(key) for key in history.states}
    older = sorted((key for key, at in places.items() if None not in (at, place) and at < place),
                   key=places.get, reverse=True)
    usable = [key for key in older if history.states[key] == history.usable]
    if not usable:
        raise RunbookError(history.nothing_older(older))
    target = usable[0]
    skipped = older[:older.index(target)]
    note = f"the newest {history.what} before {history.running}"
    if skipped:
        note += f" ({', '.join(f'{key} is {history.states[key]}' for key in skipped)})"
    if history.recorded_previous == target:
        note += (f"; note: the rollback of {history.recorded_at or 'an earlier run'} went away from {target}: "
                 "give another with to=... if that one is the bad one")
    return Choice("rollback", target, note)
