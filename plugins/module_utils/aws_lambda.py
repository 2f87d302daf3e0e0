# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS Lambda: how functions and aliases are found, read, changed and tagged, for every procedure that touches them.

- Emergency shutdown and resume: a function's reserved concurrency (`LambdaConcurrency`; 0 stops it), and its event
  source mappings (`EventSourceMapping`: disabled, so SQS, Kinesis and DynamoDB stream records wait in their source
  instead of being polled into a function that cannot run, retried and dropped).
- Scaling and its undo: memory, timeout, ephemeral storage, reserved and provisioned concurrency (`LambdaCapacity`),
  within the limits AWS documents; $LATEST is refused as a provisioned-concurrency qualifier.
- Deployment rollback: the version an alias points at (`AliasVersion`, `alias_history`, `plan_alias`).
- DynamoDB restore: one environment variable of a function repointed at the restored table (`set_variable`).

Every UpdateFunctionConfiguration goes through `update_function_configuration` (retried while another update is in
progress, then waited on until LastUpdateStatus is Successful, ending at once with AWS's reason when it is Failed).
Finding (`resolve_*`) happens before anything changes and fails on any selector that matches nothing."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    error_code,
    paginate,
    region_of,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    isoformat,
    utc_now,
)
from ansible_collections.runbook.recovery.plugins.module_utils.deploy_rollback import (
    DEFAULT_WAIT_SECONDS,
    LATEST,
    LATEST_IN_TAGS,
    RECORDED,
    Choice,
    History,
    choose_target,
    recorded_target,
)
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome, said
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    Current,
    Kind,
    Plan,
    Resource,
)
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values_extra import recorded_flag
from ansible_collections.runbook.recovery.plugins.module_utils.waits import retry_conflicts, wait_until

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
                                  wait_seconds: float = LAMBDA_UPDATE_WAIT_SECONDS,
                                  outcome: Outcome | None = None) -> dict:
    """The one way to call UpdateFunctionConfiguration: only the members in `update` are sent; the call is retried
    while another update is in progress; then it waits until LastUpdateStatus is Successful ("<what> failed: <AWS's
    reason>" when it is Failed). Returns the configuration read last."""
    retry_conflicts(lambda: lam.update_function_configuration(FunctionName=function, **update),
                    f"UpdateFunctionConfiguration of {function}")
    said(outcome, f"UpdateFunctionConfiguration of {function} accepted ({', '.join(sorted(update))})")
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

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
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
    region = region_of(clients("lambda"))
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


# -- Lambda event source mappings ---------------------------------------------------------------------------------
# A mapping in one of these states is on its way to Enabled or Disabled (or being changed): it is read again until
# it settles, since what it was before the shutdown is what it settles to, and AWS refuses an update meanwhile.
ESM_SETTLING = {"Creating", "Enabling", "Disabling", "Updating"}
ESM_SETTLE_SECONDS = 60


def mapping_state(found: dict) -> tuple[str, str]:
    """A mapping for wait_until: done once it is Enabled or Disabled; Deleting ends the wait."""
    state = found.get("State", "?")
    if state == "Deleting":
        return "failed", "the mapping is being deleted"
    return ("pending" if state in ESM_SETTLING else "done"), f"State {state}"


