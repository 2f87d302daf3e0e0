"""DynamoDB backups' wait, exact counts and their records, the count comparison, and repointing a Lambda function's
variable as one unit with its rollback (fake clients; the emulator is used in tests/integration/test_dynamodb.py)."""

import json

import pytest
from botocore.exceptions import ClientError

from ansible_collections.runbook.recovery.plugins.module_utils.aws_cloudwatch import alarm_differences, moved_alarm
from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import (
    backup_state,
    check_count_options,
    compare_counts,
    count_items,
    count_record_name,
    recorded_count,
    repoint_and_check,
    wait_backup_available,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import set_variable
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome
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
    """UpdateFunctionConfiguration as AWS documents it for RevisionId: a write naming another revision than the
    current one is refused (PreconditionFailedException); every write makes a new revision. `meddle` is someone
    else's change, made once just after our next read."""

    def __init__(self, config, variables=None, meddle=None):
        self.config = {**config, "RevisionId": "r0", "Environment": {"Variables": dict(variables or {})}}
        self.updates, self.meddle, self.revision = [], meddle, 0

    def _write(self, update):
        self.revision += 1
        self.config = {**self.config, **update, "RevisionId": f"r{self.revision}"}

    def update_function_configuration(self, FunctionName, **update):
        self.updates.append(update)
        if update.get("RevisionId") not in (None, self.config["RevisionId"]):
            raise ClientError({"Error": {"Code": "PreconditionFailedException", "Message": "revision"}},
                              "UpdateFunctionConfiguration")
        self._write({k: v for k, v in update.items() if k != "RevisionId"})

    def get_function_configuration(self, FunctionName):
        read = {**self.config, "Environment": {"Variables": dict(self.config["Environment"]["Variables"])}}
        if self.meddle:
            self._write({"Environment": {"Variables": {**self.config["Environment"]["Variables"], **self.meddle}}})
            self.meddle = None
        return read


def test_only_the_one_variable_changes_and_none_removes_it():
    lam = FakeLambda({"State": "Active", "LastUpdateStatus": "Successful"}, {"TABLE": "sessions", "MODE": "live"})
    set_variable(lam, "handler", "TABLE", "sessions-restored")
    assert lam.config["Environment"]["Variables"] == {"MODE": "live", "TABLE": "sessions-restored"}
    set_variable(lam, "handler", "TABLE", None)
    assert lam.config["Environment"]["Variables"] == {"MODE": "live"}
    assert [u["RevisionId"] for u in lam.updates] == ["r0", "r1"]  # each write names the revision it read


def test_a_change_made_between_the_read_and_the_write_is_kept_not_undone():
    lam = FakeLambda({"State": "Active", "LastUpdateStatus": "Successful"}, {"TABLE": "sessions", "MODE": "live"},
                     meddle={"MODE": "maintenance"})
    set_variable(lam, "handler", "TABLE", "sessions-restored")
    assert lam.config["Environment"]["Variables"] == {"MODE": "maintenance", "TABLE": "sessions-restored"}
    assert len(lam.updates) == 2  # the first write, of a stale revision, was refused


def test_a_failed_repoint_ends_the_wait_at_once_with_aws_reason():
    lam = FakeLambda({"State": "Active", "LastUpdateStatus": "Failed", "LastUpdateStatusReason": "KMS key disabled",
                      "LastUpdateStatusReasonCode": "KMSKeyAccessDenied"})
    with pytest.raises(WaitFailed, match=r"the update of handler failed: KMS key disabled \(KMSKeyAccessDenied\)"):
        set_variable(lam, "handler", "TABLE", "sessions-restored")


# -- counts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("restored", "recorded", "approximate", "tolerance", "kind", "refused"), [
    (30, 30, 0, 0.1, "exact", False),
    (30, 31, 30, 1.0, "exact", True),  # a recorded count is never compared loosely
    (30, None, 0, 0.1, "none", False),  # ItemCount 0: AWS has not refreshed it; it says nothing
    (30, None, None, 0.1, "none", False),
    (95, None, 100, 0.1, "approximate", False),
    (89, None, 100, 0.1, "approximate", True),
    (100, None, 89, 0.1, "approximate", True),
    (1, None, 1000, 1.0, "approximate", False),  # 1 accepts any count
])
def test_counts_are_compared_exactly_when_recorded_else_within_the_tolerance(restored, recorded, approximate,
                                                                             tolerance, kind, refused):
    said, problem = compare_counts(restored, recorded, approximate, tolerance)
    assert said.startswith(f"{kind}:") and (problem is not None) == refused


