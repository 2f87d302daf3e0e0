# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWS resources an emergency shutdown acts on: how each is found from a scope, read, changed
and tagged. Finding (`resolve_*`) happens before anything changes and fails on any selector that
matches nothing, so a typo in a scope is an error, never a silent success.

Also the scaling kinds (Lambda and DynamoDB capacity), the one UpdateFunctionConfiguration
(`update_function_configuration`) and the states the Lambda and DynamoDB waits end on
(`function_update_state`, `provisioned_concurrency_state`, `table_state`, for `waits.wait_until`)."""

from __future__ import annotations

import contextlib
import datetime
import math
import re
import time

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    describe_error,
    error_code,
    fail_at_once,
    for_each,
    is_aws_error,
    paginate,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, parse_iso
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import SCALE, Current, Kind, Resource
from ansible_collections.runbook.recovery.plugins.module_utils.waits import retry_conflicts, wait_until


def _region(aws_client) -> str:
    return aws_client.meta.region_name


# -- Lambda ---------------------------------------------------------------------------------------
LAMBDA_UPDATE_WAIT_SECONDS = 300


def aws_reason(found: dict, key: str) -> str:
    """AWS's reason (`key`, such as LastUpdateStatusReason) with its code when AWS gives one."""
    reason, code = found.get(key) or "no reason given", found.get(f"{key}Code")
    return f"{reason} ({code})" if code else reason


def function_update_state(config: dict) -> tuple[str, str]:
    """A function after UpdateFunctionConfiguration, for wait_until: done when LastUpdateStatus is Successful; a
    Failed update (or a function whose State is Failed) ends the wait with AWS's reason."""
    if config.get("State") == "Failed":
        return "failed", f"the function's State is Failed: {aws_reason(config, 'StateReason')}"
    status = config.get("LastUpdateStatus", "Successful")
    if status == "Failed":
        return "failed", aws_reason(config, "LastUpdateStatusReason")
    return ("done" if status == "Successful" else "pending"), f"LastUpdateStatus {status}"


def update_function_configuration(lam, function: str, update: dict, what: str = "the update",
                                  wait_seconds: float = LAMBDA_UPDATE_WAIT_SECONDS) -> dict:
    """The one way to call UpdateFunctionConfiguration: only the members in `update` are sent; the call is retried
    while another update is in progress; then it waits until LastUpdateStatus is Successful ("<what> failed: <AWS's
    reason>" when it is Failed). Returns the configuration read last."""
    retry_conflicts(lambda: lam.update_function_configuration(FunctionName=function, **update),
                    f"UpdateFunctionConfiguration of {function}")
    config: dict = {}

    def check() -> tuple[str, str]:
        config.clear()
        config.update(lam.get_function_configuration(FunctionName=function))
        return function_update_state(config)

    wait_until(check, wait_seconds, what, max_poll=5.0)
    return config


def provisioned_concurrency_state(config: dict) -> tuple[str, str]:
    """A provisioned concurrency configuration after a Put, for wait_until: READY, or FAILED with AWS's reason."""
    status = config.get("Status")
    if status == "FAILED":
        return "failed", config.get("StatusReason") or "no reason given"
    return ("done" if status == "READY" else "pending"), f"Status {status or 'not visible yet'}"


class LambdaConcurrency(Kind):
    noun = "Lambda function"
    settings = {"reserved_concurrency": ("reserved-concurrency", int)}
    stopped = {"reserved_concurrency": 0}

    def read(self, resource: Resource) -> Current:
        try:
            found = self.clients("lambda").get_function(FunctionName=resource.arn)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise RunbookError("the function no longer exists (deleted during the run?)") from None
            raise
        reserved = found.get("Concurrency", {}).get("ReservedConcurrentExecutions")
        return Current({"reserved_concurrency": reserved}, found.get("Tags") or {}, found.get("Configuration") or {})

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        reserved, lam = values["reserved_concurrency"], self.clients("lambda")
        if reserved is None:
            retry_conflicts(lambda: lam.delete_function_concurrency(FunctionName=resource.arn),
                            f"DeleteFunctionConcurrency of {resource.name}")
        else:
            retry_conflicts(lambda: lam.put_function_concurrency(FunctionName=resource.arn,
                                                                 ReservedConcurrentExecutions=reserved),
                            f"PutFunctionConcurrency of {resource.name}")

    def tag(self, resource: Resource, tags: dict) -> None:
        self.clients("lambda").tag_resource(Resource=resource.arn, Tags=tags)

    def untag(self, resource: Resource, keys: list) -> None:
        self.clients("lambda").untag_resource(Resource=resource.arn, TagKeys=keys)


