"""The local AWS API emulator: moto's server, extended with the operations this project calls
that moto lacks.

Added here (the modules keep calling the real AWS API; only the emulator learns it):
- API Gateway v2 ``UpdateStage`` (PATCH /v2/apis/{apiId}/stages/{stageName}), with AWS's
  documented semantics: only the members present in the request change; ``DefaultRouteSettings``
  and each ``RouteSettings`` entry are merged field by field; the response is the full stage.
- Lambda ``GetFunction`` reports ``Concurrency`` when the reserved concurrency is 0 (moto drops a
  falsy value; AWS returns ``{"ReservedConcurrentExecutions": 0}``, the state of a stopped function).
- Lambda ``Put/Get/DeleteProvisionedConcurrencyConfig`` on an alias or a version
  (/functions/{name}/provisioned-concurrency?Qualifier=...), which moto lacks: the configuration is
  IN_PROGRESS, nothing allocated, for RUNBOOK_EMULATOR_PROVISIONED_SECONDS (2 s by default; AWS takes
  minutes) after each Put, then READY with all of it allocated, or FAILED with a StatusReason when the
  function's initialization fails (here: its environment variable RUNBOOK_EMULATOR_INIT_FAILS, whose
  value is the reason); an unqualified function, $LATEST, or an alias that points at $LATEST is refused
  with AWS's "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
- Lambda aliases as AWS keeps them: ``UpdateAlias`` with a ``RevisionId`` that is no longer the alias's
  fails with PreconditionFailedException, and every update gives the alias a new RevisionId (moto keeps
  one forever and ignores the parameter); a weighted alias (``RoutingConfig.AdditionalVersionWeights``)
  must point at published versions, never at $LATEST, and its second version must exist and differ
  from the first.
- ECS deployments as AWS runs them (moto's service never reaches a steady state, keeps the task
  definition string it was given, and starts no deployment): ``UpdateService`` with another task
  definition or ``forceNewDeployment`` starts a new PRIMARY deployment (IN_PROGRESS, no task running
  yet; the one before becomes ACTIVE), and after RUNBOOK_EMULATOR_ECS_ROLLOUT_SECONDS (1 s by default)
  the rollout completes: one deployment, COMPLETED, runningCount = desiredCount. A new service rolls
  out the same way. The service's ``taskDefinition`` is always the full ARN. An INACTIVE (deregistered)
  task definition is refused ("TaskDefinition is inactive"), as AWS documents: a service cannot be
  updated to reference one. A deployment whose tasks fail to start (a task definition whose container
  has the environment variable RUNBOOK_EMULATOR_TASKS_FAIL, its value the tasks' stopped reason) is
  marked FAILED by the deployment circuit breaker at the end of the rollout time, the earlier deployment
  still running (a circuit breaker without rollback).
- DynamoDB ``DescribeTable`` reports ``BillingModeSummary.LastUpdateToPayPerRequestDateTime`` after a
  switch to on-demand, as AWS does (moto keeps no such time). ``UpdateTable`` follows AWS's switching rule
  (moto has none): up to four switches from provisioned to on-demand per table in a rolling 24 hours, the
  fifth refused with LimitExceededException and the table left as it was; a switch to provisioned at any time.
- API Gateway v2 ``TagResource``/``GetTags``/``UntagResource`` on a stage's ARN
  (arn:aws:apigateway:REGION::/apis/ID/stages/NAME), which AWS supports and moto's routes lack; ``GetStage``
  returns the stage's tags (``Tags``) as AWS does (moto returns only those given at creation).
- RUNBOOK_EMULATOR_REQUEST_LOG=FILE: one line per request, "service Operation", appended to FILE, so a benchmark
  counts the calls a run made (bench/emergency.py).
- CloudFormation stacks that fail, as in AWS (moto answers CreateStack with the resource's error and
  leaves the stack CREATE_IN_PROGRESS forever, and deletes every stack): a resource that fails to
  create gets a CREATE_FAILED event with its reason, and the stack rolls back to ROLLBACK_COMPLETE
  (``OnFailure=DO_NOTHING`` or ``DisableRollback``: CREATE_FAILED; ``OnFailure=DELETE``: deleted).
  A deleted stack is DELETE_IN_PROGRESS for RUNBOOK_EMULATOR_CFN_SECONDS (1 s by default) after
  DeleteStack returns, as in AWS (moto deletes at once). Deleting an S3 bucket that still holds
  objects fails ("The bucket you tried to delete is not empty"), so the stack ends DELETE_FAILED with a
  DELETE_FAILED event per such resource; a later DeleteStack with ``RetainResources`` (accepted only
  for a DELETE_FAILED stack) skips them and completes.

Fault injection, for tests of partial failure and throttling: when RUNBOOK_EMULATOR_FAULTS names a
JSON file, every request is checked against its rules (re-read when the file changes) before moto
answers it. A rule: {"operation": "PutFunctionConcurrency", "match": "text in the path or body",
"code": "ThrottlingException", "status": 429, "every": 2, "times": 10}: the matching calls (every
`every`-th of them, at most `times` in all; both optional) are answered with that AWS error, and
each injection is appended to <file>.log. A rule with "hold_until": "/a/file" answers no error: it holds
the matching call until that file exists, then serves it as usual, so a test can change a resource
between a module's read and its write (a race, every time, without timing).

Run: python sandbox/aws_emulator.py --port 55555   (binds 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import threading
import time
from datetime import datetime
from typing import Any
from urllib.parse import unquote

ECS_ROLLOUT_SECONDS = float(os.environ.get("RUNBOOK_EMULATOR_ECS_ROLLOUT_SECONDS", "1"))
UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."

# Members of UpdateStage whose value replaces the stage's (moto attribute names).
_REPLACED = {
    "accessLogSettings": "access_log_settings",
    "autoDeploy": "auto_deploy",
    "clientCertificateId": "client_certificate_id",
    "deploymentId": "deployment_id",
    "description": "description",
}


ON_DEMAND_SWITCHES, SWITCH_WINDOW_SECONDS = 4, 24 * 3600
_switch_lock = threading.Lock()


def refuse_fifth_switch(switches: list[float], now: float) -> None:
    """AWS: "You can switch tables from provisioned capacity mode to on-demand mode up to four times in a 24-hour
    rolling window." The message follows the form of AWS's LimitExceededException for this rule."""
    recent = sorted(moment for moment in switches if now - moment < SWITCH_WINDOW_SECONDS)
    if len(recent) < ON_DEMAND_SWITCHES:
        return
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException

    def java_date(moment: float) -> str:
        return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(moment))

    raise DynamodbException(
        ERROR_TYPE_PREFIX + "LimitExceededException",
        f"Subscriber limit exceeded: Update to PayPerRequest mode are limited to {ON_DEMAND_SWITCHES} times in 1 "
        f"day(s). Last update at {java_date(recent[-1])}. Next update can be made at "
        f"{java_date(recent[-ON_DEMAND_SWITCHES] + SWITCH_WINDOW_SECONDS)}")


