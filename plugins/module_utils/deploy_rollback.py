# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deployment rollbacks recorded on the resource itself: an ECS service back to an earlier task definition
revision (or restarted on the one it runs), a Lambda alias back to an earlier published version.

Before it changes anything, a rollback records on the resource what it replaced and what it set:

    ECS service      runbook:rollback-previous-task-definition = <ARN replaced>
                     runbook:rollback-task-definition = <ARN set>, runbook:rolled-back-at = <UTC time>
    Lambda function  runbook:rollback-previous-<alias>-version = 7, runbook:rollback-previous-<alias>-weights =
                     8=0.1 (the second version of a weighted alias; empty when none)
                     runbook:rollback-<alias>-version = 6, runbook:rolled-back-<alias>-at = <UTC time>

($LATEST is recorded as LATEST: tag values take no "$".)

The record stays on the resource; the next rollback replaces it. Where a rollback goes (`choose_target`, pure):

1. the revision or version given: nothing to do when it already runs;
2. the one the record names, when the resource still runs what the last rollback set: a second rollback undoes
   the first (a record the resource has moved on from, by a deploy since, is not followed);
3. otherwise the newest usable one (an ACTIVE revision of the same family; a published version) older than the
   one running. A weighted alias first loses its second version: the canary is what is rolled back.

