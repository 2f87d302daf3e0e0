# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS findings for the health sweep: resources an emergency shutdown left stopped (so nobody forgets
the resume), and scoped stages or services at zero with no record (stopped by hand: a resume cannot
bring those back)."""

from __future__ import annotations

import datetime

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    describe_error,
    for_each,
    is_aws_error,
    paginate,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_resources import (
    EcsDesiredCount,
    LambdaConcurrency,
    StageThrottle,
    resolve_services,
    resolve_stages,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.health import finding
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


def inspect(kind, resource: Resource, target: str, thresholds: dict) -> dict | None:
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
    if same(current.values, kind.stopped):
        return {"target": target, "check": "stopped_without_record", "value": describe(current.values),
                "severity": "warning",
                "message": f"{kind.noun} is at zero with no shutdown record (stopped by hand?): emergency-resume.yml "
                           "cannot restore it; set its value by hand"}
    return None


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
        jobs.append((functions, Resource(arn.rsplit(":", 1)[-1], arn), f"lambda:{arn.rsplit(':', 1)[-1]}"))
    for kind, resolve, entries, prefix in ((StageThrottle(clients), resolve_stages, stages, "apigateway"),
                                           (EcsDesiredCount(clients), resolve_services, services, "ecs")):
        for entry in entries:
            try:
                jobs.extend((kind, r, f"{prefix}:{r.name}") for r in resolve(clients, [entry]))
            except RunbookError as exc:
                found.append({"target": f"{prefix}:{entry}", "check": "scope_resource_exists", "value": False,
                              "severity": "warning", "message": str(exc).split(". Nothing was changed")[0]})
    outcomes = for_each(jobs, lambda job: inspect(job[0], job[1], job[2], thresholds))
    for (_kind, _resource, target), outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            message = str(outcome) if isinstance(outcome, RunbookError) else describe_error(outcome, "reading it")
            found.append({"target": target, "check": CHECK, "value": None, "severity": "warning", "message": message})
        elif outcome:
            found.append(outcome)
    if not any(f["check"] == CHECK for f in found):
        found.append({"target": f"aws:{region}", "check": CHECK, "value": None, "severity": "ok",
                      "message": f"no emergency shutdown in force ({len(jobs)} resource(s) checked)"})
    return found