@pytest.mark.parametrize(("segments", "prefix", "tolerance", "message"), [
    (0, "/runbook/c", 0.1, "count_segments=0: give 1 to 1000000"),
    (4, "runbook/c", 0.1, "is not an SSM parameter path"),
    (4, "/runbook c", 0.1, "is not an SSM parameter path"),
    (4, "/runbook/c", -0.01, "count_tolerance=-0.01 is outside 0-1"),
    (4, "/runbook/c", 1.01, "count_tolerance=1.01 is outside 0-1"),
])
def test_bad_count_options_are_refused_before_any_change(segments, prefix, tolerance, message):
    with pytest.raises(RunbookError, match=message) as raised:
        check_count_options(segments, prefix, tolerance)
    assert str(raised.value).endswith("Nothing was changed.")


class FakeSsm:
    def __init__(self, value=None):
        self.value = value

    def get_parameter(self, Name):
        if self.value is None:
            raise ClientError({"Error": {"Code": "ParameterNotFound", "Message": "no"}}, "GetParameter")
        return {"Parameter": {"Value": self.value}}


def test_a_count_record_is_read_only_when_it_is_this_backups():
    name = count_record_name("/runbook/c/", "sessions", ARN)
    assert name == "/runbook/c/sessions/01"
    assert recorded_count(FakeSsm(), name, ARN) is None
    assert recorded_count(FakeSsm(json.dumps({"backup_arn": ARN, "item_count": 30})), name, ARN) == 30
    for tampered in ("30", json.dumps({"backup_arn": ARN + "x", "item_count": 30}),
                     json.dumps({"backup_arn": ARN, "item_count": "30"}), json.dumps({"backup_arn": ARN})):
        with pytest.raises(RunbookError, match="is not the one this procedure wrote"):
            recorded_count(FakeSsm(tampered), name, ARN)


class FakeCounting:
    def __init__(self, items: int, page: int = 3):
        self.items, self.page, self.calls = items, page, []

    def scan(self, TableName, Select, ConsistentRead, TotalSegments=1, Segment=0, ExclusiveStartKey=None):
        self.calls.append((TotalSegments, Segment, ExclusiveStartKey))
        mine = [i for i in range(self.items) if i % TotalSegments == Segment]
        start = ExclusiveStartKey["n"] if ExclusiveStartKey else 0
        chunk = mine[start:start + self.page]
        more = start + self.page < len(mine)
        return {"Count": len(chunk), **({"LastEvaluatedKey": {"n": start + self.page}} if more else {})}


@pytest.mark.parametrize("segments", [1, 4])
def test_an_exact_count_reads_every_page_of_every_segment(segments):
    ddb = FakeCounting(20)
    assert count_items(ddb, "sessions", segments) == 20
    assert {call[1] for call in ddb.calls} == set(range(segments))


# -- repointing as one unit ----------------------------------------------------------------------------
class FakeRepoint:
    """A function whose variable reads back as set, a table with one item, and failures on demand."""

    def __init__(self, fail_get_item=None, fail_put_back=False):
        self.variables = {"TABLE": "sessions", "MODE": "live"}
        self.fail_get_item, self.fail_put_back, self.updates = fail_get_item, fail_put_back, 0

    def update_function_configuration(self, FunctionName, Environment):
        self.updates += 1
        if self.fail_put_back and self.updates == 2:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "Update")
        self.variables = dict(Environment["Variables"])

    def get_function_configuration(self, FunctionName):
        return {"State": "Active", "LastUpdateStatus": "Successful", "Environment": {"Variables": self.variables}}

    def get_item(self, TableName, Key, ConsistentRead):
        if self.fail_get_item:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": self.fail_get_item}}, "GetItem")
        return {"Item": Key} if Key == {"pk": {"S": "there"}} else {}


