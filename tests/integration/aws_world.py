"""AWS resources shaped like the runbooks' systems, built in the emulator over HTTP with boto3, and read
back with the AWS CLI (installed from PyPI) as a reader independent of the code under test."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import yaml
from botocore import xform_name
from conftest import PlaybookWorkspace

MOTO_ACCOUNT = "123456789012"  # the emulator's account id
AWS_CLI = str(Path(sys.executable).with_name("aws"))
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sandbox.sandbox import create_rest_api  # noqa: E402


def session(env: dict):
    return boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                 region_name=env["AWS_DEFAULT_REGION"])


def clients(env: dict, *services: str):
    made = session(env)
    return [made.client(s, endpoint_url=env["AWS_ENDPOINT_URL"]) for s in services]


def lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def create_functions(env: dict, reserved_by_name: dict[str, int | None], tags: dict | None = None) -> None:
    iam, lam = clients(env, "iam", "lambda")
    role_name = f"role-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = lambda_zip()

    def create(item):
        name, reserved = item
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                            Code={"ZipFile": code}, Tags=tags or {})
        if reserved is not None:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, reserved_by_name.items()))


def aws(env: dict, *args: str, cli: bool = True) -> dict:
    """One AWS CLI call and its JSON output; with cli=False the same call through boto3 (a tenth of the time,
    for the intermediate checks of a test), its arguments mapped to the API's members as the CLI maps them."""
    if cli:
        proc = subprocess.run([AWS_CLI, *args, "--output", "json"], env={**os.environ, **env}, capture_output=True,
                              text=True, check=True)
        return json.loads(proc.stdout or "{}")
    service, command, *options = args
    [client] = clients(env, service)
    operation = client.meta.service_model.operation_model(
        next(name for name in client.meta.service_model.operation_names if xform_name(name, "-") == command))
    members = {xform_name(name, "-"): (name, shape) for name, shape in operation.input_shape.members.items()}
    params = {}
    for flag, value in zip(options[::2], options[1::2], strict=True):
        name, shape = members[flag[2:]]
        params[name] = [value] if shape.type_name == "list" else value
    return getattr(client, xform_name(operation.name))(**params)


