"""Reading why a stack failed and which resources block its deletion from its events (pure logic)."""

from ansible_collections.runbook.recovery.plugins.module_utils.cfn_stacks import (
    failure_reason,
    resources_failing_delete,
    wait_deleted,
)

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
    """DescribeStacks answers: a status per call, then the last one again."""

    def __init__(self, *statuses):
        self.statuses = list(statuses)

    def describe_stacks(self, StackName):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"Stacks": [{"StackName": StackName, "StackStatus": status}]}


def test_waiting_ends_on_complete_or_failed():
    slept = []
    assert wait_deleted(FakeStacks("DELETE_IN_PROGRESS", "DELETE_IN_PROGRESS", "DELETE_COMPLETE"), "id", 60,
                        slept.append) == "DELETE_COMPLETE"
    assert slept == [1.0, 2.0]
    assert wait_deleted(FakeStacks("DELETE_FAILED"), "id", 60, slept.append) == "DELETE_FAILED"


def test_waiting_gives_up_at_the_timeout():
    assert wait_deleted(FakeStacks("DELETE_IN_PROGRESS"), "id", -1, lambda _s: None) == "DELETE_IN_PROGRESS"
