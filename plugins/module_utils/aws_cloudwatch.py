# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon CloudWatch: Logs retention (find the log groups under some prefixes and the ones named outright, create
the named ones that are missing, give every one the wanted retention; never delete a group), and metric alarms
copied from one resource to another (a restored DynamoDB table gets the source table's alarms, on its own
dimension)."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.aws import describe_error, error_code, for_each, paginate
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome, said

# Every value PutRetentionPolicy accepts (the AWS CLI reference, logs put-retention-policy).
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                  3288, 3653)


def check_retention(days: int) -> None:
    if days not in RETENTION_DAYS:
        lower = max((d for d in RETENTION_DAYS if d < days), default=None)
        higher = min((d for d in RETENTION_DAYS if d > days), default=None)
        nearest = " or ".join(str(d) for d in (lower, higher) if d is not None)
        raise RunbookError(f"retention_days={days} is not a value CloudWatch Logs accepts; the nearest are {nearest}. "
                           f"Accepted: {', '.join(map(str, RETENTION_DAYS))}. Nothing was changed.")


def find_groups(logs, prefixes: list[str], names: list[str]) -> tuple[dict[str, dict], list[str]]:
    """{name: group} for every group under a prefix or named, and the prefixes that matched nothing."""
    groups, unmatched = {}, []
    for prefix in prefixes:
        found = paginate(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=prefix)
        if not found:
            unmatched.append(prefix)
        groups.update((g["logGroupName"], g) for g in found)
    for name in names:
        if name not in groups:
            groups.update((g["logGroupName"], g) for g in paginate(
                logs, "describe_log_groups", "logGroups", logGroupNamePrefix=name) if g["logGroupName"] == name)
    return groups, unmatched


def plan(groups: dict[str, dict], names: list[str], days: int, only_unset: bool) -> list[dict]:
    """One row per group, sorted by name: before/after retention, whether it is created, whether it changes."""
    rows = []
    for name in sorted(set(groups) | set(names)):
        group = groups.get(name)
        before = group.get("retentionInDays") if group else None
        wants_change = before != days and not (only_unset and before is not None)
        rows.append({"name": name, "created": group is None, "before": before,
                     "after": days if wants_change else before, "changed": group is None or wants_change})
    return rows


def apply(logs, rows: list[dict], workers: int) -> list[dict]:
    def act(row):
        row["changes"] = []
        if row["created"]:
            try:
                logs.create_log_group(logGroupName=row["name"])
                row["changes"].append(f"log group {row['name']} created")
            except Exception as exc:  # created meanwhile by the application itself: still set its retention
                if error_code(exc) != "ResourceAlreadyExistsException":
                    raise
        if row["after"] is not None and row["after"] != row["before"]:
            logs.put_retention_policy(logGroupName=row["name"], retentionInDays=row["after"])
            row["changes"].append(f"retention of {row['name']} set to {row['after']} days")
        return row

    changing = [r for r in rows if r["changed"]]
    for row, outcome in zip(changing, for_each(changing, act, workers), strict=True):
        if isinstance(outcome, Exception):
            row.update(changed=bool(row.get("changes")),
                       error=describe_error(outcome, f"setting the retention of {row['name']}"))
    return rows


# -- metric alarms copied to another resource ---------------------------------------------------------
# What PutMetricAlarm takes back of what DescribeAlarms gives (the rest is state, ARNs and times).
ALARM_MEMBERS = ("AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions", "InsufficientDataActions",
                 "MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit",
                 "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData",
                 "EvaluateLowSampleCountPercentile", "Metrics", "ThresholdMetricId")
# Application Auto Scaling creates (and owns) the alarms of a target-tracking policy: "DO NOT EDIT OR DELETE".
# Putting the policy on the new resource creates its own; copying them would leave alarms nothing owns.
SCALING_OWNED_PREFIX = "TargetTracking-"


def alarm_dimensions(alarm: dict) -> list[list[dict]]:
    """Every dimension list of an alarm: its metric's, and each metric's of a metric-math alarm."""
    found = [alarm.get("Dimensions") or []]
    found += [(query.get("MetricStat") or {}).get("Metric", {}).get("Dimensions") or []
              for query in alarm.get("Metrics") or []]
    return found