@dataclass
class World:
    """One test's own functions, stages and ECS service, named with a unique tag."""

    env: dict
    tag: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    functions: dict = field(default_factory=dict)
    v2_stages: dict = field(default_factory=dict)  # name -> api id
    rest_stages: dict = field(default_factory=dict)
    services: list = field(default_factory=list)
    routes: bool = False  # the stages have route and method limits of their own
    scaling_targets: dict = field(default_factory=dict)  # service name -> scalable target ARN
    mappings: dict = field(default_factory=dict)  # "fn-0 <- queue" -> (uuid, arn)

    def build(self, reserved=(7, None, 0), throttled_stage=True, unthrottled_stage=True, rest_stage=True,
              ecs_desired=3, routes=False, scaling=None, mappings=()):
        """`routes`: the WebSocket stage's routes sendMessage (50/20.0, logging INFO) and $connect (burst 10 only)
        and the REST stage's GET / (30/15.5) get limits of their own. `scaling`: (min, max) of an auto scaling
        target of the ECS service. `mappings`: (function index, enabled) of SQS event source mappings."""
        self.functions = {f"{self.tag}-fn-{i}": value for i, value in enumerate(reserved)}
        create_functions(self.env, self.functions)
        apigw, apigateway, ecs = clients(self.env, "apigatewayv2", "apigateway", "ecs")
        self.routes = routes
        if throttled_stage:
            api = apigw.create_api(Name=f"{self.tag}-ws", ProtocolType="WEBSOCKET",
                                   RouteSelectionExpression="$request.body.action")["ApiId"]
            own = {}
            if routes:
                for route in ("sendMessage", "$connect"):
                    apigw.create_route(ApiId=api, RouteKey=route)
                own = {"sendMessage": {"ThrottlingBurstLimit": 50, "ThrottlingRateLimit": 20.0, "LoggingLevel": "INFO"},
                       "$connect": {"ThrottlingBurstLimit": 10}}
            apigw.create_stage(ApiId=api, StageName="prod", RouteSettings=own, DefaultRouteSettings={
                "ThrottlingBurstLimit": 500, "ThrottlingRateLimit": 1000.0, "LoggingLevel": "ERROR"})
            self.v2_stages[f"{self.tag}-ws"] = api
        if unthrottled_stage:
            api = apigw.create_api(Name=f"{self.tag}-http", ProtocolType="HTTP")["ApiId"]
            apigw.create_stage(ApiId=api, StageName="prod")
            self.v2_stages[f"{self.tag}-http"] = api
        if rest_stage:
            self.rest_stages[f"{self.tag}-rest"] = api = create_rest_api(apigateway, f"{self.tag}-rest", "prod")
            if routes:  # the root resource's GET, methodSettings key ~1/GET
                apigateway.update_stage(restApiId=api, stageName="prod", patchOperations=[
                    {"op": "replace", "path": "/~1/GET/throttling/burstLimit", "value": "30"},
                    {"op": "replace", "path": "/~1/GET/throttling/rateLimit", "value": "15.5"}])
        if ecs_desired is not None:
            cluster = f"{self.tag}-cluster"
            ecs.create_cluster(clusterName=cluster)
            ecs.register_task_definition(family=f"{self.tag}-task", containerDefinitions=[
                {"name": "app", "image": "app:1", "memory": 256}])
            ecs.create_service(cluster=cluster, serviceName="backend", taskDefinition=f"{self.tag}-task",
                               desiredCount=ecs_desired)
            self.services = [{"cluster": cluster, "name": "backend"}]
            if scaling:
                [autoscaling] = clients(self.env, "application-autoscaling")
                self.scaling_targets["backend"] = autoscaling.register_scalable_target(
                    ServiceNamespace="ecs", ResourceId=f"service/{cluster}/backend",
                    ScalableDimension="ecs:service:DesiredCount", MinCapacity=scaling[0],
                    MaxCapacity=scaling[1])["ScalableTargetARN"]
        if mappings:
            sqs, lam = clients(self.env, "sqs", "lambda")
            for index, enabled in mappings:
                queue = sqs.create_queue(QueueName=f"{self.tag}-queue-{index}")["QueueUrl"]
                queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
                mapping = lam.create_event_source_mapping(EventSourceArn=queue_arn["QueueArn"], Enabled=enabled,
                                                          FunctionName=f"{self.tag}-fn-{index}", BatchSize=5)
                self.mappings[f"fn-{index} <- queue-{index}"] = (mapping["UUID"], mapping["EventSourceMappingArn"])
        return self

    def scope(self) -> dict:
        return {
            "lambda": {"prefixes": [f"{self.tag}-fn-"]},
            "api_stages": [{"api": name, "stage": "prod"} for name in self.v2_stages]
            + [{"api": name, "stage": "prod", "type": "rest"} for name in self.rest_stages],
            "ecs_services": self.services,
        }

    # -- what a person checks, through the AWS CLI -------------------------------------------------
    def observe(self, cli: bool = True) -> dict:
        """Every value and every runbook:* tag of the world, as the AWS CLI reports them."""
        account = MOTO_ACCOUNT
        region = self.env["AWS_DEFAULT_REGION"]
        reads = []
        for name in self.functions:
            arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
            reads.append((f"lambda:{name}", ("lambda", "get-function-concurrency", "--function-name", name),
                          lambda out: out.get("ReservedConcurrentExecutions")))
            reads.append((f"lambda:{name}:tags", ("lambda", "list-tags", "--resource", arn),
                          lambda out: runbook_tags(out.get("Tags", {}))))
        for name, api in self.v2_stages.items():
            reads.append((f"stage:{name}", ("apigatewayv2", "get-stage", "--api-id", api, "--stage-name", "prod"),
                          lambda out: throttling(out.get("DefaultRouteSettings", {}), "Throttling")))
            if self.routes:  # the same read: the routes' own limits, and what else their settings hold
                reads.append((f"stage:{name}:routes", None, lambda out: {
                    route: (*throttling(settings, "Throttling"), settings.get("LoggingLevel"))
                    for route, settings in out.get("RouteSettings", {}).items()}))
            reads.append((f"stage:{name}:tags", ("apigatewayv2", "get-tags", "--resource-arn",
                                                 f"arn:aws:apigateway:{region}::/apis/{api}/stages/prod"),
                          lambda out: runbook_tags(out.get("Tags", {}))))
        for name, api in self.rest_stages.items():
            reads.append((f"stage:{name}", ("apigateway", "get-stage", "--rest-api-id", api, "--stage-name", "prod"),
                          lambda out: throttling(out.get("methodSettings", {}).get("*/*", {}), "throttling")))
            if self.routes:
                reads.append((f"stage:{name}:methods", None, lambda out: {
                    key: throttling(settings, "throttling") for key, settings in out.get("methodSettings", {}).items()
                    if key != "*/*"}))
            reads.append((f"stage:{name}:tags", ("apigateway", "get-tags", "--resource-arn",
                                                 f"arn:aws:apigateway:{region}::/restapis/{api}/stages/prod"),
                          lambda out: runbook_tags(out.get("tags", {}))))
        for service in self.services:
            reads.append((f"ecs:{service['name']}", ("ecs", "describe-services", "--cluster", service["cluster"],
                                                     "--services", service["name"], "--include", "TAGS"),
                          lambda out: (out["services"][0]["desiredCount"],
                                       runbook_tags({t["key"]: t["value"] for t in out["services"][0].get("tags", [])})
                                       )))
        # The auto scaling targets and mappings through boto3 even when the rest is read with the CLI: six CLI calls
        # more per look would cost test_emergency.py about 5 CPU-s.
        through_cli = len(reads)
        for service, arn in self.scaling_targets.items():
            [cluster] = [s["cluster"] for s in self.services if s["name"] == service]
            reads.append((f"scaling:{service}", ("application-autoscaling", "describe-scalable-targets",
                                                 "--service-namespace", "ecs", "--resource-ids",
                                                 f"service/{cluster}/{service}"),
                          lambda out: scaling_values(out["ScalableTargets"][0])))
            reads.append((f"scaling:{service}:tags", ("application-autoscaling", "list-tags-for-resource",
                                                      "--resource-arn", arn),
                          lambda out: runbook_tags(out.get("Tags", {}))))
        for name, (mapping_id, arn) in self.mappings.items():
            reads.append((f"mapping:{name}", ("lambda", "get-event-source-mapping", "--uuid", mapping_id),
                          lambda out: out["State"]))
            reads.append((f"mapping:{name}:tags", ("lambda", "list-tags", "--resource", arn),
                          lambda out: runbook_tags(out.get("Tags", {}))))
        # A read without a call of its own (None) reads the output of the call before it.
        calls = [(read, cli and index < through_cli) for index, read in enumerate(reads) if read[1] is not None]
        with ThreadPoolExecutor(4) as pool:
            outputs = dict(zip([id(read) for read, _ in calls],
                               pool.map(lambda call: aws(self.env, *call[0][1], cli=call[1]), calls), strict=True))
        observed, output = {}, None
        for read in reads:
            output = outputs[id(read)] if read[1] is not None else output
            observed[read[0]] = read[2](output)
        return observed


