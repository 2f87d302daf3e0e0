"""The one wait (a deadline, failure states, growing polls) and the one retry of an update AWS refuses while another
is in progress, with a fake clock (pure logic; the AWS waits themselves run against the emulator in
tests/integration)."""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.waits import WaitFailed, retry_conflicts, wait_until


class Clock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def wait(self, check, timeout, what="deployment x", **options):
        return wait_until(check, timeout, what, sleep=self.sleep, clock=lambda: self.now, **options)


def test_the_wait_polls_more_slowly_until_done():
    clock, answers = Clock(), iter([("waiting", "0/2")] * 6 + [("done", "2/2")])
    assert clock.wait(lambda: next(answers), 600) == "2/2"
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]


def test_a_failure_state_ends_the_wait_at_once_with_its_reason():
    clock = Clock()
    with pytest.raises(WaitFailed, match="deployment x failed: circuit breaker") as failed:
        clock.wait(lambda: ("failed", "circuit breaker"), 60)
    assert clock.sleeps == [] and not failed.value.timed_out and failed.value.detail == "circuit breaker"
    assert isinstance(failed.value, RunbookError)


def test_the_deadline_says_what_was_last_seen_after_a_last_check_at_the_deadline():
    clock, seen = Clock(), iter(range(100))
    with pytest.raises(WaitFailed, match=r"deployment x did not finish within 10s \(last seen: 5/9\)") as failed:
        clock.wait(lambda: ("waiting", f"{next(seen)}/9"), 10)
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 2.5] and clock.now == 10
    assert failed.value.timed_out and failed.value.detail == "5/9"


def test_no_time_to_wait_checks_once():
    clock = Clock()
    assert clock.wait(lambda: ("done", "ACTIVE"), 0) == "ACTIVE"
    with pytest.raises(WaitFailed, match=r"within 0s \(last seen: CREATING\)"):
        clock.wait(lambda: ("pending", "CREATING"), 0)
    assert clock.sleeps == []


def test_polls_start_and_stop_where_asked():
    clock, answers = Clock(), iter([("pending", "x")] * 4 + [("done", "y")])
    clock.wait(lambda: next(answers), 600, first_poll=1.0, max_poll=3.0)
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]


def aws_error(code, message="An update is in progress"):
    return ClientError({"Error": {"Code": code, "Message": message}}, "UpdateFunctionConfiguration")


class Flaky:
    """Raises the given errors in turn, then answers."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "updated"


def test_an_update_in_progress_is_retried_until_it_is_accepted():
    call, slept = Flaky(aws_error("ResourceConflictException"), aws_error("ResourceConflictException")), []
    assert retry_conflicts(call, "UpdateFunctionConfiguration of f", sleep=slept.append) == "updated"
    assert call.calls == 3 and slept == [0.5, 1.0]


def test_the_retry_gives_up_after_its_bound_and_says_so():
    call, slept = Flaky(*[aws_error("ResourceConflictException")] * 9), []
    with pytest.raises(RunbookError) as gave_up:
        retry_conflicts(call, "UpdateFunctionConfiguration of f", sleep=slept.append)
    assert call.calls == 8 and slept == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert str(gave_up.value).startswith(
        "UpdateFunctionConfiguration of f was refused 8 times over 35.5s because another update is in progress "
        "(ResourceConflictException: An update is in progress), so it was not made. Wait for that update to finish")
    with pytest.raises(RunbookError, match="refused 2 times over 0.5s"):
        retry_conflicts(Flaky(*[aws_error("ResourceConflictException")] * 2), "x", tries=2, sleep=slept.append)


def test_any_other_error_is_not_retried():
    call = Flaky(aws_error("InvalidParameterValueException", "MemorySize too large"))
    with pytest.raises(ClientError, match="MemorySize too large"):
        retry_conflicts(call, "x", sleep=lambda _s: pytest.fail("slept"))
    assert call.calls == 1