# The options that choose functions (documented by the runbook.recovery.aws.lambda_selection fragment).
LAMBDA_SELECTION_SPEC = dict(
    names=dict(type="list", elements="str", default=[]),
    prefixes=dict(type="list", elements="str", default=[]),
    tags=dict(type="dict", default={}),
)


def resolve_functions(clients, names: list, prefixes: list, tags: dict) -> list[Resource]:
    if not (names or prefixes or tags):
        raise RunbookError("no Lambda functions selected: give names, prefixes or tags.")
    functions = {f["FunctionName"]: f["FunctionArn"]
                 for f in paginate(clients("lambda"), "list_functions", "Functions")}
    region = _region(clients("lambda"))
    chosen: dict[str, str] = {}
    problems = []
    for name in names:
        if name in functions:
            chosen[name] = functions[name]
        else:
            problems.append(f"function {name!r} does not exist in {region}")
    for prefix in prefixes:
        matches = {n: arn for n, arn in functions.items() if n.startswith(prefix)}
        if not matches:
            problems.append(f"prefix {prefix!r} matches no Lambda function in {region}")
        chosen.update(matches)
    if tags:
        mappings = paginate(clients("resourcegroupstaggingapi"), "get_resources", "ResourceTagMappingList",
                            ResourceTypeFilters=["lambda:function"],
                            TagFilters=[{"Key": k, "Values": [str(v)]} for k, v in tags.items()])
        by_arn = {arn: n for n, arn in functions.items()}
        matches = {by_arn[m["ResourceARN"]]: m["ResourceARN"] for m in mappings if m["ResourceARN"] in by_arn}
        if not matches:
            problems.append(f"no Lambda function in {region} carries the tags {tags}")
        chosen.update(matches)
    if problems:
        raise RunbookError("; ".join(problems) + ". Nothing was changed: check the names in the scope "
                           f"(the region's functions: {len(functions)}).")
    return [Resource(name, arn) for name, arn in sorted(chosen.items())]


# -- API Gateway stages ---------------------------------------------------------------------------
class StageThrottle(Kind):
    """Default route throttling of an API Gateway v2 (WebSocket, HTTP) stage, or the `*/*` method
    throttling of a REST API stage."""

    noun = "API stage"
    settings = {"burst_limit": ("throttling-burst-limit", int), "rate_limit": ("throttling-rate-limit", float)}
    stopped = {"burst_limit": 0, "rate_limit": 0.0}

    def __init__(self, clients):
        super().__init__(clients)
        self._account_limits = None

    def read(self, resource: Resource) -> Current:
        api_id, stage = resource.ref["api_id"], resource.ref["stage"]
        if resource.ref["type"] == "rest":
            v1 = self.clients("apigateway")
            found = v1.get_stage(restApiId=api_id, stageName=stage)
            settings = (found.get("methodSettings") or {}).get("*/*", {})
            values = {"burst_limit": settings.get("throttlingBurstLimit"),
                      "rate_limit": settings.get("throttlingRateLimit")}
            return Current(values, v1.get_tags(resourceArn=resource.arn).get("tags") or {}, found)
        v2 = self.clients("apigatewayv2")
        found = v2.get_stage(ApiId=api_id, StageName=stage)
        settings = found.get("DefaultRouteSettings") or {}
        values = {"burst_limit": settings.get("ThrottlingBurstLimit"),
                  "rate_limit": settings.get("ThrottlingRateLimit")}
        return Current(values, v2.get_tags(ResourceArn=resource.arn).get("Tags") or {}, found)

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        """Only the limits in `values` are sent; a limit that is to be "not set" gets the account-level one."""
        api_id, stage = resource.ref["api_id"], resource.ref["stage"]
        values = {key: self.account_limits()[key] if value is None else value for key, value in values.items()}
        if resource.ref["type"] == "rest":
            paths = {"burst_limit": "/*/*/throttling/burstLimit", "rate_limit": "/*/*/throttling/rateLimit"}
            self.clients("apigateway").update_stage(restApiId=api_id, stageName=stage, patchOperations=[
                {"op": "replace", "path": paths[key], "value": str(value)} for key, value in values.items()])
            return
        # The whole DefaultRouteSettings goes back with only the throttling members changed, so logging
        # and metrics settings survive whether AWS merges or replaces the member.
        members = {"burst_limit": ("ThrottlingBurstLimit", int), "rate_limit": ("ThrottlingRateLimit", float)}
        settings = dict(current.raw.get("DefaultRouteSettings") or {})
        settings.update({members[key][0]: members[key][1](value) for key, value in values.items()})
        self.clients("apigatewayv2").update_stage(ApiId=api_id, StageName=stage, DefaultRouteSettings=settings)

    def tag(self, resource: Resource, tags: dict) -> None:
        if resource.ref["type"] == "rest":
            self.clients("apigateway").tag_resource(resourceArn=resource.arn, tags=tags)
        else:
            self.clients("apigatewayv2").tag_resource(ResourceArn=resource.arn, Tags=tags)

    def untag(self, resource: Resource, keys: list) -> None:
        if resource.ref["type"] == "rest":
            self.clients("apigateway").untag_resource(resourceArn=resource.arn, tagKeys=keys)
        else:
            self.clients("apigatewayv2").untag_resource(ResourceArn=resource.arn, TagKeys=keys)

    def account_limits(self) -> dict:
        """What "not set" means for a stage: the account-level limits (read once per run)."""
        if self._account_limits is None:
            limits = self.clients("apigateway").get_account().get("throttleSettings", {})
            self._account_limits = {"burst_limit": limits.get("burstLimit"), "rate_limit": limits.get("rateLimit")}
        return self._account_limits

    def restore_values(self, recorded: dict) -> tuple[dict, str]:
        if None not in recorded.values():
            return recorded, ""
        # AWS has no call that removes default route throttling from a stage once set: "not set" means the
        # account-level limits apply, so those are what a resume writes for an unset member.
        target = {key: self.account_limits()[key] if value is None else value for key, value in recorded.items()}
        return target, (f"was not set before the shutdown; AWS cannot unset stage throttling, so the account-level "
                        f"limits that applied then are written: burst {target['burst_limit']}, "
                        f"rate {target['rate_limit']}")