def update_stage_model(stage: Any, changes: dict[str, Any]) -> Any:
    """Apply an UpdateStage request body to a moto Stage, in place."""
    for member, attribute in _REPLACED.items():
        if member in changes:
            setattr(stage, attribute, changes[member])
    if "defaultRouteSettings" in changes:
        stage.default_route_settings = {**(stage.default_route_settings or {}), **changes["defaultRouteSettings"]}
    if "routeSettings" in changes:
        merged = dict(stage.route_settings or {})
        for route_key, settings in changes["routeSettings"].items():
            merged[route_key] = {**merged.get(route_key, {}), **settings}
        stage.route_settings = merged
    if "stageVariables" in changes:
        variables = dict(stage.stage_variables or {})
        for key, value in changes["stageVariables"].items():
            # AWS removes a stage variable whose new value is empty.
            if value in (None, ""):
                variables.pop(key, None)
            else:
                variables[key] = value
        stage.stage_variables = variables
    stage.updated = datetime.now()
    return stage


class Faults:
    """The fault rules of RUNBOOK_EMULATOR_FAULTS, with a count of matching calls per rule."""

    def __init__(self, path: str | None):
        self.path, self.lock = path, threading.Lock()
        self.stamp, self.rules, self.seen, self.injected = None, [], [], []

    def _reload(self) -> None:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except (FileNotFoundError, TypeError):
            stamp = None
        if stamp != self.stamp:
            self.stamp = stamp
            self.rules = json.loads(open(self.path).read() or "[]") if stamp else []
            self.seen, self.injected = [0] * len(self.rules), [0] * len(self.rules)

    def check(self, operation: str, text: str) -> dict | None:
        if not self.path:
            return None
        with self.lock:
            self._reload()
            for index, rule in enumerate(self.rules):
                if rule.get("operation") not in (None, operation) or rule.get("match", "") not in text:
                    continue
                self.seen[index] += 1
                if self.seen[index] % int(rule.get("every", 1)):
                    continue
                if rule.get("times") is not None and self.injected[index] >= int(rule["times"]):
                    continue
                self.injected[index] += 1
                with open(f"{self.path}.log", "a") as log:  # what was injected, for a test to prove it happened
                    log.write(json.dumps({"operation": operation, "code": rule.get("code")}) + "\n")
                return rule
        return None


