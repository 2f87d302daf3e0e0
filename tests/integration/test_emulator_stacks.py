"""The CloudFormation failures the emulator adds to moto, over HTTP with boto3, as AWS documents them: a failed
create rolls back (or stays CREATE_FAILED, or is deleted, by OnFailure), a delete blocked by a bucket that is not
empty leaves DELETE_FAILED (after DELETE_IN_PROGRESS, as in AWS), and RetainResources is accepted only then."""

from __future__ import annotations

import json
import time

import botocore.exceptions
import pytest
from aws_world import clients


@pytest.fixture
def cfn(aws_emulator, tmp_path):
    env = dict(aws_emulator)
    tag = "em" + tmp_path.name[-12:].replace("_", "-").strip("-").lower()
    cfn, s3 = clients(env, "cloudformation", "s3")
    s3.create_bucket(Bucket=f"{tag}-taken")
    return cfn, s3, tag


def template(bucket: str) -> str:
    return json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"},
                                     "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}}}})


def status(cfn, name: str) -> str:
    return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]


def deleted(cfn, name: str) -> str:
    """The status a deletion ends in: DELETE_IN_PROGRESS first (as in AWS), then DELETE_FAILED or gone."""
    assert status(cfn, name) == "DELETE_IN_PROGRESS"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        summaries = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"] == name]
        if summaries[0]["StackStatus"] != "DELETE_IN_PROGRESS":
            return summaries[0]["StackStatus"]
        time.sleep(0.1)
    raise AssertionError(f"{name} still DELETE_IN_PROGRESS after 30 s")


@pytest.mark.parametrize("on_failure,expected", [("ROLLBACK", "ROLLBACK_COMPLETE"), ("DO_NOTHING", "CREATE_FAILED")])
def test_a_failed_create_ends_as_on_failure_says(cfn, on_failure, expected):
    cfn, _s3, tag = cfn
    stack_id = cfn.create_stack(StackName=f"{tag}-{on_failure.lower()}", TemplateBody=template(f"{tag}-taken"),
                                OnFailure=on_failure)["StackId"]
    assert status(cfn, stack_id) == expected
    failed = [e for e in cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
              if e["ResourceStatus"] == "CREATE_FAILED" and e["LogicalResourceId"] == "Bucket"]
    assert failed and "not available" in failed[0]["ResourceStatusReason"]


def test_on_failure_delete_leaves_no_stack(cfn):
    cfn, _s3, tag = cfn
    cfn.create_stack(StackName=f"{tag}-gone", TemplateBody=template(f"{tag}-taken"), OnFailure="DELETE")
    live = [s for s in cfn.list_stacks()["StackSummaries"]
            if s["StackName"] == f"{tag}-gone" and s["StackStatus"] != "DELETE_COMPLETE"]
    assert live == []


def test_a_bucket_with_objects_blocks_the_delete_until_it_is_retained(cfn):
    cfn, s3, tag = cfn
    name = f"{tag}-full"
    cfn.create_stack(StackName=name, TemplateBody=template(f"{tag}-full"))
    s3.put_object(Bucket=f"{tag}-full", Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError, match="RetainResources can only be specified"):
        cfn.delete_stack(StackName=name, RetainResources=["Bucket"])
    cfn.delete_stack(StackName=name)
    cfn.delete_stack(StackName=name)  # again while it is being deleted: accepted, nothing more happens
    assert deleted(cfn, name) == "DELETE_FAILED"
    cfn.delete_stack(StackName=name, RetainResources=["Bucket"])
    assert deleted(cfn, name) == "DELETE_COMPLETE"
    assert [s["StackStatus"] for s in cfn.list_stacks()["StackSummaries"] if s["StackName"] == name] == \
        ["DELETE_COMPLETE"]
    assert s3.list_objects(Bucket=f"{tag}-full")["Contents"][0]["Key"] == "k"