def resolve_stages(clients, stages: list[dict]) -> list[Resource]:
    """Each entry: {api: name or id, stage: name, type: v2 (default; WebSocket and HTTP APIs) or rest}."""
    if not stages:
        raise RunbookError("no API stages selected: give stages as [{api: NAME_OR_ID, stage: NAME}].")
    region = _region(clients("apigatewayv2"))
    apis = {"v2": None, "rest": None}
    problems, chosen = [], []
    for entry in stages:
        kind = entry.get("type") or "v2"
        if kind not in apis:
            problems.append(f"stage entry {entry} has type {kind!r}: use v2 (WebSocket/HTTP APIs) or rest")
            continue
        if not entry.get("api") or not entry.get("stage"):
            problems.append(f"stage entry {entry} needs both 'api' (name or id) and 'stage'")
            continue
        if apis[kind] is None:
            apis[kind] = ([(a["ApiId"], a["Name"]) for a in paginate(clients("apigatewayv2"), "get_apis", "Items")]
                          if kind == "v2" else
                          [(a["id"], a["name"]) for a in paginate(clients("apigateway"), "get_rest_apis", "items")])
        ids = [api_id for api_id, name in apis[kind] if entry["api"] in (api_id, name)]
        label = "REST API" if kind == "rest" else "API Gateway v2 API"
        if not ids:
            problems.append(f"no {label} named or with id {entry['api']!r} in {region}")
        elif len(ids) > 1:
            problems.append(f"{len(ids)} {label}s are named {entry['api']!r} ({', '.join(ids)}): give the id instead")
        else:
            chosen.append((kind, ids[0], entry["api"], entry["stage"]))

    def stage_names(item):
        kind, api_id = item
        if kind == "rest":
            return {s["stageName"] for s in clients("apigateway").get_stages(restApiId=api_id).get("item", [])}
        return {s["StageName"] for s in paginate(clients("apigatewayv2"), "get_stages", "Items", ApiId=api_id)}

    pairs = sorted({(kind, api_id) for kind, api_id, _, _ in chosen})
    existing = dict(zip(pairs, for_each(pairs, stage_names), strict=True))
    resources = []
    for kind, api_id, label, stage in chosen:
        names = existing[(kind, api_id)]
        if isinstance(names, Exception):
            if not is_aws_error(names):
                raise names
            problems.append(f"cannot list the stages of {label}: {names}")
        elif stage not in names:
            problems.append(f"{label} has no stage {stage!r} (it has: {', '.join(sorted(names)) or 'none'})")
        else:
            path = f"/restapis/{api_id}" if kind == "rest" else f"/apis/{api_id}"
            resources.append(Resource(f"{label}/{stage}", f"arn:aws:apigateway:{region}::{path}/stages/{stage}",
                                      {"type": kind, "api_id": api_id, "stage": stage}))
    if problems:
        raise RunbookError("; ".join(problems) + ". Nothing was changed: check the scope's API stages.")
    return resources