class EventSourceMapping(Kind):
    """Whether an event source mapping (SQS, Kinesis, DynamoDB streams, ...) polls its source for the function.
    Stopped is disabled; the record is tagged on the mapping itself (AWS tags mappings by their ARN), so a resume
    enables again only the mappings that were enabled before the shutdown."""

    noun = "event source mapping"
    settings = {"enabled": ("enabled", recorded_flag)}
    stopped = {"enabled": False}
    settle_seconds = ESM_SETTLE_SECONDS

    def read(self, resource: Resource) -> Current:
        lam, found = self.clients("lambda"), {}

        def check() -> tuple[str, str]:
            try:
                found.update(lam.get_event_source_mapping(UUID=resource.ref["uuid"]))
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    raise RunbookError("the mapping no longer exists (deleted during the run?)") from None
                raise
            return mapping_state(found)

        wait_until(check, self.settle_seconds, f"event source mapping {resource.ref['uuid']}")
        tags = lam.list_tags(Resource=resource.arn).get("Tags") or {}
        return Current({"enabled": found["State"] == "Enabled"}, tags, found)

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        try:
            self.clients("lambda").update_event_source_mapping(UUID=resource.ref["uuid"],
                                                               Enabled=bool(values["enabled"]))
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise RunbookError("the mapping no longer exists (deleted during the run?)") from None
            raise

    def tag(self, resource: Resource, tags: dict) -> None:
        self.clients("lambda").tag_resource(Resource=resource.arn, Tags=tags)

    def untag(self, resource: Resource, keys: list) -> None:
        self.clients("lambda").untag_resource(Resource=resource.arn, TagKeys=keys)


def unqualified(function_arn: str) -> str:
    """arn:aws:lambda:REGION:ACCOUNT:function:NAME of a function ARN that may end in :ALIAS or :VERSION."""
    return ":".join(function_arn.split(":")[:7])


def source_label(mapping: dict) -> str:
    """sqs:orders, kinesis:stream/clicks, dynamodb:table/chat/stream/...; a self-managed source by its kind."""
    arn = mapping.get("EventSourceArn")
    if not arn:
        return "self-managed source"
    parts = arn.split(":", 5)
    return f"{parts[2]}:{parts[5]}" if len(parts) == 6 else arn


def resolve_mappings(clients, functions: list[Resource]) -> list[Resource]:
    """Every event source mapping of the functions (from `resolve_functions`), found in one listing of the region's
    mappings; a function without any has nothing to disable."""
    chosen = {function.arn for function in functions}
    return sorted((mapping_resource(mapping) for mapping in
                   paginate(clients("lambda"), "list_event_source_mappings", "EventSourceMappings")
                   if unqualified(mapping.get("FunctionArn", "")) in chosen), key=lambda resource: resource.name)


def mapping_resource(mapping: dict) -> Resource:
    """A mapping of ListEventSourceMappings as a resource: FUNCTION <- SOURCE (UUID), tagged by its ARN."""
    uuid, function = mapping["UUID"], unqualified(mapping["FunctionArn"])
    arn = mapping.get("EventSourceMappingArn") or \
        f"{function.rsplit(':function:', 1)[0]}:event-source-mapping:{uuid}"
    return Resource(f"{function.rsplit(':', 1)[-1]} <- {source_label(mapping)} ({uuid})", arn, {"uuid": uuid})


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

    raw_kept = ("FunctionName",)  # check() reads the alias by the function's name

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

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        update = {member: values[setting] for setting, member in _CONFIG_MEMBERS.items() if setting in values}
        if "ephemeral_storage_mb" in values:
            update["EphemeralStorage"] = {"Size": values["ephemeral_storage_mb"]}
        if update:
            update_function_configuration(self.clients("lambda"), resource.arn, update,
                                          wait_seconds=self.wait_seconds, outcome=outcome)
        if "reserved_concurrency" in values:
            super().write(resource, current, {"reserved_concurrency": values["reserved_concurrency"]})
            reserved = values["reserved_concurrency"]
            said(outcome, f"reserved concurrency of {resource.name} "
                          + ("removed" if reserved is None else f"set to {reserved}"))
        if "provisioned_concurrency" in values:
            self._set_provisioned(resource, values["provisioned_concurrency"], outcome)

    def _set_provisioned(self, resource: Resource, wanted: int | None, outcome: Outcome | None = None) -> None:
        lam = self.clients("lambda")
        if wanted is None:
            lam.delete_provisioned_concurrency_config(FunctionName=resource.arn, Qualifier=self.qualifier)
            said(outcome, f"provisioned concurrency of {resource.name}:{self.qualifier} removed")
            return
        # AWS answers ResourceConflictException while the function or the alias is being updated.
        retry_conflicts(lambda: lam.put_provisioned_concurrency_config(
            FunctionName=resource.arn, Qualifier=self.qualifier, ProvisionedConcurrentExecutions=wanted),
            f"PutProvisionedConcurrencyConfig of {resource.name}:{self.qualifier}")
        said(outcome, f"provisioned concurrency of {resource.name}:{self.qualifier} set to {wanted}")
        wait_until(lambda: provisioned_concurrency_state(self._provisioned(resource)), self.wait_seconds,
                   "provisioned concurrency")


