# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon API Gateway: how stages are found, read, throttled and tagged, for emergency shutdown and resume.

`StageThrottle` is the default route throttling of a v2 (WebSocket, HTTP) stage, or the `*/*` method throttling of a
REST stage. `resolve_stages` finds every stage named in a scope before anything changes."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    for_each,
    is_aws_error,
    paginate,
    region_of,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    Current,
    Kind,
    Resource,
)


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

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
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
    region = region_of(clients("apigatewayv2"))
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