# -- ECS services ---------------------------------------------------------------------------------
class EcsDesiredCount(Kind):
    noun = "ECS service"
    settings = {"desired_count": ("desired-count", int)}
    stopped = {"desired_count": 0}

    def read(self, resource: Resource) -> Current:
        found = self.clients("ecs").describe_services(cluster=resource.ref["cluster"], services=[resource.arn],
                                                      include=["TAGS"])
        services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
        if not services:
            raise RunbookError("the service no longer exists (deleted during the run?)")
        service = services[0]
        return Current({"desired_count": service["desiredCount"]},
                       {t["key"]: t["value"] for t in service.get("tags") or []})

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        self.clients("ecs").update_service(cluster=resource.ref["cluster"], service=resource.arn,
                                           desiredCount=int(values["desired_count"]))

    def tag(self, resource: Resource, tags: dict) -> None:
        self.clients("ecs").tag_resource(resourceArn=resource.arn,
                                         tags=[{"key": k, "value": v} for k, v in tags.items()])

    def untag(self, resource: Resource, keys: list) -> None:
        self.clients("ecs").untag_resource(resourceArn=resource.arn, tagKeys=keys)


def resolve_services(clients, services: list[dict]) -> list[Resource]:
    """Each entry: {cluster: name, name: service name}."""
    if not services:
        raise RunbookError("no ECS services selected: give services as [{cluster: NAME, name: SERVICE}].")
    problems, resources = [], []
    by_cluster: dict[str, list[str]] = {}
    for entry in services:
        if not entry.get("cluster") or not entry.get("name"):
            problems.append(f"service entry {entry} needs both 'cluster' and 'name'")
        else:
            by_cluster.setdefault(entry["cluster"], []).append(entry["name"])
    for cluster, names in sorted(by_cluster.items()):
        for start in range(0, len(names), 10):  # DescribeServices takes at most 10 names
            batch = names[start:start + 10]
            try:
                found = clients("ecs").describe_services(cluster=cluster, services=batch)
            except Exception as exc:
                if error_code(exc) == "ClusterNotFoundException":
                    problems.append(f"ECS cluster {cluster!r} does not exist")
                    break
                raise
            active = {s["serviceName"]: s["serviceArn"] for s in found.get("services", [])
                      if s.get("status") != "INACTIVE"}
            for name in batch:
                if name in active:
                    resources.append(Resource(f"{cluster}/{name}", active[name], {"cluster": cluster}))
                else:
                    problems.append(f"ECS service {name!r} does not exist in cluster {cluster!r}")
    if problems:
        raise RunbookError("; ".join(problems) + ". Nothing was changed: check the scope's ECS services.")
    return resources


# -- Lambda capacity (scaling) --------------------------------------------------------------------
# The limits AWS documents; a value outside them is refused before any call.
LAMBDA_LIMITS = {"memory_mb": (128, 10240), "timeout_s": (1, 900), "ephemeral_storage_mb": (512, 10240),
                 "reserved_concurrency": (0, None), "provisioned_concurrency": (0, None)}
_CONFIG_MEMBERS = {"memory_mb": "MemorySize", "timeout_s": "Timeout"}


def check_lambda_limits(wanted: dict) -> None:
    for setting, value in wanted.items():
        if value is None:
            continue
        low, high = LAMBDA_LIMITS[setting]
        if value < low or (high is not None and value > high):
            span = f"{low}-{high}" if high is not None else f"{low} or more"
            raise RunbookError(f"{setting}={value} is outside what Lambda accepts ({span}); nothing was changed.")


UNPUBLISHED = ("AWS applies provisioned concurrency only to a published version or an alias pointing at one, never "
               "to $LATEST (the unpublished code that changes with every deploy; PutProvisionedConcurrencyConfig "
               "refuses it)")


def check_qualifier(qualifier: str | None) -> None:
    """$LATEST as the qualifier of provisioned concurrency is refused before anything is read or changed."""
    if qualifier is not None and qualifier.strip() == "$LATEST":
        raise RunbookError(f"qualifier=$LATEST: {UNPUBLISHED}. Nothing was changed. Publish a version (aws lambda "
                           "publish-version), point an alias at it, and give that alias (or the version) as qualifier.")