# -- pointing a Lambda function at the restored table ---------------------------------------------
def _configuration(lam, function: str) -> dict:
    try:
        return lam.get_function_configuration(FunctionName=function)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise RunbookError(f"Lambda function {function!r} does not exist: nothing was changed.") from None
        raise


def function_variables(lam, function: str) -> dict:
    return dict((_configuration(lam, function).get("Environment") or {}).get("Variables") or {})


REVISION_TRIES = 5  # reads and writes of a function's variables while others keep changing them


def set_variable(lam, function: str, name: str, value: str | None,
                 wait_seconds: float = LAMBDA_UPDATE_WAIT_SECONDS) -> None:
    """Only the one variable changes (None: it is removed). The variable map is written whole (AWS has no call for
    one variable), so it is read just before, and written with that read's RevisionId: if anyone changed the
    function in between, AWS refuses the write (PreconditionFailedException) and it is read and written again, so
    their change is kept rather than undone."""
    for _try in range(REVISION_TRIES):
        config = _configuration(lam, function)
        variables = dict((config.get("Environment") or {}).get("Variables") or {})
        variables.pop(name, None)
        update = {"Environment": {"Variables": {**variables, **({} if value is None else {name: value})}}}
        if config.get("RevisionId"):
            update["RevisionId"] = config["RevisionId"]
        try:
            update_function_configuration(lam, function, update, f"the update of {function}", wait_seconds)
            return
        except Exception as exc:
            if error_code(exc) != "PreconditionFailedException":
                raise
    raise RunbookError(f"{function}'s configuration changed under every one of {REVISION_TRIES} writes of {name}: "
                       "someone else keeps updating it. Nothing of theirs was undone; run again once they are done.")


# -- Lambda aliases -----------------------------------------------------------------------------------
def alias_record_keys(alias: str) -> tuple[str, str, str, str]:
    """(previous version, previous weights, version set, time) tag keys for one alias."""
    return (f"runbook:rollback-previous-{alias}-version", f"runbook:rollback-previous-{alias}-weights",
            f"runbook:rollback-{alias}-version", f"runbook:rolled-back-{alias}-at")


def version_in_tags(version: str) -> str:
    return LATEST_IN_TAGS if version == LATEST else version


def version_from_tags(text: str | None) -> str | None:
    return LATEST if text == LATEST_IN_TAGS else text


def encode_weights(weights: dict) -> str:
    """`8=0.1` (several joined by `/`: tag values take no comma); empty for none."""
    return "/".join(f"{version}={float(weight)!r}" for version, weight in sorted(weights.items()))


