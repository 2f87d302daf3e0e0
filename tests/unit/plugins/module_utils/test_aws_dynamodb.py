"""DynamoDB backups' wait and repointing a Lambda function's variable (fake clients; the emulator is used in
tests/integration/test_dynamodb.py)."""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import backup_state, wait_backup_available
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import set_variable
from ansible_collections.runbook.recovery.plugins.module_utils.waits import WaitFailed

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/sessions/backup/01"


@pytest.mark.parametrize(("status", "state"), [("AVAILABLE", "done"), ("CREATING", "pending"), ("DELETED", "failed")])
def test_a_backup_is_available_pending_or_gone(status, state):
    assert backup_state({"BackupStatus": status})[0] == state


class FakeBackups:
    def __init__(self, status=None):
        self.status, self.reads = status, 0

    def describe_backup(self, BackupArn):
        self.reads += 1
        if self.status is None:
            raise ClientError({"Error": {"Code": "BackupNotFoundException", "Message": "not found"}}, "DescribeBackup")
        return {"BackupDescription": {"BackupDetails": {"BackupStatus": self.status}}}


def test_a_backup_deleted_or_gone_ends_the_wait_at_once():
    ddb = FakeBackups("DELETED")
    with pytest.raises(WaitFailed, match=f"backup {ARN} becoming AVAILABLE failed: DELETED: the backup was deleted "
                                         "before it became AVAILABLE"):
        wait_backup_available(ddb, ARN)
    assert ddb.reads == 1
    with pytest.raises(WaitFailed, match="failed: the backup no longer exists"):
        wait_backup_available(FakeBackups(), ARN)
    wait_backup_available(FakeBackups("AVAILABLE"), ARN)


class FakeLambda:
    def __init__(self, config):
        self.config, self.updates = config, []

    def update_function_configuration(self, FunctionName, **update):
        self.updates.append(update)

    def get_function_configuration(self, FunctionName):
        return self.config


def test_only_the_one_variable_changes_and_none_removes_it():
    lam = FakeLambda({"State": "Active", "LastUpdateStatus": "Successful"})
    set_variable(lam, "handler", {"TABLE": "sessions", "MODE": "live"}, "TABLE", "sessions-restored")
    set_variable(lam, "handler", {"MODE": "live", "TABLE": "sessions-restored"}, "TABLE", None)
    assert lam.updates == [{"Environment": {"Variables": {"MODE": "live", "TABLE": "sessions-restored"}}},
                           {"Environment": {"Variables": {"MODE": "live"}}}]


def test_a_failed_repoint_ends_the_wait_at_once_with_aws_reason():
    lam = FakeLambda({"State": "Active", "LastUpdateStatus": "Failed", "LastUpdateStatusReason": "KMS key disabled",
                      "LastUpdateStatusReasonCode": "KMSKeyAccessDenied"})
    with pytest.raises(WaitFailed, match=r"the update of handler failed: KMS key disabled \(KMSKeyAccessDenied\)"):
        set_variable(lam, "handler", {}, "TABLE", "sessions-restored")
