# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon API Gateway: how stages are found, read, throttled and tagged, for emergency shutdown and resume.

`StageThrottle` is the throttling of a stage: the default route throttling of a v2 (WebSocket, HTTP) stage and each
of its `RouteSettings`, or the `*/*` method throttling of a REST stage and each of its other `methodSettings` paths.
A route or method with a throttling limit of its own is not held by the default one, so a shutdown stops every
limit set and records each (`runbook:previous-throttling-burst-limit@<route key or method path>`, on the stage).
`resolve_stages` finds every stage named in a scope before anything changes."""

from __future__ import annotations

import copy

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    for_each,
    is_aws_error,
    paginate,
    region_of,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    NOT_SET,
    SHUTDOWN,
    Current,
    Kind,
    Plan,
    Record,
    Resource,
    plan_resume,
    plan_stop,
)

# A member of a route's or method's own throttling is the setting of the default with `@<key>`: burst_limit@$connect,
# rate_limit@GET /items (the REST methodSettings key ~1items/GET, written as a route key is).
AT = "@"
REST_DEFAULT = "*/*"
V2_MEMBERS = {"burst_limit": ("ThrottlingBurstLimit", int), "rate_limit": ("ThrottlingRateLimit", float)}
REST_MEMBERS = {"burst_limit": ("throttlingBurstLimit", int), "rate_limit": ("throttlingRateLimit", float)}
REST_PATHS = {"burst_limit": "throttling/burstLimit", "rate_limit": "throttling/rateLimit"}
# What a tag key may hold besides letters and digits (AWS: "letters, numbers, spaces, and _ . : / = + - @"); any other
# character of a route key ($connect, GET /items/{id}) is written =XX (its UTF-8 bytes), and = itself as =3D.
TAG_KEY_SAFE = frozenset(" _.:/+-@")
TAG_KEY_MAX = 128


def tag_key_escape(text: str) -> str:
    return "".join(c if (c.isascii() and c.isalnum()) or c in TAG_KEY_SAFE else
                   "".join(f"={b:02X}" for b in c.encode()) for c in text)


def tag_key_unescape(text: str) -> str:
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "=":
            out.append(int(text[i + 1:i + 3], 16))  # ValueError for a key not written by tag_key_escape
            i += 3
        else:
            out.extend(text[i].encode())
            i += 1
    return out.decode()


def rest_path(key: str) -> str:
    """A REST methodSettings key as a person reads it, in the form of a route key: ~1items~1{id}/GET ->
    GET /items/{id}."""
    resource, _sep, method = key.rpartition("/")
    return f"{method} {resource.replace('~1', '/')}"


def rest_key(path: str) -> str:
    """The methodSettings key (and patch path segment) of a path `rest_path` made."""
    method, _sep, resource = path.partition(" ")
    return f"{resource.replace('/', '~1')}/{method}"


def member_of(setting: str) -> tuple[str, str | None]:
    """("burst_limit", "$connect") for burst_limit@$connect; ("burst_limit", None) for the default."""
    base, sep, key = setting.partition(AT)
    return base, (key if sep else None)


# -- API Gateway stages ---------------------------------------------------------------------------
class StageThrottle(Kind):
    """The throttling of an API Gateway stage: its default limits (`burst_limit`, `rate_limit`: v2 default route
    settings, REST `*/*`) and every limit a route or method sets on its own (`burst_limit@<key>`). Only limits that are
    set are members of a route or method; one it leaves unset follows the default (stopped with it)."""

    noun = "API stage"
    settings = {"burst_limit": ("throttling-burst-limit", int), "rate_limit": ("throttling-rate-limit", float)}
    stopped = {"burst_limit": 0, "rate_limit": 0.0}
    raw_kept = ("DefaultRouteSettings", "RouteSettings")  # a v2 write sends each settings object back whole

    def __init__(self, clients):
        super().__init__(clients)
        self._account = {}  # shared by the per-stage views of plan(): read once per run

    # -- the record: the default's two settings, then one pair per route or method -------------------------------
    def suffix(self, setting: str) -> str:
        base, key = member_of(setting)
        if key is None:
            return super().suffix(setting)
        suffix = f"{super().suffix(base)}{AT}{tag_key_escape(key)}"
        if len(SHUTDOWN.prefix + suffix) > TAG_KEY_MAX:
            raise RunbookError(f"the route or method {key!r} is too long to be recorded in a tag key (AWS allows "
                               f"{TAG_KEY_MAX} characters); nothing was changed on this stage: throttle it by hand.")
        return suffix

    def setting(self, suffix: str) -> tuple[str, type] | None:
        base_suffix, sep, escaped = suffix.partition(AT)
        known = super().setting(base_suffix)
        if not sep or known is None:
            return known
        try:
            return f"{known[0]}{AT}{tag_key_unescape(escaped)}", known[1]
        except (ValueError, IndexError, UnicodeDecodeError):
            return None

    def recorded(self, tags: dict, record: Record = SHUTDOWN) -> dict | None:
        """The default's record as every kind's (complete), plus each route's or method's members."""
        own = {key: text for key, text in tags.items() if key.startswith(record.prefix) and AT in key}
        values = super().recorded({key: text for key, text in tags.items() if key not in own}, record)
        if own and values is None:
            raise RunbookError(f"the {record.what} record on this {self.noun} holds route or method limits "
                               f"({', '.join(sorted(own))}) but not the stage's own; set the values by hand, then "
                               "remove the runbook:* tags.")
        for key, text in own.items():
            known = self.setting(key[len(record.prefix):])
            try:
                if known is None or text == NOT_SET:
                    raise ValueError(text)
                values[known[0]] = known[1](text)
            except ValueError:
                raise RunbookError(f"the {record.what} record {key}={text!r} on this {self.noun} is not a limit "
                                   "of a route or method; set the value by hand, then remove the runbook:* tags."
                                   ) from None
        return values

    def plan(self, state: str, now: str | None = None):
        """The decision of a shutdown or resume for each stage (previous_values.run's `decide`), or None for the
        plain one of `state`. What is stopped depends on the stage: each limit it sets, besides the default's."""
        now = now or isoformat(utc_now())

        def stop(current: Current) -> Plan:
            recorded = self.recorded(current.tags) or {}
            plan = plan_stop(self._stopping({**recorded, **current.values}), current, now)
            # A route or method that got limits of its own since the first shutdown is recorded too; the first
            # record of everything else is kept.
            unrecorded = {key: value for key, value in current.values.items() if key not in recorded}
            if plan.action == "stop" and recorded and unrecorded:
                plan.add_tags = self.encode(unrecorded)
                plan.note += f"; now recorded too: {', '.join(sorted(unrecorded))}"
            return plan

        def resume(current: Current) -> Plan:
            return plan_resume(self._stopping(self.recorded(current.tags) or {}), current)

        return {"stopped": stop, "resumed": resume}.get(state)

    def _stopping(self, members: dict) -> StageThrottle:
        """This kind, stopping `members` (and the default) rather than the default alone."""
        view = copy.copy(self)
        view.stopped = {**self.stopped, **{key: self.stopped[member_of(key)[0]] for key in members}}
        return view

    # -- the stage ---------------------------------------------------------------------------------------------
    def read(self, resource: Resource) -> Current:
        api_id, stage = resource.ref["api_id"], resource.ref["stage"]
        if resource.ref["type"] == "rest":
            v1 = self.clients("apigateway")
            found = v1.get_stage(restApiId=api_id, stageName=stage)
            methods = found.get("methodSettings") or {}
            values = members(methods.get(REST_DEFAULT) or {}, REST_MEMBERS, keep_unset=True)
            for key, settings in sorted(methods.items()):
                if key != REST_DEFAULT:
                    values.update(members(settings, REST_MEMBERS, rest_path(key)))
            return Current(values, found.get("tags") or {}, found)  # GetStage returns the stage's tags
        v2 = self.clients("apigatewayv2")
        found = v2.get_stage(ApiId=api_id, StageName=stage)
        values = members(found.get("DefaultRouteSettings") or {}, V2_MEMBERS, keep_unset=True)
        for route, settings in sorted((found.get("RouteSettings") or {}).items()):
            values.update(members(settings, V2_MEMBERS, route))
        return Current(values, found.get("Tags") or {}, found)

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        """One UpdateStage for the stage: only the limits in `values` are sent; a default limit that is to be "not
        set" gets the account-level one."""
        api_id, stage = resource.ref["api_id"], resource.ref["stage"]
        values = {key: self.account_limits()[key] if value is None and AT not in key else value
                  for key, value in values.items()}
        by_key: dict[str | None, dict] = {}
        for setting, value in values.items():
            base, key = member_of(setting)
            by_key.setdefault(key, {})[base] = value
        if resource.ref["type"] == "rest":
            self.clients("apigateway").update_stage(restApiId=api_id, stageName=stage, patchOperations=[
                {"op": "replace", "path": f"/{REST_DEFAULT if key is None else rest_key(key)}/{REST_PATHS[base]}",
                 "value": str(value)} for key, limits in by_key.items() for base, value in limits.items()])
            return
        # Each settings object goes back whole with only its throttling members changed, so logging and metrics
        # settings survive whether AWS merges or replaces it.
        update = {}
        if None in by_key:
            update["DefaultRouteSettings"] = {**(current.raw.get("DefaultRouteSettings") or {}),
                                              **sent(by_key.pop(None), V2_MEMBERS)}
        routes = current.raw.get("RouteSettings") or {}
        if by_key:
            update["RouteSettings"] = {route: {**(routes.get(route) or {}), **sent(limits, V2_MEMBERS)}
                                       for route, limits in by_key.items()}
        self.clients("apigatewayv2").update_stage(ApiId=api_id, StageName=stage, **update)

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
        if not self._account:
            limits = self.clients("apigateway").get_account().get("throttleSettings", {})
            self._account.update(burst_limit=limits.get("burstLimit"), rate_limit=limits.get("rateLimit"))
        return self._account

    def restore_values(self, recorded: dict) -> tuple[dict, str]:
        if None not in recorded.values():
            return recorded, ""
        # AWS has no call that removes default route throttling from a stage once set: "not set" means the
        # account-level limits apply, so those are what a resume writes for an unset member.
        target = {key: self.account_limits()[key] if value is None else value for key, value in recorded.items()}
        return target, (f"was not set before the shutdown; AWS cannot unset stage throttling, so the account-level "
                        f"limits that applied then are written: burst {target['burst_limit']}, "
                        f"rate {target['rate_limit']}")


def members(settings: dict, names: dict, key: str | None = None, keep_unset: bool = False) -> dict:
    """The throttling limits of one settings object as settings of the kind: the default's both (None when unset),
    a route's or method's only those it sets."""
    found = {base: settings.get(member) for base, (member, _convert) in names.items()}
    return {(base if key is None else f"{base}{AT}{key}"): value for base, value in found.items()
            if keep_unset or value is not None}


def sent(limits: dict, names: dict) -> dict:
    return {names[base][0]: names[base][1](value) for base, value in limits.items()}


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

    pairs = sorted({(kind, api_id) for kind, api_id, _label, _stage in chosen})
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