def scaling_values(target: dict) -> tuple:
    """(min, max, suspended in, out, scheduled) of a scalable target."""
    suspended = target.get("SuspendedState") or {}
    return (target["MinCapacity"], target["MaxCapacity"],
            *(bool(suspended.get(f"{what}Suspended")) for what in ("DynamicScalingIn", "DynamicScalingOut",
                                                                    "ScheduledScaling")))


def runbook_tags(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if k.startswith("runbook:")}


def throttling(settings: dict, prefix: str) -> tuple:
    burst = settings.get(f"{prefix}BurstLimit")
    rate = settings.get(f"{prefix}RateLimit")
    return burst, None if rate is None else float(rate)


class AwsWorkspace(PlaybookWorkspace):
    """An inventory with one `aws` host pointed at the emulator, and the emergency scopes and scale targets given."""

    def __init__(self, base: Path, env: dict, scopes: dict, targets: dict | None = None):
        super().__init__(base)
        self.aws_env, self.targets = env, targets or {}
        self.extra: dict = {}  # more host variables
        self.write_inventory(scopes)

    def write_inventory(self, scopes: dict) -> None:
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "aws_connection": {"endpoint_url": self.aws_env["AWS_ENDPOINT_URL"],
                               "region": self.aws_env["AWS_DEFAULT_REGION"],
                               "access_key": self.aws_env["AWS_ACCESS_KEY_ID"],
                               "secret_key": self.aws_env["AWS_SECRET_ACCESS_KEY"]},
            "emergency_scopes": scopes,
            "scale_targets_inventory": self.targets,
            "runbook_audit_log": str(self.audit_log),
            "runbook_report_dir": str(self.base / "reports"),
            **self.extra,
        }
        self.inventory.write_text(yaml.safe_dump({"all": {"children": {"aws": {"hosts": {"testaws": host}}}}}))
        self.inventory.chmod(0o600)
