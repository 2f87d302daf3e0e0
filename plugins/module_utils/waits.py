# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way AWS modules wait, and the one way they retry an update AWS refuses because another is in progress.

`wait_until(check, timeout, what)` calls `check()` until it answers ("done", detail). ("failed", detail) ends the
wait at once with what AWS said (a resource that can no longer reach the state waited for is never waited on until
the deadline); anything else ("pending", "waiting") polls again, from half a second growing to 15 s. At the deadline
it fails with what was last seen. Each resource's `check` lives beside the code that knows the resource (its
failure states and AWS's reason for them).

`retry_conflicts(call, what)` calls again, with a growing delay and a bounded number of tries, while AWS answers
ResourceConflictException (Lambda: "The operation cannot be performed at this time. An update is in progress").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ansible_collections.runbook.recovery.plugins.module_utils.aws import error_code
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError

T = TypeVar("T")
CONFLICT = "ResourceConflictException"
CONFLICT_TRIES, CONFLICT_FIRST_DELAY, CONFLICT_MAX_DELAY = 8, 0.5, 10.0


class WaitFailed(RunbookError):
    """A wait that ended without "done": `timed_out` tells a deadline from a failure state; `detail` is what the
    check last answered (AWS's reason for a failure state, the last status seen at a deadline)."""

    def __init__(self, message: str, detail: str, timed_out: bool):
        super().__init__(message)
        self.detail, self.timed_out = detail, timed_out


def wait_until(check: Callable[[], tuple[str, str]], timeout: float, what: str, first_poll: float = 0.5,
               max_poll: float = 15.0, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> str:
    """Call `check` until it answers ("done", detail) and return that detail. ("failed", why) raises WaitFailed
    "<what> failed: <why>" at once; at the deadline (the last check is made at it) WaitFailed says
    "<what> did not finish within <timeout>s (last seen: <detail>)"."""
    deadline = clock() + timeout
    poll = first_poll
    while True:
        state, detail = check()
        if state == "done":
            return detail
        if state == "failed":
            raise WaitFailed(f"{what} failed: {detail}", detail, timed_out=False)
        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitFailed(f"{what} did not finish within {timeout:g}s (last seen: {detail})", detail,
                             timed_out=True)
        sleep(min(poll, remaining))
        poll = min(poll * 2, max_poll)


def retry_conflicts(call: Callable[[], T], what: str, tries: int = CONFLICT_TRIES,
                    first_delay: float = CONFLICT_FIRST_DELAY, max_delay: float = CONFLICT_MAX_DELAY,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, called again while AWS answers ResourceConflictException, `tries` calls in all (delays 0.5, 1, 2,
    4, 8, 10, 10 s by default). Then a RunbookError says that `what` was refused because of an update in progress
    (so it changed nothing). Every other error is the caller's to report."""
    delay, waited, attempt = first_delay, 0.0, 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            if error_code(exc) != CONFLICT:
                raise
            if attempt >= tries:
                said = exc.response.get("Error", {}).get("Message") or CONFLICT
                raise RunbookError(
                    f"{what} was refused {attempt} times over {waited:g}s because another update is in progress "
                    f"({CONFLICT}: {said}), so it was not made. Wait for that update to finish (for a Lambda "
                    "function, aws lambda get-function-configuration shows LastUpdateStatus), then run again."
                ) from None
        sleep(delay)
        waited += delay
        delay = min(delay * 2, max_delay)