class LambdaCapacity(LambdaConcurrency):
    """Memory, timeout, ephemeral storage, reserved concurrency, and the provisioned concurrency of one alias or
    version (`qualifier`; its record is `...-provisioned-concurrency@<qualifier>`). Only the settings named are
    sent to UpdateFunctionConfiguration, so VPC, environment, role and layers are never touched."""

    def __init__(self, clients, qualifier: str | None = None):
        super().__init__(clients)
        self.qualifier = qualifier

    def suffix(self, setting: str) -> str:
        if setting == "provisioned_concurrency":
            return f"provisioned-concurrency@{self.qualifier}"
        return super().suffix(setting)

    def setting(self, suffix: str) -> tuple[str, type] | None:
        if suffix.startswith("provisioned-concurrency@"):
            if suffix != f"provisioned-concurrency@{self.qualifier}":
                raise RunbookError(f"the scaling record {suffix} is for another alias or version: undo with "
                                   f"qualifier={suffix.split('@', 1)[1]}.")
            return "provisioned_concurrency", int
        return super().setting(suffix)

    settings = {"memory_mb": ("memory-mb", int), "timeout_s": ("timeout-s", int),
                "ephemeral_storage_mb": ("ephemeral-storage-mb", int),
                "reserved_concurrency": ("reserved-concurrency", int)}
    wait_seconds = LAMBDA_UPDATE_WAIT_SECONDS

    def read(self, resource: Resource) -> Current:
        current = super().read(resource)
        config = current.raw
        current.values.update(memory_mb=config.get("MemorySize"), timeout_s=config.get("Timeout"),
                              ephemeral_storage_mb=(config.get("EphemeralStorage") or {}).get("Size"))
        if self.qualifier:
            current.values["provisioned_concurrency"] = self._provisioned(resource).get(
                "RequestedProvisionedConcurrentExecutions")
        return current

    def check(self, current: Current, changing: dict) -> None:
        if changing.get("provisioned_concurrency") is None or self.qualifier.isdigit():
            return
        alias = self.clients("lambda").get_alias(FunctionName=current.raw["FunctionName"], Name=self.qualifier)
        if alias["FunctionVersion"] == "$LATEST":
            raise RunbookError(f"alias {self.qualifier} points at $LATEST: {UNPUBLISHED}. Nothing was changed. "
                               "Publish a version (aws lambda publish-version) and point the alias at it first.")

    def _provisioned(self, resource: Resource) -> dict:
        try:
            return self.clients("lambda").get_provisioned_concurrency_config(FunctionName=resource.arn,
                                                                             Qualifier=self.qualifier)
        except Exception as exc:
            if error_code(exc) == "ProvisionedConcurrencyConfigNotFoundException":
                return {}
            if error_code(exc) == "ResourceNotFoundException":
                raise RunbookError(f"the function has no alias or version {self.qualifier!r}") from None
            raise

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        update = {member: values[setting] for setting, member in _CONFIG_MEMBERS.items() if setting in values}
        if "ephemeral_storage_mb" in values:
            update["EphemeralStorage"] = {"Size": values["ephemeral_storage_mb"]}
        if update:
            self._update_configuration(resource, update)
        if "reserved_concurrency" in values:
            super().write(resource, current, {"reserved_concurrency": values["reserved_concurrency"]})
        if "provisioned_concurrency" in values:
            self._set_provisioned(resource, values["provisioned_concurrency"])

    def _set_provisioned(self, resource: Resource, wanted: int | None) -> None:
        lam = self.clients("lambda")
        if wanted is None:
            lam.delete_provisioned_concurrency_config(FunctionName=resource.arn, Qualifier=self.qualifier)
            return
        # AWS answers ResourceConflictException while the function or the alias is being updated.
        retry_conflicts(lambda: lam.put_provisioned_concurrency_config(
            FunctionName=resource.arn, Qualifier=self.qualifier, ProvisionedConcurrentExecutions=wanted),
            f"PutProvisionedConcurrencyConfig of {resource.name}:{self.qualifier}")
        wait_until(lambda: provisioned_concurrency_state(self._provisioned(resource)), self.wait_seconds,
                   "provisioned concurrency")

    def _update_configuration(self, resource: Resource, update: dict) -> None:
        update_function_configuration(self.clients("lambda"), resource.arn, update, wait_seconds=self.wait_seconds)


# -- DynamoDB capacity (scaling) ------------------------------------------------------------------
CAPACITY_LIMITS = (1, 40000)  # AWS's default per-table quota for read and write capacity units
# "You can switch tables from provisioned capacity mode to on-demand mode up to four times in a 24-hour rolling
# window. You can switch tables from on-demand mode to provisioned capacity mode at any time."
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/switching.capacitymode.html)
ON_DEMAND_SWITCHES, SWITCH_WINDOW_SECONDS = 4, 24 * 3600
# DescribeTable shows only the last switch to on-demand; the times of those this tool made are kept on the table,
# so the plan can count them. Switches made elsewhere are not in it: AWS's refusal is then reported instead.
SWITCH_HISTORY_TAG = "runbook:on-demand-switches"
_NEXT_TRY = re.compile(r"next (?:update|decrease) can be made at ([^.]+)", re.IGNORECASE)