def repoint(fake, check_item):
    outcome = Outcome()
    with pytest.raises(RunbookError) as raised:
        repoint_and_check(fake, fake, "handler", {"TABLE": "sessions", "MODE": "live"}, "TABLE", "restored",
                          check_item, outcome)
    return str(raised.value), outcome, raised.value.details


def test_a_missing_item_or_an_aws_error_of_the_check_puts_the_variable_back():
    for fake, check_item, why in ((FakeRepoint(), {"pk": {"S": "gone"}}, "the item {'pk': {'S': 'gone'}} is not in"),
                                  (FakeRepoint("The provided key element does not match the schema"),
                                   {"id": {"S": "x"}}, "ValidationException: The provided key element")):
        message, outcome, details = repoint(fake, check_item)
        assert why in message and message.endswith("TABLE of handler is back to 'sessions'; restored is kept for "
                                                   "inspection.")
        assert fake.variables == {"TABLE": "sessions", "MODE": "live"}
        assert details == {"repointed": False, "rolled_back": True}
        assert outcome.facts() == {"changed": False, "changes": [],
                                   "undone": ["TABLE of handler set to restored (put back to 'sessions')"]}


def test_a_failed_put_back_says_the_variable_still_names_the_new_table():
    fake = FakeRepoint("bad key", fail_put_back=True)
    message, outcome, details = repoint(fake, {"id": {"S": "x"}})
    assert "putting TABLE of handler back to 'sessions' failed too" in message
    assert "it still names restored. Set it back by hand (aws lambda update-function-configuration" in message
    assert fake.variables["TABLE"] == "restored" and details == {"repointed": True, "rolled_back": False}
    assert outcome.changed and "undoing it failed" in outcome.sentence()


def test_a_good_check_leaves_the_variable_and_says_the_write():
    fake, outcome = FakeRepoint(), Outcome()
    repoint_and_check(fake, fake, "handler", dict(fake.variables), "TABLE", "restored", {"pk": {"S": "there"}},
                      outcome)
    assert fake.variables == {"TABLE": "restored", "MODE": "live"}
    assert outcome.facts()["changes"] == ["TABLE of handler set to restored"]


# -- alarms of a restored table (aws_cloudwatch.moved_alarm, as the restore uses it) -------------------
def test_an_alarm_moves_to_the_new_tables_dimension_name_and_policy():
    alarm = {"AlarmName": "sessions-throttles", "AlarmArn": "arn:alarm", "StateValue": "OK",
             "Namespace": "AWS/DynamoDB",
             "MetricName": "ReadThrottleEvents", "Dimensions": [{"Name": "TableName", "Value": "sessions"},
                                                                {"Name": "Operation", "Value": "GetItem"}],
             "AlarmActions": ["arn:policy/old", "arn:sns"], "OKActions": [], "Threshold": 1.0, "Tags": {"team": "x"}}
    moved = moved_alarm(alarm, "TableName", "sessions", "sessions-restored-1", {"arn:policy/old": "arn:policy/new"})
    assert moved == {"AlarmName": "sessions-restored-1-throttles", "Namespace": "AWS/DynamoDB",
                     "MetricName": "ReadThrottleEvents", "Threshold": 1.0, "Tags": {"team": "x"},
                     "Dimensions": [{"Name": "TableName", "Value": "sessions-restored-1"},
                                    {"Name": "Operation", "Value": "GetItem"}],
                     "AlarmActions": ["arn:policy/new", "arn:sns"]}
    assert moved_alarm({**alarm, "AlarmName": "errors"}, "TableName", "sessions", "t2")["AlarmName"] == "errors-t2"
    assert alarm_differences(moved, {**moved, "Tags": {}}) == ["tags team"]
    assert alarm_differences(moved, None) == ["missing"]