def error_response(rule: dict) -> tuple[int, dict, str]:
    code = rule.get("code", "InternalFailure")
    message = rule.get("message", f"injected by the emulator's fault rules: {code}")
    headers = {"x-amzn-ErrorType": code, "Content-Type": "application/x-amz-json-1.1"}
    return int(rule.get("status", 400)), headers, json.dumps({"__type": code, "message": message, "Message": message})


def hold(release: str, deadline_seconds: float = 120) -> None:
    """A call held until the file `release` exists (a test makes it once it has changed what it wants changed
    between a module's read and its write): the race, every time, without timing."""
    deadline = time.monotonic() + deadline_seconds
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)


def install_fault_injection(faults: Faults) -> None:
    from moto.core.responses import BaseResponse

    if getattr(BaseResponse, "_runbook_faults", None) is not None:
        BaseResponse._runbook_faults = faults
        return
    original = BaseResponse.call_action

    request_log = os.environ.get("RUNBOOK_EMULATOR_REQUEST_LOG")
    log_lock = threading.Lock()

    def call_action(self: Any) -> Any:
        if request_log:
            with log_lock, open(request_log, "a") as out:
                out.write(f"{self.service_name} {self._get_action()}\n")
        active = BaseResponse._runbook_faults
        if active.path:
            body = self.body.decode(errors="replace") if isinstance(self.body, bytes) else str(self.body or "")
            rule = active.check(self._get_action(), f"{unquote(self.path)} {body}")
            if rule and rule.get("hold_until"):
                hold(rule["hold_until"])  # then served as usual: what changed meanwhile decides its answer
            elif rule:
                return error_response(rule)
        return original(self)

    BaseResponse._runbook_faults = faults
    BaseResponse.call_action = call_action