def utc_text(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def distinct_switches(switches: list[float]) -> list[float]:
    """One time per switch, oldest first: the recorded time and DescribeTable's of one switch are the same to the
    millisecond (AWS's precision), and two switches are never that close."""
    return sorted({round(moment * 1000): moment for moment in switches}.values())


def on_demand_switch_refusal(switches: list[float], now: float) -> str | None:
    """Why AWS would refuse a switch to on-demand now, given the times (epoch seconds) of earlier switches to
    on-demand, duplicates allowed; None when it would not."""
    recent = [moment for moment in distinct_switches(switches) if now - moment < SWITCH_WINDOW_SECONDS]
    if len(recent) < ON_DEMAND_SWITCHES:
        return None
    possible = math.ceil(recent[-ON_DEMAND_SWITCHES] + SWITCH_WINDOW_SECONDS)
    return (f"AWS allows at most {ON_DEMAND_SWITCHES} switches of a table from provisioned to on-demand "
            f"(PAY_PER_REQUEST) in any rolling 24 hours, and this table made {len(recent)}, at "
            f"{', '.join(utc_text(moment) for moment in recent)}. The next switch to on-demand is possible after "
            f"{utc_text(possible)}; switching to PROVISIONED is allowed at any time. Nothing was changed.")


def explain_update_limit(message: str) -> str:
    """AWS's LimitExceededException on UpdateTable in plain words: which limit, and when the next try can succeed
    if AWS's message says."""
    squashed = re.sub(r"[^a-z]", "", message.lower())
    said = _NEXT_TRY.search(message)
    if "payperrequest" in squashed or "ondemand" in squashed:
        text = (f"AWS refused the switch to on-demand (PAY_PER_REQUEST): a table can switch from provisioned to "
                f"on-demand at most {ON_DEMAND_SWITCHES} times in any rolling 24 hours, and this table has used them "
                "(switching to PROVISIONED is allowed at any time)")
        when = (f"AWS says the next switch is possible at {said.group(1).strip()}" if said else
                "AWS did not say when the next switch is possible: 24 hours after the oldest of the last "
                f"{ON_DEMAND_SWITCHES} switches to on-demand")
    elif "decrease" in squashed:
        text = ("AWS refused to lower the provisioned capacity: DynamoDB limits how many times a day a table's "
                "capacity can be decreased")
        when = (f"AWS says the next decrease is possible at {said.group(1).strip()}" if said else
                "AWS did not say when the next decrease is possible")
    else:
        text = "AWS refused the update with LimitExceededException (an account or table limit)"
        when = f"AWS says the next try is possible at {said.group(1).strip()}" if said else ""
    return f"{text}{'; ' + when if when else ''}. AWS's message: {message.rstrip('. ')}"


def switch_history(tags: dict) -> list[float]:
    """The switches to on-demand recorded on a table; an unreadable entry is skipped (AWS still enforces the rule)."""
    moments = []
    for text in tags.get(SWITCH_HISTORY_TAG, "").split():
        with contextlib.suppress(ValueError):
            moments.append(parse_iso(text).timestamp())
    return moments


def last_switch_to_on_demand(table: dict) -> float | None:
    last = (table.get("BillingModeSummary") or {}).get("LastUpdateToPayPerRequestDateTime")
    if last is None:
        return None
    return last.timestamp() if hasattr(last, "timestamp") else float(last)


# A table in one of these states will not become ACTIVE by waiting (ARCHIVED: its KMS key was inaccessible for
# seven days; only a restore from a backup brings the data back).
TABLE_CANNOT_BECOME_ACTIVE = {
    "DELETING": "the table is being deleted",
    "INACCESSIBLE_ENCRYPTION_CREDENTIALS": "the table's AWS KMS key is inaccessible (disabled, or its grant revoked)",
    "ARCHIVING": "the table is being archived: its AWS KMS key has been inaccessible for seven days",
    "ARCHIVED": "the table is archived: its AWS KMS key was inaccessible for seven days",
}
TABLE_WAIT_SECONDS = 1800


def table_state(table: dict, indexes: bool = False) -> tuple[str, str]:
    """A DynamoDB table (DescribeTable's `Table`), for wait_until: done when ACTIVE (with `indexes`, every global
    secondary index too); a status it cannot leave by waiting ends the wait with what AWS says."""
    status = table["TableStatus"]
    if status in TABLE_CANNOT_BECOME_ACTIVE:
        archived = (table.get("ArchivalSummary") or {}).get("ArchivalReason")
        return "failed", f"{status}: {TABLE_CANNOT_BECOME_ACTIVE[status]}" + (f" ({archived})" if archived else "")
    busy = [status] if status != "ACTIVE" else []
    if indexes:
        busy += [f"{i['IndexName']} {i['IndexStatus']}" for i in table.get("GlobalSecondaryIndexes") or []
                 if i.get("IndexStatus", "ACTIVE") != "ACTIVE"]
    return ("pending", ", ".join(busy)) if busy else ("done", "ACTIVE")


def wait_table_active(ddb, name: str, wait_seconds: float = TABLE_WAIT_SECONDS, what: str | None = None,
                      indexes: bool = False) -> dict:
    """Wait until table `name` is ACTIVE (see table_state); a table that disappears ends the wait too. Returns
    the table as DescribeTable gave it last."""
    table: dict = {}

    def check() -> tuple[str, str]:
        try:
            found = ddb.describe_table(TableName=name)["Table"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return "failed", "the table no longer exists"
            raise
        table.clear()
        table.update(found)
        return table_state(found, indexes)

    wait_until(check, wait_seconds, what or f"table {name} becoming ACTIVE")
    return table


class DynamoCapacity(Kind):
    """Billing mode and provisioned capacity of a table and its global secondary indexes. GSI settings are
    named `gsi/<index>/read_capacity`; their tag suffixes `gsi/<index>/read-capacity`."""

    noun = "DynamoDB table"
    settings = {"billing_mode": ("billing-mode", str), "read_capacity": ("read-capacity", int),
                "write_capacity": ("write-capacity", int)}
    wait_seconds = 600

    def suffix(self, setting: str) -> str:
        if setting.startswith("gsi/"):
            return setting.replace("_", "-")
        return super().suffix(setting)

    def setting(self, suffix: str) -> tuple[str, type] | None:
        if suffix.startswith("gsi/") and suffix.rsplit("/", 1)[-1] in ("read-capacity", "write-capacity"):
            return suffix[:suffix.rindex("/") + 1] + suffix.rsplit("/", 1)[-1].replace("-", "_"), int
        return super().setting(suffix)

    def read(self, resource: Resource) -> Current:
        ddb = self.clients("dynamodb")
        try:
            table = ddb.describe_table(TableName=resource.name)["Table"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise RunbookError("the table no longer exists") from None
            raise
        mode = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
        on_demand = mode == "PAY_PER_REQUEST"

        def capacity(throughput, member):
            return None if on_demand else (throughput or {}).get(member)

        values = {"billing_mode": mode,
                  "read_capacity": capacity(table.get("ProvisionedThroughput"), "ReadCapacityUnits"),
                  "write_capacity": capacity(table.get("ProvisionedThroughput"), "WriteCapacityUnits")}
        for index in table.get("GlobalSecondaryIndexes") or []:
            for member, setting in (("ReadCapacityUnits", "read_capacity"), ("WriteCapacityUnits", "write_capacity")):
                values[f"gsi/{index['IndexName']}/{setting}"] = capacity(index.get("ProvisionedThroughput"), member)
        tags = paginate(ddb, "list_tags_of_resource", "Tags", ResourceArn=resource.arn)
        return Current(values, {t["Key"]: t["Value"] for t in tags}, table)

    def related(self, changing: dict, current: Current) -> dict:
        """Leaving provisioned mode loses the capacities: record them too, or an undo could not set them back."""
        if changing.get("billing_mode") == "PAY_PER_REQUEST":
            return {key: value for key, value in current.values.items() if key.endswith("_capacity")}
        return {}

    def check(self, current: Current, changing: dict) -> None:
        """AWS's rules, as clear errors before any change."""
        if changing.get("billing_mode") == "PAY_PER_REQUEST":
            last = last_switch_to_on_demand(current.raw)
            refusal = on_demand_switch_refusal(switch_history(current.tags) + ([last] if last else []), time.time())
            if refusal:
                raise RunbookError(refusal)
        mode = changing.get("billing_mode", current.values["billing_mode"])
        capacities = {k: v for k, v in changing.items() if k.endswith("_capacity") and v is not None}
        if capacities and mode == "PAY_PER_REQUEST":
            raise RunbookError("the table is (or is becoming) PAY_PER_REQUEST: capacities apply only to PROVISIONED "
                               "tables; give dynamodb_billing_mode=PROVISIONED with them. Nothing was changed.")
        low, high = CAPACITY_LIMITS
        for key, value in capacities.items():
            if not low <= value <= high:
                raise RunbookError(f"{key}={value} is outside {low}-{high} capacity units (AWS's default table "
                                   "quota; ask AWS to raise it first). Nothing was changed.")
        unknown = sorted(set(changing) - set(current.values))
        if unknown:
            indexes = sorted({key.split("/")[1] for key in current.values if key.startswith("gsi/")})
            raise RunbookError(f"the table has no {', '.join(unknown)} (its indexes: {', '.join(indexes) or 'none'}). "
                               "Nothing was changed.")

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        target = {**current.values, **values}
        provisioned = target["billing_mode"] == "PROVISIONED"
        update: dict = {}
        if values.get("billing_mode", current.values["billing_mode"]) != current.values["billing_mode"]:
            update["BillingMode"] = target["billing_mode"]
        if provisioned and ("BillingMode" in update or {"read_capacity", "write_capacity"} & set(values)):
            update["ProvisionedThroughput"] = {"ReadCapacityUnits": target["read_capacity"],
                                              "WriteCapacityUnits": target["write_capacity"]}
        indexes = sorted({key.split("/")[1] for key in target if key.startswith("gsi/")})
        gsi_updates = []
        for index in indexes:
            keys = (f"gsi/{index}/read_capacity", f"gsi/{index}/write_capacity")
            if provisioned and ("BillingMode" in update or set(keys) & set(values)):
                gsi_updates.append({"Update": {"IndexName": index, "ProvisionedThroughput": {
                    "ReadCapacityUnits": target[keys[0]], "WriteCapacityUnits": target[keys[1]]}}})
        if gsi_updates:
            update["GlobalSecondaryIndexUpdates"] = gsi_updates
        if not update:
            return
        ddb = self.clients("dynamodb")
        fail_at_once(ddb, "UpdateTable", "LimitExceededException")
        try:
            ddb.update_table(TableName=resource.name, **update)
        except Exception as exc:
            if error_code(exc) != "LimitExceededException":
                raise
            raise self._limit_refusal(resource, current, exc) from None
        table = self.wait_active(resource.name)
        if update.get("BillingMode") == "PAY_PER_REQUEST":
            self._remember_switch(resource, current, last_switch_to_on_demand(table) or time.time())

    def _limit_refusal(self, resource: Resource, current: Current, exc: Exception) -> RunbookError:
        """AWS changed nothing on the table; take back the scaling record written just before, so that is all true."""
        message = explain_update_limit(exc.response.get("Error", {}).get("Message", str(exc)))
        written: list = []
        try:
            tags = paginate(self.clients("dynamodb"), "list_tags_of_resource", "Tags", ResourceArn=resource.arn)
            written = sorted(tag["Key"] for tag in tags if tag["Key"] not in current.tags
                             and (tag["Key"].startswith(SCALE.prefix) or tag["Key"] == SCALE.stamp))
            if written:
                self.untag(resource, written)
        except Exception as cleanup:
            return RunbookError(f"{message}. The table's billing mode and capacities are unchanged, but the scaling "
                                f"record written just before ({', '.join(written) or 'runbook:scale-* tags'}) may "
                                f"remain ({describe_error(cleanup, 'removing it')}): remove those tags by hand.")
        removed = " (the scaling record written just before the refused call was removed)" if written else ""
        return RunbookError(f"{message}. Nothing was changed on this table{removed}.", nothing_changed=True)

    def _remember_switch(self, resource: Resource, current: Current, switched: float) -> None:
        kept = [moment for moment in switch_history(current.tags) if switched - moment < SWITCH_WINDOW_SECONDS]
        history = " ".join(isoformat(datetime.datetime.fromtimestamp(moment, datetime.UTC))
                           for moment in distinct_switches([*kept, switched]))
        # Only a hint for the next plan: the switch itself succeeded, and without the hint AWS's own refusal of a
        # fifth switch is still reported in plain words.
        with contextlib.suppress(Exception):
            self.tag(resource, {SWITCH_HISTORY_TAG: history})

    def wait_active(self, name: str) -> dict:
        return wait_table_active(self.clients("dynamodb"), name, self.wait_seconds, what="the update",
                                 indexes=True)

    def tag(self, resource: Resource, tags: dict) -> None:
        self.clients("dynamodb").tag_resource(ResourceArn=resource.arn,
                                              Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def untag(self, resource: Resource, keys: list) -> None:
        self.clients("dynamodb").untag_resource(ResourceArn=resource.arn, TagKeys=keys)


def resolve_tables(clients, names: list[str]) -> list[Resource]:
    if not names:
        raise RunbookError("no DynamoDB tables selected: give table names.")
    existing = set(paginate(clients("dynamodb"), "list_tables", "TableNames"))
    missing = [name for name in names if name not in existing]
    if missing:
        raise RunbookError(f"no DynamoDB table {', '.join(map(repr, missing))} in {_region(clients('dynamodb'))} "
                           f"(tables: {', '.join(sorted(existing)) or 'none'}). Nothing was changed.")
    ddb = clients("dynamodb")
    return [Resource(name, ddb.describe_table(TableName=name)["Table"]["TableArn"]) for name in names]