def alarms_on(cw, dimension: str, value: str) -> list[dict]:
    """The metric alarms whose metric (or one of whose metrics) has `dimension`=`value`, each with its `Tags`;
    those Application Auto Scaling owns are left out."""
    alarms = [alarm for alarm in paginate(cw, "describe_alarms", "MetricAlarms", AlarmTypes=["MetricAlarm"])
              if not alarm["AlarmName"].startswith(SCALING_OWNED_PREFIX)
              and any(d.get("Name") == dimension and d.get("Value") == value
                      for dimensions in alarm_dimensions(alarm) for d in dimensions)]
    for alarm in alarms:
        tags = cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags") or []
        alarm["Tags"] = {tag["Key"]: tag["Value"] for tag in tags}
    return alarms


def alarm_definition(alarm: dict) -> dict:
    """PutMetricAlarm's members of an alarm as DescribeAlarms gives it (empty ones left out)."""
    definition = {member: alarm[member] for member in ALARM_MEMBERS if alarm.get(member) not in (None, [], "")}
    if "Metrics" in definition:
        definition["Metrics"] = [{key: value for key, value in query.items() if value is not None}
                                 for query in definition["Metrics"]]
    return definition


def moved_alarm(alarm: dict, dimension: str, old: str, new: str, actions: dict | None = None) -> dict:
    """The definition of `alarm` for the resource `new`: `dimension` names `new` wherever it named `old`, the name
    too (or `<name>-<new>` when the name does not hold `old`), and an action in `actions` (old ARN -> new ARN, such
    as a scaling policy's) is replaced. PutMetricAlarm's members, with `Tags` as a dict."""
    actions = actions or {}

    def moved(dimensions):
        return [{**d, "Value": new} if d.get("Name") == dimension and d.get("Value") == old else dict(d)
                for d in dimensions]

    definition = alarm_definition(alarm)
    if "Dimensions" in definition:
        definition["Dimensions"] = moved(definition["Dimensions"])
    for query in definition.get("Metrics", []):
        stat = query.get("MetricStat")
        if stat and stat.get("Metric", {}).get("Dimensions"):
            metric = stat["Metric"]
            query["MetricStat"] = {**stat, "Metric": {**metric, "Dimensions": moved(metric["Dimensions"])}}
    for member in ("OKActions", "AlarmActions", "InsufficientDataActions"):
        if member in definition:
            definition[member] = [actions.get(arn, arn) for arn in definition[member]]
    name = alarm["AlarmName"]
    definition["AlarmName"] = name.replace(old, new) if old in name else f"{name}-{new}"[:255]
    definition["Tags"] = dict(alarm.get("Tags") or {})
    return definition


def alarm_differences(wanted: dict, found: dict | None) -> list[str]:
    """What of `wanted` (moved_alarm's shape) an alarm as DescribeAlarms gives it (with `Tags`) lacks."""
    if found is None:
        return ["missing"]
    current = alarm_definition(found)
    differing = [member for member in ALARM_MEMBERS if wanted.get(member) != current.get(member)]
    missing_tags = sorted(k for k, v in wanted["Tags"].items() if (found.get("Tags") or {}).get(k) != v)
    return differing + ([f"tags {', '.join(missing_tags)}"] if missing_tags else [])


def alarms_named(cw, names: list[str]) -> dict[str, dict]:
    """{name: alarm with its Tags} for those of `names` that exist."""
    found = {}
    for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
        for alarm in paginate(cw, "describe_alarms", "MetricAlarms", AlarmNames=names[start:start + 100],
                              AlarmTypes=["MetricAlarm"]):
            tags = cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags") or []
            found[alarm["AlarmName"]] = {**alarm, "Tags": {tag["Key"]: tag["Value"] for tag in tags}}
    return found


def put_alarm(cw, wanted: dict, found: dict | None, outcome: Outcome | None = None) -> None:
    """Create or update one alarm to `wanted`; a tag it lacks is added (PutMetricAlarm tags only a new alarm)."""
    tags = [{"Key": k, "Value": v} for k, v in sorted(wanted["Tags"].items())]
    request = {key: value for key, value in wanted.items() if key != "Tags"}
    cw.put_metric_alarm(**request, **({"Tags": tags} if tags and found is None else {}))
    said(outcome, f"alarm {wanted['AlarmName']} {'created' if found is None else 'updated'}")
    if found is not None and tags and any((found.get("Tags") or {}).get(t["Key"]) != t["Value"] for t in tags):
        cw.tag_resource(ResourceARN=found["AlarmArn"], Tags=tags)
        said(outcome, f"alarm {wanted['AlarmName']} tagged")
