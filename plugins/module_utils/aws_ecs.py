# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon ECS: how services are found, read, changed and tagged, for every procedure that touches them.

- Emergency shutdown and resume, scaling: a service's desired count (`EcsDesiredCount`; 0 stops it).
- Emergency shutdown and resume: the service's Application Auto Scaling target (`EcsAutoScaling`), held at zero so
  that auto scaling does not bring the service back within minutes.
- Deployment rollback and restart: the task definition revision a service runs (`EcsDeployment`, `ecs_history`),
  waited on until the new deployment is steady (`deployment_state`).

`resolve_services` finds every service named in a scope before anything changes; `resolve_scaling_targets` the
auto scaling targets of those services that have one."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    error_code,
    paginate,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.deploy_rollback import (
    DEFAULT_WAIT_SECONDS,
    RECORDED,
    History,
    choose_target,
)
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome, said
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    Current,
    Kind,
    Plan,
    Resource,
)
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values_extra import recorded_flag
from ansible_collections.runbook.recovery.plugins.module_utils.waits import wait_until


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

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
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


# -- ECS service auto scaling (Application Auto Scaling) --------------------------------------------------------------
ECS_NAMESPACE, ECS_DIMENSION = "ecs", "ecs:service:DesiredCount"
SUSPENDED = {"dynamic_scaling_in_suspended": "DynamicScalingInSuspended",
             "dynamic_scaling_out_suspended": "DynamicScalingOutSuspended",
             "scheduled_scaling_suspended": "ScheduledScalingSuspended"}


class EcsAutoScaling(Kind):
    """The Application Auto Scaling target of an ECS service (ecs:service:DesiredCount). Stopped is both: its
    minimum and maximum capacity 0, so no policy can scale the service out and RegisterScalableTarget itself holds
    the service at 0; and every scaling activity suspended, so a scheduled action cannot raise the range again
    during the incident. The record is tagged on the scalable target itself."""

    noun = "ECS auto scaling target"
    settings = {"min_capacity": ("min-capacity", int), "max_capacity": ("max-capacity", int),
                **{setting: (setting.replace("_", "-"), recorded_flag) for setting in SUSPENDED}}
    stopped = {"min_capacity": 0, "max_capacity": 0, **{setting: True for setting in SUSPENDED}}

    def read(self, resource: Resource) -> Current:
        scaling = self.clients("application-autoscaling")
        found = scaling.describe_scalable_targets(ServiceNamespace=ECS_NAMESPACE, ScalableDimension=ECS_DIMENSION,
                                                  ResourceIds=[resource.ref["resource_id"]]).get("ScalableTargets")
        if not found:
            raise RunbookError("the service has no auto scaling target any more (deregistered during the run?)")
        target = found[0]
        suspended = target.get("SuspendedState") or {}
        values = {"min_capacity": target["MinCapacity"], "max_capacity": target["MaxCapacity"],
                  **{setting: bool(suspended.get(member, False)) for setting, member in SUSPENDED.items()}}
        tags = scaling.list_tags_for_resource(ResourceARN=resource.arn).get("Tags") or {}
        return Current(values, tags, target)

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        """One RegisterScalableTarget: the range and the suspended state together."""
        state = {member: bool(values.get(setting, current.values[setting])) for setting, member in SUSPENDED.items()}
        capacity = {member: int(values[setting]) for setting, member in
                    (("min_capacity", "MinCapacity"), ("max_capacity", "MaxCapacity")) if setting in values}
        self.clients("application-autoscaling").register_scalable_target(
            ServiceNamespace=ECS_NAMESPACE, ScalableDimension=ECS_DIMENSION, ResourceId=resource.ref["resource_id"],
            SuspendedState=state, **capacity)

    def tag(self, resource: Resource, tags: dict) -> None:
        self.clients("application-autoscaling").tag_resource(ResourceARN=resource.arn, Tags=tags)

    def untag(self, resource: Resource, keys: list) -> None:
        self.clients("application-autoscaling").untag_resource(ResourceARN=resource.arn, TagKeys=keys)


def scaling_resource_id(service: Resource) -> str:
    """service/CLUSTER/SERVICE, the ResourceId of a service's scalable target (the cluster by name, not ARN)."""
    cluster = service.ref["cluster"].rsplit("/", 1)[-1]
    return f"service/{cluster}/{service.arn.rsplit('/', 1)[-1]}"


def resolve_scaling_targets(clients, services: list[Resource]) -> list[Resource]:
    """The auto scaling target of each service (from `resolve_services`) that has one; a service without one has
    nothing to hold."""
    wanted = {scaling_resource_id(service): service for service in services}
    ids = sorted(wanted)
    found = {}
    for start in range(0, len(ids), 50):  # DescribeScalableTargets takes at most 50 resource ids
        for target in paginate(clients("application-autoscaling"), "describe_scalable_targets", "ScalableTargets",
                               ServiceNamespace=ECS_NAMESPACE, ScalableDimension=ECS_DIMENSION,
                               ResourceIds=ids[start:start + 50]):
            found[target["ResourceId"]] = target["ScalableTargetARN"]
    return [Resource(resource_id, found[resource_id], {"resource_id": resource_id, "service": wanted[resource_id].name})
            for resource_id in ids if resource_id in found]


ECS_PREVIOUS, ECS_SET, ECS_AT = ("runbook:rollback-previous-task-definition", "runbook:rollback-task-definition",
                                 "runbook:rolled-back-at")


# -- ECS services -----------------------------------------------------------------------------------
def task_definition_key(reference: str) -> str:
    """`family:revision` from an ARN (arn:aws:ecs:...:task-definition/family:3) or the key itself."""
    return reference.rsplit("task-definition/", 1)[-1]


def revision_of(key: str) -> tuple[str, int | None]:
    family, _sep, revision = key.rpartition(":")
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

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        ecs = self.clients("ecs")
        cluster = resource.ref["cluster"]
        if values.get("force"):
            updated = ecs.update_service(cluster=cluster, service=resource.arn, forceNewDeployment=True)["service"]
            change = f"ECS started a new deployment of {current.values['task_definition']}"
        else:
            updated = ecs.update_service(cluster=cluster, service=resource.arn,
                                         taskDefinition=values["task_definition"])["service"]
            change = f"ECS took the change (the service now runs {task_definition_key(values['task_definition'])})"
        said(outcome, f"{resource.name}: {change}")
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
