# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS findings for the health sweep: resources an emergency shutdown left stopped (so nobody forgets
the resume): Lambda functions and event source mappings of the region, and the scope's stages (routes and
methods included), ECS services and their auto scaling targets; scoped stages, services or targets at zero
with no record (stopped by hand: a resume cannot bring those back), Lambda functions not Active or erroring
and throttled in the last hour, DynamoDB tables not ACTIVE or throttled, and CloudWatch alarms in ALARM."""

from __future__ import annotations

import datetime

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    describe_error,
    for_each,
    is_aws_error,
    paginate,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_apigateway import StageThrottle, resolve_stages
from ansible_collections.runbook.recovery.plugins.module_utils.aws_ecs import (
    EcsAutoScaling,
    EcsDesiredCount,
    resolve_scaling_targets,
    resolve_services,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import (
    EventSourceMapping,
    LambdaConcurrency,
    mapping_resource,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.health import finding, severity
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    STOPPED_AT,
    Resource,
    describe,
    same,
)

CHECK = "shutdown_age_hours"


def hours_since(stamp: str) -> float | None:
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return round((utc_now() - moment).total_seconds() / 3600, 2)


def inspect(kind, resource: Resource, target: str, thresholds: dict, scoped: bool = True) -> dict | None:
    """The shutdown finding of one resource, if any. Only a scoped one at zero with no record is a warning: the
    region's disabled event source mappings are looked at for records, and many are disabled on purpose."""
    current = kind.read(resource)
    if STOPPED_AT in current.tags or any(key.startswith("runbook:previous-") for key in current.tags):
        stamp = current.tags.get(STOPPED_AT, "?")
        try:
            recorded = describe(kind.recorded(current.tags) or {})
        except RunbookError as exc:
            recorded = str(exc)
        return finding(target, CHECK, hours_since(stamp), thresholds,
                       f"stopped by an emergency shutdown since {stamp} (now {describe(current.values)}, recorded "
                       f"{recorded}): run emergency-resume.yml for its scope when the incident is over")
    if scoped and same(current.values, kind.stopped):
        return {"target": target, "check": "stopped_without_record", "value": describe(current.values),
                "severity": "warning",
                "message": f"{kind.noun} is at zero with no shutdown record (stopped by hand?): emergency-resume.yml "
                           "cannot restore it; set its value by hand"}
    return None


def unless_refused(found: list[dict], target: str, what: str, listing) -> list:
    """`listing()`, or nothing and a warning finding when AWS refuses it (a permission the sweep lacks)."""
    try:
        return listing()
    except Exception as exc:
        if not is_aws_error(exc):
            raise
        found.append({"target": target, "check": CHECK, "value": None, "severity": "warning",
                      "message": describe_error(exc, what)})
        return []


def metric_sums(clients, namespace: str, dimension: str, names: list[str], metrics: list[str],
                now: datetime.datetime) -> dict[tuple[str, str], float]:
    """The last hour's Sum of each metric for each resource, in batches of GetMetricData queries."""
    queries = [(name, metric) for name in names for metric in metrics]
    sums: dict[tuple[str, str], float] = {}
    for start in range(0, len(queries), 500):
        batch = queries[start:start + 500]
        result = paginate(clients("cloudwatch"), "get_metric_data", "MetricDataResults", MetricDataQueries=[
            {"Id": f"q{i}", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": metric,
                                                      "Dimensions": [{"Name": dimension, "Value": name}]},
                                           "Period": 3600, "Stat": "Sum"}, "ReturnData": True}
            for i, (name, metric) in enumerate(batch)],
            StartTime=now - datetime.timedelta(hours=1), EndTime=now + datetime.timedelta(minutes=1))
        for item in result:
            name, metric = batch[int(item["Id"][1:])]
            sums[(name, metric)] = sums.get((name, metric), 0.0) + sum(item.get("Values") or [])
    return sums


