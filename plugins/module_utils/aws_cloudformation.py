# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS CloudFormation: stacks that a failed deploy leaves behind (ROLLBACK_COMPLETE and friends) must be deleted
before the next deploy can create them again. Find them, say why each failed, delete them and wait; a delete that
fails on some resources is retried with exactly those resources retained, and they are named in the result."""

from __future__ import annotations

import time

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    describe_error,
    error_code,
    for_each,
    paginate,
)
from ansible_collections.runbook.recovery.plugins.module_utils.waits import WaitFailed, wait_until

FAILED_STATES = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED")
_FAILURE_EVENTS = ("CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED")


def failed_stacks(cfn, prefixes: list[str], states: list[str]) -> list[dict]:
    summaries = paginate(cfn, "list_stacks", "StackSummaries", StackStatusFilter=list(states))
    chosen = [s for s in summaries if not prefixes or any(s["StackName"].startswith(p) for p in prefixes)]
    return sorted(chosen, key=lambda s: s["StackName"])


def stack_events(cfn, stack_id: str) -> list[dict]:
    """Newest first, as AWS returns them."""
    return paginate(cfn, "describe_stack_events", "StackEvents", StackName=stack_id)


def failure_reason(events: list[dict]) -> str | None:
    """The reason of the oldest failed resource of the latest operation: the cause, not the cascade after it."""
    reasons = []
    for event in events:
        is_stack = event.get("ResourceType") == "AWS::CloudFormation::Stack"
        if is_stack and event["ResourceStatus"].endswith("_IN_PROGRESS") and event.get(
                "ResourceStatusReason") == "User Initiated":
            break
        if not is_stack and event["ResourceStatus"] in _FAILURE_EVENTS:
            why = event.get("ResourceStatusReason") or event["ResourceStatus"]
            reasons.append(f"{event['LogicalResourceId']}: {why}")
    return reasons[-1] if reasons else None


def resources_failing_delete(events: list[dict]) -> list[str]:
    """Logical ids of the resources whose deletion failed in the latest delete."""
    failed = []
    for event in events:
        is_stack = event.get("ResourceType") == "AWS::CloudFormation::Stack"
        if is_stack and event["ResourceStatus"] == "DELETE_IN_PROGRESS":
            break
        if event["ResourceStatus"] == "DELETE_FAILED" and not is_stack:
            if event["LogicalResourceId"] not in failed:
                failed.append(event["LogicalResourceId"])
    return sorted(failed)


def plan(cfn, summary: dict) -> dict:
    events = stack_events(cfn, summary["StackId"])
    retain = resources_failing_delete(events) if summary["StackStatus"] == "DELETE_FAILED" else []
    return {"name": summary["StackName"], "stack_id": summary["StackId"], "status": summary["StackStatus"],
            "reason": failure_reason(events) or summary.get("StackStatusReason"), "retained": retain,
            "fix": "delete" + (f", retaining {', '.join(retain)}" if retain else ""), "result": "planned",
            "changed": True}


def stack_status(cfn, stack_id: str) -> str:
    try:
        stacks = cfn.describe_stacks(StackName=stack_id)["Stacks"]
    except Exception as exc:
        if error_code(exc) == "ValidationError":  # gone: only a name, not an id, is forgotten this way
            return "DELETE_COMPLETE"
        raise
    return stacks[0]["StackStatus"] if stacks else "DELETE_COMPLETE"


def deletion_state(cfn, stack_id: str) -> tuple[str, str]:
    """A stack being deleted, for wait_until: gone, or DELETE_FAILED with the reason of the resource that failed."""
    status = stack_status(cfn, stack_id)
    if status == "DELETE_COMPLETE":
        return "done", status
    if status == "DELETE_FAILED":
        return "failed", failure_reason(stack_events(cfn, stack_id)) or "no failed resource is named in its events"
    return "pending", status


def wait_deleted(cfn, stack_id: str, timeout: float, sleep=time.sleep, clock=time.monotonic) -> None:
    """Until the stack is gone; WaitFailed at DELETE_FAILED (at once, with the reason) or at the deadline."""
    wait_until(lambda: deletion_state(cfn, stack_id), timeout, f"deleting stack {stack_id}", first_poll=1.0,
               sleep=sleep, clock=clock)


def delete(cfn, row: dict, timeout: float) -> dict:
    """Delete, and once more with the failing resources retained when the delete fails."""
    retain, failure = list(row["retained"]), None
    row["changes"] = []
    for _attempt in range(2):
        cfn.delete_stack(StackName=row["stack_id"], **({"RetainResources": retain} if retain else {}))
        row["changes"].append(f"DeleteStack of {row['name']} accepted" + (f" (retaining {', '.join(retain)})"
                                                                          if retain else ""))
        try:
            wait_deleted(cfn, row["stack_id"], timeout)
            failure = None
            break
        except WaitFailed as exc:
            failure = exc
            if exc.timed_out or retain:
                break
        retain = resources_failing_delete(stack_events(cfn, row["stack_id"]))
    row.update(retained=retain, fix="delete" + (f", retaining {', '.join(retain)}" if retain else ""))
    if failure is None:
        row["result"] = "deleted"
    elif failure.timed_out:
        row.update(result="failed", changed=True,
                   error=f"stack {row['name']} is {failure.detail} after the delete (not deleted within {timeout:g} s)")
    else:
        row.update(result="failed", changed=True,
                   error=f"stack {row['name']} is DELETE_FAILED after the delete: {failure.detail}")
    return row


def clean(cfn, rows: list[dict], timeout: float, workers: int) -> list[dict]:
    for row, outcome in zip(rows, for_each(rows, lambda r: delete(cfn, r, timeout), workers), strict=True):
        if isinstance(outcome, Exception):
            row.update(result="failed", changed=bool(row.get("changes")),
                       error=describe_error(outcome, f"deleting stack {row['name']}"))
    return rows