def install_provisioned_concurrency() -> None:
    from moto.awslambda import urls
    from moto.awslambda.responses import LambdaResponse

    def configs(self: Any) -> dict[tuple[str, str], int]:
        # Kept on the backend, so moto's reset (/moto-api/reset) empties it with everything else.
        if not hasattr(self.backend, "_runbook_provisioned"):
            self.backend._runbook_provisioned = {}
        return self.backend._runbook_provisioned

    def target(self: Any, putting: bool = False) -> tuple[str, str]:
        name = unquote(self.path.rstrip("/").rsplit("/", 2)[-2])
        qualifier = self.querystring.get("Qualifier", [None])[0]
        if not qualifier:
            raise _lambda_error("InvalidParameterValueException",
                                "Provisioned concurrency needs an alias or a published version as Qualifier.")
        if qualifier == "$LATEST":
            raise _lambda_error("InvalidParameterValueException", UNPUBLISHED)
        function = self.backend.get_function(name, qualifier)  # NotFound like AWS for a missing alias/version
        if putting and not qualifier.isdigit():
            alias = self.backend.get_alias(qualifier, function.function_name)
            if alias.function_version == "$LATEST":
                raise _lambda_error("InvalidParameterValueException", UNPUBLISHED)
        return function.function_name, qualifier

    def document(entry: dict) -> str:
        """IN_PROGRESS (nothing allocated yet) for RUNBOOK_EMULATOR_PROVISIONED_SECONDS after the Put, then READY
        with all of it allocated, or FAILED with the reason the function's RUNBOOK_EMULATOR_INIT_FAILS variable gives
        (a function whose initialization fails: AWS documents the FAILED status and a StatusReason, not its text)."""
        requested, elapsed = entry["requested"], time.monotonic() - entry["since"]
        if elapsed < float(os.environ.get("RUNBOOK_EMULATOR_PROVISIONED_SECONDS", "2")):
            state = {"AvailableProvisionedConcurrentExecutions": 0, "AllocatedProvisionedConcurrentExecutions": 0,
                     "Status": "IN_PROGRESS"}
        elif entry["fails"]:
            state = {"AvailableProvisionedConcurrentExecutions": 0, "AllocatedProvisionedConcurrentExecutions": 0,
                     "Status": "FAILED", "StatusReason": entry["fails"]}
        else:
            state = {"AvailableProvisionedConcurrentExecutions": requested,
                     "AllocatedProvisionedConcurrentExecutions": requested, "Status": "READY"}
        return json.dumps({"RequestedProvisionedConcurrentExecutions": requested, **state,
                           "LastModified": entry["at"]})

    def put_provisioned_concurrency_config(self: Any) -> tuple[int, dict, str]:
        key = target(self, putting=True)
        function = self.backend.get_function(*key)
        variables = function.environment_vars or {}
        configs(self)[key] = {"requested": int(json.loads(self.body)["ProvisionedConcurrentExecutions"]),
                              "since": time.monotonic(), "at": datetime.now().isoformat(),
                              "fails": variables.get("RUNBOOK_EMULATOR_INIT_FAILS")}
        return 202, {}, document(configs(self)[key])

    def get_provisioned_concurrency_config(self: Any) -> tuple[int, dict, str]:
        key = target(self)
        if key not in configs(self):
            raise _lambda_error("ProvisionedConcurrencyConfigNotFoundException",
                                f"No Provisioned Concurrency Config found for this function: {key[0]}:{key[1]}", 404)
        return 200, {}, document(configs(self)[key])

    def delete_provisioned_concurrency_config(self: Any) -> tuple[int, dict, str]:
        configs(self).pop(target(self), None)
        return 204, {}, ""

    urls.url_paths[r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"] = \
        LambdaResponse.dispatch
    LambdaResponse.put_provisioned_concurrency_config = put_provisioned_concurrency_config
    LambdaResponse.get_provisioned_concurrency_config = get_provisioned_concurrency_config
    LambdaResponse.delete_provisioned_concurrency_config = delete_provisioned_concurrency_config


def check_routing(backend: Any, function_name: str, version: str | None, routing: dict | None) -> None:
    """AWS's rules for a weighted alias: published versions only, the second one existing and not the first."""
    weights = (routing or {}).get("AdditionalVersionWeights") or {}
    if not weights:
        return
    if version == "$LATEST":
        raise _lambda_error("InvalidParameterValueException",
                            "$LATEST is not supported for an alias pointing to more than 1 version")
    published = {str(f.version) for f in backend.list_versions_by_function(function_name)} - {"$LATEST"}
    for extra, weight in weights.items():
        if extra not in published:
            raise _lambda_error("InvalidParameterValueException",
                                f"Version {extra} of function {function_name} does not exist (routing config)")
        if extra == version:
            raise _lambda_error("InvalidParameterValueException",
                                "The additional version of a routing config must differ from the alias's version")
        if not 0.0 <= float(weight) <= 1.0:
            raise _lambda_error("InvalidParameterValueException", f"Weight {weight} is not between 0.0 and 1.0")


def install_alias_revisions() -> None:
    import uuid

    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.responses import LambdaResponse

    original_create, original_update = LambdaBackend.create_alias, LambdaBackend.update_alias
    original_response_update = LambdaResponse.update_alias

    def create_alias(self: Any, name: str, function_name: str, function_version: str, description: str,
                     routing_config: Any) -> Any:
        check_routing(self, function_name, function_version, routing_config)
        return original_create(self, name, function_name, function_version, description, routing_config)

    def update_alias(self: Any, name: str, function_name: str, function_version: str, description: str,
                     routing_config: Any) -> Any:
        alias = self.get_alias(name, function_name)
        check_routing(self, function_name, function_version or alias.function_version,
                      alias.routing_config if routing_config is None else routing_config)
        return original_update(self, name, function_name, function_version, description, routing_config)

    def update_alias_response(self: Any) -> Any:
        function_name = unquote(self.path.rsplit("/")[-3])
        alias = self.backend.get_alias(name=unquote(self.path.rsplit("/", 2)[-1]), function_name=function_name)
        expected = json.loads(self.body or "{}").get("RevisionId")
        if expected and expected != alias.revision_id:
            raise _lambda_error("PreconditionFailedException",
                                "The Revision Id provided does not match the latest Revision Id. Call the GetAlias "
                                "API to retrieve the latest Revision Id", 412)
        original_response_update(self)
        alias.revision_id = str(uuid.uuid4())
        return 200, {}, json.dumps(alias.to_json())

    LambdaBackend.create_alias = create_alias
    LambdaBackend.update_alias = update_alias
    LambdaResponse.update_alias = update_alias_response


def install_ecs_deployments() -> None:
    from moto.core.utils import utcnow
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.moto_api._internal import mock_random

    original_create, original_update = EC2ContainerServiceBackend.create_service, \
        EC2ContainerServiceBackend.update_service
    original_describe = EC2ContainerServiceBackend.describe_services

    def start_deployment(service: Any, task_definition_arn: str) -> None:
        for deployment in service.deployments:
            if deployment["status"] == "PRIMARY":
                deployment["status"] = "ACTIVE"
        deployment_id = f"ecs-svc/{mock_random.randint(0, 32 ** 12)}"
        now = utcnow()
        service.deployments.insert(0, {
            "id": deployment_id, "status": "PRIMARY", "taskDefinition": task_definition_arn,
            "desiredCount": service.desired_count, "pendingCount": service.desired_count, "runningCount": 0,
            "failedTasks": 0, "createdAt": now, "updatedAt": now, "launchType": service.launch_type,
            "rolloutState": "IN_PROGRESS", "rolloutStateReason": f"ECS deployment {deployment_id} in progress."})
        service.task_definition = task_definition_arn
        service._runbook_steady_at = time.monotonic() + ECS_ROLLOUT_SECONDS

    def failing(backend: Any, task_definition_arn: str) -> str | None:
        """Why the tasks of a task definition fail to start: its container's RUNBOOK_EMULATOR_TASKS_FAIL variable
        (AWS's reasons are the tasks' stopped reasons: an image that cannot be pulled, an essential container
        that exits), or None."""
        try:
            definition = backend.describe_task_definition(task_definition_arn)
        except Exception:
            return None
        for container in definition.container_definitions:
            for variable in container.get("environment") or []:
                if variable.get("name") == "RUNBOOK_EMULATOR_TASKS_FAIL":
                    return variable.get("value") or "tasks failed to start"
        return None

    def settle(backend: Any, service: Any) -> None:
        """Once the rollout time has passed: the PRIMARY deployment alone, COMPLETED, every task running; or, when
        its tasks fail to start, the deployment circuit breaker marks it FAILED and the earlier deployment's tasks
        keep running (a circuit breaker without rollback)."""
        if time.monotonic() < getattr(service, "_runbook_steady_at", 0.0):
            return
        primary = next((d for d in service.deployments if d["status"] == "PRIMARY"), None)
        if primary is not None and primary["rolloutState"] == "FAILED":
            return
        reason = failing(backend, primary["taskDefinition"]) if primary is not None else None
        if reason is not None and len(service.deployments) > 1:
            primary.update(rolloutState="FAILED", runningCount=0, pendingCount=0, failedTasks=service.desired_count,
                           rolloutStateReason=f"ECS deployment circuit breaker: tasks failed to start. ({reason})",
                           updatedAt=utcnow())
            return
        desired = service.desired_count
        if primary is None or (len(service.deployments) == 1 and primary["rolloutState"] == "COMPLETED"
                               and service.running_count == desired and primary["runningCount"] == desired):
            return
        primary.update(desiredCount=desired, runningCount=desired, pendingCount=0, rolloutState="COMPLETED",
                       rolloutStateReason=f"ECS deployment {primary['id']} completed.", updatedAt=utcnow())
        service.deployments = [primary]
        cluster = backend._get_cluster(service.cluster_name)
        backend.update_cluster_resources(cluster, desired - service.running_count, task_state="RUNNING")
        backend.update_cluster_resources(cluster, -service.pending_count, task_state="PENDING")
        service.running_count, service.pending_count = desired, 0

    def create_service(self: Any, *args: Any, **kwargs: Any) -> Any:
        service = original_create(self, *args, **kwargs)
        if service.deployments:
            service._runbook_steady_at = time.monotonic() + ECS_ROLLOUT_SECONDS
        return service

    def update_service(self: Any, properties: dict[str, Any]) -> Any:
        wanted = properties.get("task_definition")
        force = bool(properties.pop("force_new_deployment", False))
        service = self._get_service(properties.get("cluster", "default"), properties["service"].split("/")[-1])
        settle(self, service)
        if wanted:
            definition = self.describe_task_definition(wanted)  # ClientException like AWS for a missing one
            if definition.status != "ACTIVE":
                raise InvalidParameterException("TaskDefinition is inactive")
            properties["task_definition"] = definition.arn
        before, count_given = service.task_definition, properties.get("desired_count") is not None
        service = original_update(self, properties)
        if not count_given:  # moto took the service's tasks off the cluster's counts and put none back
            cluster = self._get_cluster(service.cluster_name)
            self.update_cluster_resources(cluster, service.running_count, task_state="RUNNING")
            self.update_cluster_resources(cluster, service.pending_count, task_state="PENDING")
        if force or (wanted and service.task_definition != before):
            start_deployment(service, service.task_definition)
        elif service.deployments:
            service.deployments[0]["desiredCount"] = service.desired_count
            settle(self, service)
        return service

    def describe_services(self: Any, cluster: str, names: list[str]) -> Any:
        services, failures = original_describe(self, cluster, names)
        for service in services:
            settle(self, service)
        return services, failures

    EC2ContainerServiceBackend.create_service = create_service
    EC2ContainerServiceBackend.update_service = update_service
    EC2ContainerServiceBackend.describe_services = describe_services


def install_stack_failures() -> None:
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.models import CloudFormationBackend, Event, Stack
    from moto.cloudformation.responses import CloudFormationResponse

    request = threading.local()
    original_create_stack, original_create_resources = CloudFormationResponse.create_stack, Stack.create_resources
    original_delete_stack_response, original_delete_stack = CloudFormationResponse.delete_stack, \
        CloudFormationBackend.delete_stack

    def resource_event(stack: Any, logical_id: str, status: str, reason: str) -> None:
        resource_type = stack.resource_map._resource_json_map.get(logical_id, {}).get("Type", "")
        stack.events.append(Event(stack_id=stack.stack_id, stack_name=stack.name, logical_resource_id=logical_id,
                                  physical_resource_id="", resource_type=resource_type, resource_status=status,
                                  resource_status_reason=reason, resource_properties=None))

    def create_stack(self: Any) -> Any:
        request.on_failure = self._get_param("OnFailure") or (
            "DO_NOTHING" if str(self._get_param("DisableRollback")).lower() == "true" else "ROLLBACK")
        return original_create_stack(self)

    def create_resources(self: Any) -> None:
        try:
            original_create_resources(self)
        except Exception as exc:
            resource_map = self.resource_map
            failed = next((logical_id for logical_id in resource_map._resource_json_map
                           if logical_id not in resource_map._parsed_resources), self.name)
            reason = getattr(exc, "message", None) or str(exc)
            resource_event(self, failed, "CREATE_FAILED", f"Resource handler returned message: \"{reason}\"")
            on_failure = getattr(request, "on_failure", "ROLLBACK")
            if on_failure == "DO_NOTHING":
                self.status = "CREATE_FAILED"
                self._add_stack_event("CREATE_FAILED", resource_status_reason=f"The following resource(s) failed "
                                                                               f"to create: [{failed}].")
                return
            self._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason="The following resource(s) failed "
                                                                                 f"to create: [{failed}].")
            try:
                resource_map.delete()
            except Exception:  # a rollback that cannot remove a half-made resource still ends the create
                pass
            self.status = "ROLLBACK_COMPLETE"
            self._add_stack_event("ROLLBACK_COMPLETE")
            if on_failure == "DELETE":
                request.delete_after_create = self.stack_id

    def not_empty_buckets(stack: Any, retained: set[str]) -> list[str]:
        blocked = []
        for logical_id, resource in stack.resource_map._parsed_resources.items():
            resource_type = stack.resource_map._resource_json_map.get(logical_id, {}).get("Type")
            if resource_type == "AWS::S3::Bucket" and logical_id not in retained and getattr(resource, "keys", None):
                blocked.append(logical_id)
        return blocked

    def delete_stack_response(self: Any) -> Any:
        retained = set(self._get_param("RetainResources", []) or [])
        name_or_id = self._get_param("StackName")
        stack = next((s for s in self.cloudformation_backend.stacks.values()
                      if name_or_id in (s.name, s.stack_id)), None)
        if retained and (stack is None or stack.status != "DELETE_FAILED"):
            raise ValidationError(name_or_id, "Invalid operation on stack: RetainResources can only be specified "
                                              "when the stack is in the DELETE_FAILED state")
        request.retained = retained
        try:
            return original_delete_stack_response(self)
        finally:
            request.retained = set()

    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        stack = next((s for s in self.stacks.values() if name_or_stack_id in (s.name, s.stack_id)), None)
        retained = getattr(request, "retained", set())
        if stack is None:
            original_delete_stack(self, name_or_stack_id)
            return
        if stack.status == "DELETE_IN_PROGRESS":  # AWS accepts a second DeleteStack of a stack being deleted
            return
        stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
        stack.status = "DELETE_IN_PROGRESS"

        def finish() -> None:
            blocked = not_empty_buckets(stack, retained)
            if blocked:
                for logical_id in blocked:
                    resource_event(stack, logical_id, "DELETE_FAILED", "The bucket you tried to delete is not empty")
                stack.status = "DELETE_FAILED"
                stack._add_stack_event("DELETE_FAILED", resource_status_reason="The following resource(s) failed to "
                                                                               f"delete: [{', '.join(blocked)}].")
                return
            for logical_id in retained:
                if logical_id in stack.resource_map._resource_json_map:
                    stack.resource_map._resource_json_map[logical_id]["DeletionPolicy"] = "Retain"
            original_delete_stack(self, stack.stack_id)

        # As in AWS, the stack is DELETE_IN_PROGRESS for a while after the call returns.
        delay = float(os.environ.get("RUNBOOK_EMULATOR_CFN_SECONDS", "1"))
        if delay > 0:
            timer = threading.Timer(delay, finish)
            timer.daemon = True
            timer.start()
        else:
            finish()

    def create_stack_backend(self: Any, *args: Any, **kwargs: Any) -> Any:
        request.delete_after_create = None
        stack = original_backend_create(self, *args, **kwargs)
        if request.delete_after_create:
            original_delete_stack(self, request.delete_after_create)
        return stack

    original_backend_create = CloudFormationBackend.create_stack
    CloudFormationResponse.create_stack = create_stack
    CloudFormationResponse.delete_stack = delete_stack_response
    CloudFormationBackend.create_stack = create_stack_backend
    CloudFormationBackend.delete_stack = delete_stack
    Stack.create_resources = create_resources