def decode_weights(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        return {version: float(weight) for version, weight in (item.split("=", 1) for item in text.split("/"))}
    except ValueError:
        raise RunbookError(f"the rollback record of weights {text!r} is not VERSION=WEIGHT: point the alias by hand, "
                           "then remove the function's runbook:rollback-* tags.") from None


def describe_weights(weights: dict) -> str | None:
    return ", ".join(f"{version} ({float(weight) * 100:g}%)" for version, weight in sorted(weights.items())) or None


def alias_values(version: str, weights: dict) -> dict:
    """What a person reads of an alias: its version, and its second version only when it has one."""
    return {"version": version, **({"second_version": describe_weights(weights)} if weights else {})}


def wanted_version(to: str | None) -> str | None:
    return str(to).strip() if to is not None and str(to).strip() else None


def alias_history(function: str, alias: str, running: str, versions: list[str], tags: dict) -> History:
    states = {version: "PUBLISHED" for version in versions if version != LATEST}
    published = ", ".join(sorted(states, key=int)) or "none"
    previous_key, _weights_key, set_key, at_key = alias_record_keys(alias)
    previous = version_from_tags(tags.get(previous_key))

    def line(key: str) -> int | None:
        return int(key) if key.isdigit() else None

    def unusable(key: str, state: str | None) -> str:
        if key == LATEST:
            why = ("the alias pointed at $LATEST before the rollback its record undoes" if key == previous
                   else "version=$LATEST")
            return (f"{why}: a rollback never points an alias at $LATEST, the unpublished code that changes with "
                    "every deploy (AWS allows neither provisioned concurrency nor weighted routing on it). Nothing "
                    "was changed. Publish it first (aws lambda publish-version) and give that version "
                    f"(published: {published}).")
        return (f"function {function} has no published version {key!r}. Nothing was changed. Give one of its "
                f"published versions: {published}.")

    def nothing_older(older: list[str]) -> str:
        if running == LATEST:
            return ("it points at $LATEST, which has no version before it to roll back to. Nothing was changed. Give "
                    f"the version to go to with to=VERSION (published: {published}).")
        return (f"it points at version {running}, and {function} has no published version older than it: nothing "
                "to roll back to. Nothing was changed. Give the version to go to with to=VERSION "
                f"(published: {published}).")

    return History(running, states, "PUBLISHED", "published version", line, unusable, nothing_older, previous,
                   version_from_tags(tags.get(set_key)), tags.get(at_key))


def plan_alias(history: History, weights: dict, recorded_weights: dict, wanted: str | None, alias: str,
               now: str) -> Plan:
    """The plan for one alias. A weighted alias first loses its second version (the canary is what goes back); an
    undo puts back the weights recorded with the version."""
    before = alias_values(history.running, weights)
    if wanted == RECORDED:
        wanted = recorded_target(history)
    if wanted == LATEST:
        raise RunbookError(history.unusable(LATEST, None))
    since = history.recorded_at or "an earlier run"
    if wanted is None and not weights and recorded_weights \
            and history.recorded_previous == history.running == history.recorded_set:
        choice, target_weights = Choice("undo", history.running, f"undoes the rollback of {since}: traffic to "
                                        f"{describe_weights(recorded_weights)} again"), recorded_weights
    elif weights and wanted in (None, history.running):
        choice, target_weights = Choice("rollback", history.running, f"stops sending traffic to "
                                        f"{describe_weights(weights)}: all of it to version {history.running}"), {}
    else:
        choice = choose_target(history, wanted)
        if choice.action == "unchanged":
            return Plan("unchanged", after=before, note=choice.note)
        target_weights = recorded_weights if choice.action == "undo" else {}
    previous_key, weights_key, set_key, at_key = alias_record_keys(alias)
    record = {previous_key: version_in_tags(history.running), weights_key: encode_weights(weights),
              set_key: version_in_tags(choice.target), at_key: now}
    after = {"version": choice.target}
    if weights or target_weights:  # shown only for a weighted alias, before or after
        after["second_version"] = describe_weights(target_weights)
    return Plan(choice.action, write={"version": choice.target, "weights": target_weights}, add_tags=record,
                after=after, note=f"{choice.note}; version {history.running} recorded for undo")


class AliasVersion(LambdaConcurrency):
    """The version a Lambda alias points at. Its record is tagged on the function (aliases take no tags), as the
    function's reserved concurrency's is."""

    noun = "Lambda alias"

    def __init__(self, clients, to: str | None = None, wait_seconds: float = DEFAULT_WAIT_SECONDS):
        super().__init__(clients)
        self.to, self.wait_seconds = to, wait_seconds

    def read(self, resource: Resource) -> Current:
        lam = self.clients("lambda")
        function, alias = resource.ref["function"], resource.ref["alias"]
        try:
            found = lam.get_alias(FunctionName=function, Name=alias)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise RunbookError("the alias no longer exists (deleted during the run?)") from None
            raise
        versions = [v["Version"] for v in paginate(lam, "list_versions_by_function", "Versions", FunctionName=function)]
        tags = lam.list_tags(Resource=resource.arn).get("Tags") or {}
        weights = (found.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        history = alias_history(function, alias, found["FunctionVersion"], versions, tags)
        return Current(alias_values(found["FunctionVersion"], weights), tags,
                       {"alias": found, "weights": weights, "history": history})

    def plan(self, current: Current) -> Plan:
        alias = current.raw["alias"]["Name"]
        recorded = decode_weights(current.tags.get(alias_record_keys(alias)[1]))
        return plan_alias(current.raw["history"], current.raw["weights"], recorded, wanted_version(self.to), alias,
                          isoformat(utc_now()))

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        lam = self.clients("lambda")
        function, alias = resource.ref["function"], resource.ref["alias"]
        # RevisionId: if someone moved the alias since the plan read it, AWS refuses instead of overwriting them.
        try:
            lam.update_alias(FunctionName=function, Name=alias, FunctionVersion=values["version"],
                             RoutingConfig={"AdditionalVersionWeights": values["weights"]},
                             RevisionId=current.raw["alias"]["RevisionId"])
        except Exception as exc:
            if error_code(exc) != "PreconditionFailedException":
                raise
            raise RunbookError(f"someone changed alias {resource.name} after this run read it (it pointed at version "
                               f"{current.raw['alias']['FunctionVersion']}): AWS refused the write, so their change "
                               "stands and this alias was not rolled back. Look at what it points at now, and run "
                               "the rollback again if it is still needed.") from None
        said(outcome, f"alias {resource.name} pointed at version {values['version']}"
                      + (f" (weights {describe_weights(values['weights'])})" if values["weights"] else ""))
        if self.wait_seconds <= 0:
            return

        def check() -> tuple[str, str]:
            # An alias with provisioned concurrency gets it allocated again for the new version.
            try:
                config = lam.get_provisioned_concurrency_config(FunctionName=function, Qualifier=alias)
            except Exception as exc:
                if error_code(exc) == "ProvisionedConcurrencyConfigNotFoundException":
                    return "done", "no provisioned concurrency"
                raise
            return provisioned_concurrency_state(config)

        try:
            wait_until(check, self.wait_seconds, f"the provisioned concurrency of {alias}")
        except RunbookError as exc:
            raise RunbookError(f"the alias now points at version {values['version']}, but {exc}") from None


def resolve_aliases(clients, entries: list[dict]) -> list[Resource]:
    """Each entry: {function: name or ARN, alias: name}. Every missing function or alias is named before any change."""
    if not entries:
        raise RunbookError("no Lambda aliases selected: give aliases as [{function: NAME, alias: ALIAS}].")
    lam = clients("lambda")
    problems, resources = [], []
    for entry in entries:
        if not entry.get("function") or not entry.get("alias"):
            problems.append(f"alias entry {entry} needs both 'function' and 'alias'")
            continue
        function, alias = entry["function"], entry["alias"]
        try:
            arn = lam.get_function_configuration(FunctionName=function)["FunctionArn"]
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            problems.append(f"function {function!r} does not exist in {lam.meta.region_name}")
            continue
        aliases = [a["Name"] for a in paginate(lam, "list_aliases", "Aliases", FunctionName=function)]
        if alias not in aliases:
            problems.append(f"function {function!r} has no alias {alias!r} "
                            f"(its aliases: {', '.join(aliases) or 'none'})")
            continue
        resources.append(Resource(f"{function}:{alias}", arn, {"function": function, "alias": alias}))
    if problems:
        raise RunbookError("; ".join(problems) + ". Nothing was changed: check the target's Lambda aliases.")
    return resources
