"""Reading why a stack failed and which resources block its deletion from its events, and waiting for a delete
(pure logic, a fake CloudFormation client)."""

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.aws_cloudformation import (
    delete,
    failure_reason,
    resources_failing_delete,
    wait_deleted,
)
from ansible_collections.runbook.recovery.plugins.module_utils.waits import WaitFailed

STACK = "AWS::CloudFormation::Stack"


def event(logical, status, reason=None, resource_type="AWS::S3::Bucket"):
    return {"LogicalResourceId": logical, "ResourceStatus": status, "ResourceStatusReason": reason,
            "ResourceType": resource_type}


# Newest first, as DescribeStackEvents returns them: a create that failed on a bucket, then rolled back.
ROLLED_BACK = [
    event("api", "ROLLBACK_COMPLETE", resource_type=STACK),
    event("Queue", "DELETE_COMPLETE", resource_type="AWS::SQS::Queue"),
    event("Handler", "CREATE_FAILED", "Resource creation cancelled", "AWS::Lambda::Function"),
    event("Bucket", "CREATE_FAILED", "bucket name is not available"),
    event("api", "CREATE_IN_PROGRESS", "User Initiated", STACK),
    event("api", "DELETE_FAILED", "an older attempt", STACK),
]


def test_the_reason_is_the_first_failure_of_the_latest_operation():
    assert failure_reason(ROLLED_BACK) == "Bucket: bucket name is not available"


def test_no_failed_resource_means_no_reason():
    assert failure_reason([event("api", "ROLLBACK_COMPLETE", resource_type=STACK)]) is None


def test_the_resources_failing_the_latest_delete():
    events = [
        event("api", "DELETE_FAILED", "The following resource(s) failed to delete: [Logs, Bucket].", STACK),
        event("Bucket", "DELETE_FAILED", "The bucket you tried to delete is not empty"),
        event("Logs", "DELETE_FAILED", "in use", "AWS::Logs::LogGroup"),
        event("Queue", "DELETE_COMPLETE", resource_type="AWS::SQS::Queue"),
        event("api", "DELETE_IN_PROGRESS", "User Initiated", STACK),
        event("Old", "DELETE_FAILED", "from an earlier delete"),
    ]
    assert resources_failing_delete(events) == ["Bucket", "Logs"]


class FakeStacks:
    """DescribeStacks answers: a status per call, then the last one again; the stack's events as given; each
    DeleteStack's RetainResources kept."""

    def __init__(self, *statuses, events=()):
        self.statuses, self.events, self.deletes = list(statuses), list(events), []

    def describe_stacks(self, StackName):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"Stacks": [{"StackName": StackName, "StackStatus": status}]}

    def delete_stack(self, StackName, RetainResources=()):
        self.deletes.append(list(RetainResources))

    def get_paginator(self, operation):
        assert operation == "describe_stack_events"
        return self

    def paginate(self, StackName):
        return [{"StackEvents": self.events}]


DELETE_FAILED = [
    event("api", "DELETE_FAILED", "The following resource(s) failed to delete: [Bucket].", STACK),
    event("Bucket", "DELETE_FAILED", "The bucket you tried to delete is not empty"),
    event("api", "DELETE_IN_PROGRESS", "User Initiated", STACK),
]


def test_waiting_ends_when_the_stack_is_gone():
    slept = []
    wait_deleted(FakeStacks("DELETE_IN_PROGRESS", "DELETE_IN_PROGRESS", "DELETE_COMPLETE"), "id", 60, slept.append)
    assert slept == [1.0, 2.0]


def test_delete_failed_ends_the_wait_at_once_with_the_reason():
    with pytest.raises(WaitFailed, match="deleting stack id failed: Bucket: The bucket you tried to delete is not "
                                         "empty") as failed:
        wait_deleted(FakeStacks("DELETE_FAILED", events=DELETE_FAILED), "id", 60, lambda _s: pytest.fail("slept"))
    assert not failed.value.timed_out


def test_waiting_gives_up_at_the_timeout_saying_what_was_last_seen():
    with pytest.raises(WaitFailed, match=r"within -1s \(last seen: DELETE_IN_PROGRESS\)") as failed:
        wait_deleted(FakeStacks("DELETE_IN_PROGRESS"), "id", -1, lambda _s: None)
    assert failed.value.timed_out and failed.value.detail == "DELETE_IN_PROGRESS"


def row(retained=()):
    return {"name": "api", "stack_id": "id", "retained": list(retained)}


def test_a_failed_delete_is_retried_once_retaining_the_resources_that_failed():
    stacks = FakeStacks("DELETE_FAILED", "DELETE_COMPLETE", events=DELETE_FAILED)
    assert delete(stacks, row(), 60)["result"] == "deleted"
    assert stacks.deletes == [[], ["Bucket"]]


def test_a_delete_that_fails_again_says_why():
    stacks = FakeStacks("DELETE_FAILED", events=DELETE_FAILED)
    done = delete(stacks, row(), 60)
    assert stacks.deletes == [[], ["Bucket"]]
    assert done["result"] == "failed" and done["retained"] == ["Bucket"]
    assert done["error"] == ("stack api is DELETE_FAILED after the delete: Bucket: The bucket you tried to delete is "
                             "not empty")


def test_a_delete_not_done_in_time_says_what_it_last_saw():
    done = delete(FakeStacks("DELETE_IN_PROGRESS"), row(), -1)
    assert done["error"] == "stack api is DELETE_IN_PROGRESS after the delete (not deleted within -1 s)"
