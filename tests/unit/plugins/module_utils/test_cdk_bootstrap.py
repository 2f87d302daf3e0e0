"""When the CDK bootstrap is good enough, and the command that fixes it (pure logic, fake clients)."""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.runbook.recovery.plugins.module_utils.cdk_bootstrap import bootstrap_command, inspect


def not_found(code, operation):
    return ClientError({"Error": {"Code": code, "Message": "not there"}}, operation)


class FakeCfn:
    def __init__(self, status=None, outputs=()):
        self.status, self.outputs = status, list(outputs)

    def describe_stacks(self, StackName):
        if self.status is None:
            raise not_found("ValidationError", "DescribeStacks")
        return {"Stacks": [{"StackName": StackName, "StackStatus": self.status, "Outputs": self.outputs}]}


class FakeSsm:
    def __init__(self, version=None):
        self.version = version

    def get_parameter(self, Name):
        if self.version is None:
            raise not_found("ParameterNotFound", "GetParameter")
        return {"Parameter": {"Name": Name, "Value": str(self.version)}}


@pytest.mark.parametrize("status,version,problem", [
    ("CREATE_COMPLETE", 21, None),
    ("UPDATE_ROLLBACK_COMPLETE", 6, None),
    (None, None, "stack CDKToolkit does not exist"),
    ("ROLLBACK_COMPLETE", None, "stack CDKToolkit is ROLLBACK_COMPLETE and must be deleted"),
    ("UPDATE_IN_PROGRESS", 21, "stack CDKToolkit is UPDATE_IN_PROGRESS"),
    ("CREATE_COMPLETE", None, "no bootstrap version"),
    ("CREATE_COMPLETE", 5, "bootstrap version 5 is older than the 6 this app needs"),
])
def test_inspect(status, version, problem):
    found = inspect(FakeCfn(status), FakeSsm(version), "CDKToolkit", "hnb659fds", 6)
    assert (found["problem"] is None) if problem is None else found["problem"].startswith(problem)


def test_the_stack_output_stands_in_for_a_missing_parameter():
    cfn = FakeCfn("CREATE_COMPLETE", [{"OutputKey": "BootstrapVersion", "OutputValue": "14"}])
    assert inspect(cfn, FakeSsm(None), "CDKToolkit", "hnb659fds", 6)["version"] == 14


def test_the_command_names_only_what_differs_from_the_defaults():
    assert bootstrap_command("cdk", "111", "eu-west-1", "CDKToolkit", "hnb659fds", []) == [
        "cdk", "bootstrap", "aws://111/eu-west-1"]
    assert bootstrap_command("cdk", "111", "eu-west-1", "Toolkit2", "abc", ["--force"]) == [
        "cdk", "bootstrap", "aws://111/eu-west-1", "--toolkit-stack-name", "Toolkit2", "--qualifier", "abc", "--force"]