def service_findings(clients, thresholds: dict) -> list[dict]:
    """Lambda state and last-hour errors and throttles, DynamoDB table status and throttle events, alarms in ALARM.
    Only what is wrong becomes a finding, plus one line per service saying how much was looked at."""
    now, found = utc_now(), []
    functions = paginate(clients("lambda"), "list_functions", "Functions")
    for function in functions:
        name, state = function["FunctionName"], function.get("State", "Active")
        if state != "Active" or function.get("LastUpdateStatus") == "Failed":
            found.append({"target": f"lambda:{name}", "check": "lambda_state", "value": state,
                          "severity": "warning" if state == "Pending" else "critical",
                          "message": f"state {state}, last update {function.get('LastUpdateStatus', '?')}"
                                     f"{': ' + function['StateReason'] if function.get('StateReason') else ''}"})
    sums = metric_sums(clients, "AWS/Lambda", "FunctionName", [f["FunctionName"] for f in functions],
                       ["Errors", "Throttles"], now)
    for (name, metric), total in sorted(sums.items()):
        check = f"lambda_{metric.lower()}_last_hour"
        if total and severity(check, total, thresholds) != "ok":
            found.append(finding(f"lambda:{name}", check, total, thresholds, f"{total:.0f} {metric} in the last hour"))
    tables = paginate(clients("dynamodb"), "list_tables", "TableNames")
    statuses = for_each(tables, lambda table: clients("dynamodb").describe_table(TableName=table)["Table"])
    for table, described in zip(tables, statuses, strict=True):
        status = described.get("TableStatus") if isinstance(described, dict) else "unreadable"
        if status != "ACTIVE":
            found.append({"target": f"dynamodb:{table}", "check": "dynamodb_table_status", "value": status,
                          "severity": "warning" if status == "UPDATING" else "critical",
                          "message": f"table is {status}"})
    throttled: dict[str, float] = {}
    for (table, _metric), total in metric_sums(clients, "AWS/DynamoDB", "TableName", tables,
                                               ["ReadThrottleEvents", "WriteThrottleEvents"], now).items():
        throttled[table] = throttled.get(table, 0.0) + total
    for table, total in sorted(throttled.items()):
        if total and severity("dynamodb_throttle_events_last_hour", total, thresholds) != "ok":
            found.append(finding(f"dynamodb:{table}", "dynamodb_throttle_events_last_hour", total, thresholds,
                                 f"{total:.0f} read/write throttle events in the last hour"))
    for alarm in paginate(clients("cloudwatch"), "describe_alarms", "MetricAlarms", StateValue="ALARM"):
        found.append(finding(f"alarm:{alarm['AlarmName']}", "alarms_in_alarm", 1, thresholds,
                             f"in ALARM since {alarm.get('StateUpdatedTimestamp', '?')}: "
                             f"{alarm.get('StateReason', '')}"[:300]))
    found.append({"target": f"aws:{clients('lambda').meta.region_name}", "check": "aws_services_checked",
                  "value": len(functions) + len(tables), "severity": "ok",
                  "message": f"{len(functions)} Lambda function(s), {len(tables)} DynamoDB table(s) and the alarms "
                             "looked at"})
    return found


def aws_findings(clients, stages: list[dict], services: list[dict], thresholds: dict) -> list[dict]:
    region = clients("lambda").meta.region_name
    found: list[dict] = []
    jobs: list[tuple] = []
    try:
        tagged = paginate(clients("resourcegroupstaggingapi"), "get_resources", "ResourceTagMappingList",
                          ResourceTypeFilters=["lambda:function"], TagFilters=[{"Key": STOPPED_AT}])
    except Exception as exc:
        if not is_aws_error(exc):
            raise
        return [{"target": f"aws:{region}", "check": "aws_reachable", "value": False, "severity": "critical",
                 "message": describe_error(exc, "listing tagged Lambda functions")}]
    functions = LambdaConcurrency(clients)
    for mapping in tagged:
        arn = mapping["ResourceARN"]
        jobs.append((functions, Resource(arn.rsplit(":", 1)[-1], arn), f"lambda:{arn.rsplit(':', 1)[-1]}", True))
    # A mapping a shutdown disabled is disabled: only those of the region are read for a record.
    mappings = EventSourceMapping(clients)
    for mapping in unless_refused(found, f"aws:{region}", "listing the event source mappings", lambda: paginate(
            clients("lambda"), "list_event_source_mappings", "EventSourceMappings")):
        if mapping.get("State") in ("Disabled", "Disabling"):
            resource = mapping_resource(mapping)
            jobs.append((mappings, resource, f"lambda-esm:{resource.name}", False))
    scaling = EcsAutoScaling(clients)
    for kind, resolve, entries, prefix in ((StageThrottle(clients), resolve_stages, stages, "apigateway"),
                                           (EcsDesiredCount(clients), resolve_services, services, "ecs")):
        for entry in entries:
            try:
                resolved = resolve(clients, [entry])
            except RunbookError as exc:
                found.append({"target": f"{prefix}:{entry}", "check": "scope_resource_exists", "value": False,
                              "severity": "warning", "message": str(exc).split(". Nothing was changed", maxsplit=1)[0]})
                continue
            jobs.extend((kind, r, f"{prefix}:{r.name}", True) for r in resolved)
            if prefix == "ecs":
                jobs.extend((scaling, r, f"autoscaling:{r.name}", True) for r in unless_refused(
                    found, f"ecs:{entry}", "listing its auto scaling target",
                    lambda resolved=resolved: resolve_scaling_targets(clients, resolved)))
    outcomes = for_each(jobs, lambda job: inspect(job[0], job[1], job[2], thresholds, job[3]))
    for (_kind, _resource, target, _scoped), outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            message = str(outcome) if isinstance(outcome, RunbookError) else describe_error(outcome, "reading it")
            found.append({"target": target, "check": CHECK, "value": None, "severity": "warning", "message": message})
        elif outcome:
            found.append(outcome)
    found.extend(service_findings(clients, thresholds))
    if not any(f["check"] == CHECK for f in found):
        found.append({"target": f"aws:{region}", "check": CHECK, "value": None, "severity": "ok",
                      "message": f"no emergency shutdown in force ({len(jobs)} resource(s) checked)"})
    return found