def _lambda_error(code: str, message: str, status: int = 400):
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = status
    return error


def install_extensions() -> None:
    from moto.apigatewayv2.models import Stage
    from moto.apigatewayv2.responses import ApiGatewayV2Response

    def to_json_with_deployment(self: Any) -> dict[str, Any]:
        document = _original_to_json(self)
        if getattr(self, "deployment_id", None):
            document["deploymentId"] = self.deployment_id
        return document

    def get_stage_with_tags(self: Any) -> tuple[int, dict, str]:
        status, headers, body = _original_get_stage(self)
        document = json.loads(body)
        suffix = f"::/apis/{self.path.split('/')[-3]}/stages/{unquote(self.path.split('/')[-1])}"
        tagger = self.apigatewayv2_backend.tagger
        for arn in [arn for arn in tagger.tags if arn.endswith(suffix)]:
            document["tags"] = {**(document.get("tags") or {}), **tagger.get_tag_dict_for_resource(arn)}
        return status, headers, json.dumps(document)

    def update_stage(self: Any) -> tuple[int, dict, str]:
        parts = self.path.split("/")
        api_id, stage_name = parts[-3], unquote(parts[-1])
        stage = self.apigatewayv2_backend.get_stage(api_id, stage_name)  # raises NotFound like AWS
        update_stage_model(stage, json.loads(self.body or "{}"))
        return 200, {}, json.dumps(stage.to_json())

    if getattr(Stage, "_runbook_extended", False):
        return
    from moto.awslambda.models import LambdaFunction

    original_get_code = LambdaFunction.get_code

    def get_code_with_zero_concurrency(self: Any) -> dict[str, Any]:
        document = original_get_code(self)
        if self.reserved_concurrency is not None:
            document["Concurrency"] = {"ReservedConcurrentExecutions": int(self.reserved_concurrency)}
        return document

    LambdaFunction.get_code = get_code_with_zero_concurrency
    install_provisioned_concurrency()
    install_alias_revisions()
    install_ecs_deployments()
    install_stack_failures()

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original_update_table, original_describe = DynamoDBBackend.update_table, Table.describe

    def update_table_with_switch_rule(self: Any, name: str, **kwargs: Any) -> Any:
        with _switch_lock:
            table = self.get_table(name)
            switching = table.billing_mode != "PAY_PER_REQUEST" and kwargs.get("billing_mode") == "PAY_PER_REQUEST"
            switches = getattr(table, "switches_to_pay_per_request", [])
            if switching:
                refuse_fifth_switch(switches, time.time())  # before anything of the request is applied
            table = original_update_table(self, name, **kwargs)
            if switching:
                table.switches_to_pay_per_request = [*switches, time.time()]
        return table

    def describe_with_switch_time(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        document = original_describe(self, *args, **kwargs)
        switched = (getattr(self, "switches_to_pay_per_request", None) or [None])[-1]
        if switched is not None:
            for body in document.values():
                body["BillingModeSummary"]["LastUpdateToPayPerRequestDateTime"] = switched
        return document

    DynamoDBBackend.update_table = update_table_with_switch_rule
    Table.describe = describe_with_switch_time
    from moto.apigatewayv2 import urls

    urls.url_paths["{0}/v2/tags/(?P<resource_arn_pt1>[^/]+)/apis/(?P<resource_arn_pt2>[^/]+)/stages/"
                   "(?P<resource_arn_pt3>[^/]+)$"] = ApiGatewayV2Response.dispatch
    _original_to_json = Stage.to_json
    Stage.to_json = to_json_with_deployment
    _original_get_stage = ApiGatewayV2Response.get_stage
    ApiGatewayV2Response.get_stage = get_stage_with_tags
    Stage._runbook_extended = True
    if not hasattr(ApiGatewayV2Response, "update_stage"):
        ApiGatewayV2Response.update_stage = update_stage


# Further extensions, one module per AWS service (sandbox/emulator_<service>.py), each with an install() and a
# docstring saying what it adds, in the style of this file's list above.
EXTENSION_MODULES = ("emulator_dynamodb", "emulator_shutdown", "emulator_lambda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=55555)
    args = parser.parse_args()
    install_extensions()
    for extension in EXTENSION_MODULES:  # one file per service beside this one, each with install() and a docstring
        importlib.import_module(f"{__package__}.{extension}" if __package__ else extension).install()
    install_fault_injection(Faults(os.environ.get("RUNBOOK_EMULATOR_FAULTS")))
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main()
