"""The AWS part of the health sweep against the emulator: Lambda errors and throttles, DynamoDB throttle events,
alarms in ALARM; each becomes a finding in the report, and a critical one fails the sweep."""

from __future__ import annotations

import json
import uuid

from aws_world import AwsWorkspace, clients, create_functions


def test_errors_throttles_and_alarms_are_reported(tmp_path, aws_emulator):
    aws_emulator.clear_faults()
    env, tag = dict(aws_emulator), f"h{uuid.uuid4().hex[:8]}"
    create_functions(env, {f"{tag}-ok": None, f"{tag}-failing": None})
    ddb, cloudwatch = clients(env, "dynamodb", "cloudwatch")
    ddb.create_table(TableName=f"{tag}-table", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    ws = AwsWorkspace(tmp_path, env, {})
    quiet = ws.play("health-sweep.yml")
    assert not quiet.says(f"lambda:{tag}-failing")

    cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Errors", "Dimensions": [{"Name": "FunctionName", "Value": f"{tag}-failing"}], "Value": 150},
        {"MetricName": "Throttles", "Dimensions": [{"Name": "FunctionName", "Value": f"{tag}-failing"}], "Value": 3}])
    cloudwatch.put_metric_data(Namespace="AWS/DynamoDB", MetricData=[
        {"MetricName": "WriteThrottleEvents", "Dimensions": [{"Name": "TableName", "Value": f"{tag}-table"}],
         "Value": 12}])
    cloudwatch.put_metric_alarm(AlarmName=f"{tag}-errors", Namespace="AWS/Lambda", MetricName="Errors",
                                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName=f"{tag}-errors", StateValue="ALARM", StateReason="150 errors")

    sweep = ws.play("health-sweep.yml")
    assert sweep.rc != 0, sweep.output  # 150 errors in an hour is critical
    report = json.loads((tmp_path / "reports" / "health-latest.json").read_text())
    ours = {(f["target"], f["check"]): f for f in report["findings"] if tag in f["target"]}
    assert ours[(f"lambda:{tag}-failing", "lambda_errors_last_hour")]["severity"] == "critical"
    assert ours[(f"lambda:{tag}-failing", "lambda_throttles_last_hour")]["severity"] == "warning"
    assert ours[(f"dynamodb:{tag}-table", "dynamodb_throttle_events_last_hour")]["value"] == 12
    assert ours[(f"alarm:{tag}-errors", "alarms_in_alarm")]["severity"] == "warning"
    assert not any(target == f"lambda:{tag}-ok" for target, _ in ours)