A revision that is missing or INACTIVE, $LATEST, or nothing older to go back to, is refused in the plan, before
any change, with what to do. `EcsDeployment` and `AliasVersion` are `previous_values.Kind`s, so rows, plan lines,
diff and the thread pool are those of every other AWS module; the waits are `waits.wait_until`, that of every AWS
module (a deadline, failure states, polls growing from half a second to 15 s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.aws import error_code, paginate
from ansible_collections.runbook.recovery.plugins.module_utils.aws_resources import (
    EcsDesiredCount,
    LambdaConcurrency,
    provisioned_concurrency_state,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import Current, Plan, Resource
from ansible_collections.runbook.recovery.plugins.module_utils.waits import wait_until

LATEST, LATEST_IN_TAGS = "$LATEST", "LATEST"
ECS_PREVIOUS, ECS_SET, ECS_AT = ("runbook:rollback-previous-task-definition", "runbook:rollback-task-definition",
                                 "runbook:rolled-back-at")
DEFAULT_WAIT_SECONDS = 600


# -- the choice (pure) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class History:
    """What a rollback chooses from. Keys are what a person reads: `family:revision`, or a Lambda version.

    `states` holds every revision or version known to exist, with its state; `line` gives a key's place among
    the ones a rollback may step back through (None: not among them, such as another family, or $LATEST)."""

    running: str
    states: dict[str, str]
    usable: str
    what: str  # what a usable one is called: "ACTIVE revision", "published version"
    line: Callable[[str], int | None]
    unusable: Callable[[str, str | None], str]  # (key, its state or None when missing) -> why and what to do
    nothing_older: Callable[[list[str]], str]  # (older keys that are not usable) -> why and what to do
    recorded_previous: str | None = None
    recorded_set: str | None = None
    recorded_at: str | None = None


@dataclass(frozen=True)
class Choice:
    action: str  # rollback, undo, unchanged
    target: str
    note: str


# to=recorded: what the last rollback set, as recorded on the resource. A run with it in check mode changes nothing
# while each resource still runs what its last rollback set: the rollback_deploy DAG's verify step.
RECORDED = "recorded"


def recorded_target(history: History) -> str:
    if not history.recorded_set:
        raise RunbookError(f"to={RECORDED}: no rollback is recorded on it (it has never been rolled back by this "
                           "collection), so there is nothing to compare with. Nothing was changed.")
    return history.recorded_set


def choose_target(history: History, wanted: str | None) -> Choice:
    """Where a rollback goes (see the module's docstring); a RunbookError says why it cannot go anywhere."""
    if wanted == RECORDED:
        wanted = recorded_target(history)

    def require_usable(key: str) -> None:
        state = history.states.get(key)
        if state != history.usable:
            raise RunbookError(history.unusable(key, state))

    if wanted is not None:
        if wanted == history.running:
            return Choice("unchanged", wanted, f"already runs {wanted}, as asked")
        require_usable(wanted)
        return Choice("rollback", wanted, f"to {wanted}, as asked")
    if history.recorded_previous and history.recorded_set == history.running \
            and history.recorded_previous != history.running:
        require_usable(history.recorded_previous)
        return Choice("undo", history.recorded_previous,
                      f"undoes the rollback of {history.recorded_at or 'an earlier run'} "
                      f"({history.recorded_previous} -> {history.running})")
    place = history.line(history.running)
    places = {key: history.line(key) for key in history.states}
    older = sorted((key for key, at in places.items() if None not in (at, place) and at < place),
                   key=places.get, reverse=True)
    usable = [key for key in older if history.states[key] == history.usable]
    if not usable:
        raise RunbookError(history.nothing_older(older))
    target = usable[0]
    skipped = older[:older.index(target)]
    note = f"the newest {history.what} before {history.running}"
    if skipped:
        note += f" ({', '.join(f'{key} is {history.states[key]}' for key in skipped)})"
    if history.recorded_previous == target:
        note += (f"; note: the rollback of {history.recorded_at or 'an earlier run'} went away from {target}: "
                 "give another with to=... if that one is the bad one")
    return Choice("rollback", target, note)


# -- ECS services -----------------------------------------------------------------------------------
def task_definition_key(reference: str) -> str:
    """`family:revision` from an ARN (arn:aws:ecs:...:task-definition/family:3) or the key itself."""
    return reference.rsplit("task-definition/", 1)[-1]


def revision_of(key: str) -> tuple[str, int | None]:
    family, _, revision = key.rpartition(":")
    return (family, int(revision)) if family and revision.isdigit() else (key, None)


def wanted_revision(to: str | None, running: str) -> str | None:
    """The `family:revision` a person meant by `to`: a revision number (of the running family), family:revision,
    or an ARN."""
    if to is None or not str(to).strip():
        return None
    to = str(to).strip()
    if to == RECORDED:
        return to
    family = revision_of(running)[0]
    if to.isdigit():
        return f"{family}:{int(to)}"
    key = task_definition_key(to)
    if revision_of(key)[1] is None:
        raise RunbookError(f"task_definition={to!r} names no task definition revision: give a revision number (3), "
                           f"family:revision ({family}:3) or its ARN. Nothing was changed.")
    return key


def ecs_history(running: str, states: dict[str, str], tags: dict) -> History:
    family = revision_of(running)[0]

    def line(key: str) -> int | None:
        other, revision = revision_of(key)
        return revision if other == family else None

    def active() -> str:
        keys = sorted((k for k, s in states.items() if s == "ACTIVE" and line(k) is not None), key=line)
        return ", ".join(k.rsplit(":", 1)[1] for k in keys) or "none"

    def unusable(key: str, state: str | None) -> str:
        if state is None:
            return (f"task definition {key} does not exist. Nothing was changed. ACTIVE revisions of {family}: "
                    f"{active()}; give one with to=REVISION.")
        return (f"task definition {key} is {state} (deregistered): ECS does not put a service on an INACTIVE "
                f"revision. Nothing was changed. Give an ACTIVE revision of {family} with to=REVISION "
                f"({active()}), or register {key}'s definition again (aws ecs describe-task-definition, then "
                "aws ecs register-task-definition: a new ACTIVE revision) and roll back to that.")

    def nothing_older(older: list[str]) -> str:
        inactive = f" ({', '.join(f'{key} is {states[key]}' for key in older)})" if older else ""
        return (f"it runs {running}, and {family} has no ACTIVE revision older than it{inactive}: "
                "nothing to roll back to. Nothing was changed. Give the revision to go to with to=REVISION "
                f"(ACTIVE: {active()}).")

    recorded = {key: task_definition_key(tags[key]) for key in (ECS_PREVIOUS, ECS_SET) if tags.get(key)}
    return History(running, states, "ACTIVE", "ACTIVE revision", line, unusable, nothing_older,
                   recorded.get(ECS_PREVIOUS), recorded.get(ECS_SET), tags.get(ECS_AT))


def deployment_state(service: dict, deployment_id: str) -> tuple[str, str]:
    """("done" | "waiting" | "failed", what a person reads) for one deployment of a service, from DescribeServices:
    done when it is the only one and every task runs; failed when ECS marked it FAILED (the deployment circuit
    breaker), another deployment replaced it, or the service is going away."""
    if service.get("status") != "ACTIVE":
        return "failed", f"the service is {service.get('status')}"
    deployments = service.get("deployments") or []
    ours = next((d for d in deployments if d.get("id") == deployment_id), None)
    if ours is None:
        newer = ", ".join(f"{d.get('id')} ({task_definition_key(d.get('taskDefinition', '?'))})" for d in deployments)
        return "failed", f"deployment {deployment_id} was replaced by another one before it finished: {newer}"
    if ours.get("rolloutState") == "FAILED":
        return "failed", f"ECS marked deployment {deployment_id} FAILED: {ours.get('rolloutStateReason', 'no reason')}"
    if ours.get("status") != "PRIMARY":
        return "failed", f"deployment {deployment_id} is no longer the primary one (ECS rolled it back?)"
    status = (f"{ours.get('runningCount', 0)}/{ours.get('desiredCount', 0)} tasks of "
              f"{task_definition_key(ours.get('taskDefinition', '?'))} running, {len(deployments)} deployment(s)")
    steady = (len(deployments) == 1 and ours.get("runningCount") == ours.get("desiredCount")
              and ours.get("rolloutState", "COMPLETED") == "COMPLETED")
    return ("done" if steady else "waiting"), status


class EcsDeployment(EcsDesiredCount):
    """The task definition an ECS service runs: `restarted` (a new deployment of the same one) or `rolled_back`.
    Tagged as the desired count's record is."""

    noun = "ECS service"

    def __init__(self, clients, state: str, to: str | None = None, wait_seconds: float = DEFAULT_WAIT_SECONDS):
        super().__init__(clients)
        self.state, self.to, self.wait_seconds = state, to, wait_seconds

    def read(self, resource: Resource) -> Current:
        ecs = self.clients("ecs")
        found = ecs.describe_services(cluster=resource.ref["cluster"], services=[resource.arn], include=["TAGS"])
        services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
        if not services:
            raise RunbookError("the service no longer exists (deleted during the run?)")
        service = services[0]
        running = task_definition_key(service["taskDefinition"])
        tags = {t["key"]: t["value"] for t in service.get("tags") or []}
        raw = {"service": service, "arns": {running: service["taskDefinition"]}}
        if self.state == "rolled_back":
            raw["history"] = ecs_history(running, self._states(running, tags, raw["arns"]), tags)
        return Current({"task_definition": running}, tags, raw)

    def _states(self, running: str, tags: dict, arns: dict) -> dict[str, str]:
        """Every revision of the running family with its state, and those of a revision named by `to` or by the
        record when it is of another family (DescribeTaskDefinition: missing ones are left out)."""
        ecs = self.clients("ecs")
        family = revision_of(running)[0]
        states: dict[str, str] = {}
        for status in ("ACTIVE", "INACTIVE"):
            for arn in paginate(ecs, "list_task_definitions", "taskDefinitionArns", familyPrefix=family,
                                status=status):
                key = task_definition_key(arn)
                if revision_of(key)[0] == family:  # familyPrefix is a prefix: chat matches chat-backend too
                    states[key], arns[key] = status, arn
        named = [wanted_revision(self.to, running), task_definition_key(tags.get(ECS_PREVIOUS) or "") or None]
        for key in sorted({key for key in named if key and key not in states}):
            try:
                definition = ecs.describe_task_definition(taskDefinition=key)["taskDefinition"]
            except Exception as exc:
                if error_code(exc) == "ClientException":  # "Unable to describe task definition."
                    continue
                raise
            states[key], arns[key] = definition.get("status", "ACTIVE"), definition["taskDefinitionArn"]
        return states

    def plan(self, current: Current) -> Plan:
        service, running = current.raw["service"], current.values["task_definition"]
        controller = (service.get("deploymentController") or {}).get("type", "ECS")
        if controller != "ECS":
            how = ("through CodeDeploy (aws deploy stop-deployment --auto-rollback-enabled, or a deployment of the "
                   "previous revision)" if controller == "CODE_DEPLOY" else "with the tool that manages its task sets")
            raise RunbookError(f"its deployments are run by {controller}, not by ECS, so UpdateService cannot restart "
                               f"it or change its task definition: do it {how}. Nothing was changed.")
        if self.state == "restarted":
            if self.to is not None and str(self.to).strip():
                raise RunbookError("a restart starts a new deployment of the task definition the service runs: "
                                   "give no task_definition (to roll back to one, use state=rolled_back).")
            return Plan("restart", write={"force": True}, after=current.values,
                        note=f"a new deployment of {running}: its {service.get('desiredCount', 0)} task(s) replaced")
        choice = choose_target(current.raw["history"], wanted_revision(self.to, running))
        if choice.action == "unchanged":
            return Plan("unchanged", after=current.values, note=choice.note)
        arns = current.raw["arns"]
        record = {ECS_PREVIOUS: arns[running], ECS_SET: arns[choice.target], ECS_AT: isoformat(utc_now())}
        return Plan(choice.action, write={"task_definition": arns[choice.target]}, add_tags=record,
                    after={"task_definition": choice.target}, note=f"{choice.note}; {running} recorded for undo")

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        ecs = self.clients("ecs")
        cluster = resource.ref["cluster"]
        if values.get("force"):
            updated = ecs.update_service(cluster=cluster, service=resource.arn, forceNewDeployment=True)["service"]
            change = f"ECS started a new deployment of {current.values['task_definition']}"
        else:
            updated = ecs.update_service(cluster=cluster, service=resource.arn,
                                         taskDefinition=values["task_definition"])["service"]
            change = f"ECS took the change (the service now runs {task_definition_key(values['task_definition'])})"
        if self.wait_seconds <= 0:
            return
        primary = next((d for d in updated.get("deployments") or [] if d.get("status") == "PRIMARY"), None)
        if primary is None:
            raise RunbookError(f"{change}, but ECS reported no PRIMARY deployment to wait for: check the service with "
                               "aws ecs describe-services")

        def check() -> tuple[str, str]:
            found = ecs.describe_services(cluster=cluster, services=[resource.arn]).get("services") or [{}]
            return deployment_state(found[0], primary["id"])

        try:
            wait_until(check, self.wait_seconds, f"deployment {primary['id']}")
        except RunbookError as exc:
            undo = ("; the record of this rollback is on the service: a rollback now goes back to "
                    f"{current.values['task_definition']}") if not values.get("force") else ""
            raise RunbookError(f"{change}, but {exc}{undo}") from None


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
    previous_key, _, set_key, at_key = alias_record_keys(alias)
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

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        lam = self.clients("lambda")
        function, alias = resource.ref["function"], resource.ref["alias"]
        # RevisionId: if someone moved the alias since the plan read it, AWS refuses instead of overwriting them.
        lam.update_alias(FunctionName=function, Name=alias, FunctionVersion=values["version"],
                         RoutingConfig={"AdditionalVersionWeights": values["weights"]},
                         RevisionId=current.raw["alias"]["RevisionId"])
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
