"""Emulator extensions for an emergency shutdown that stays shut: API Gateway route and method settings, ECS
Application Auto Scaling, Lambda event source mappings.

What moto lacks or answers unlike AWS, added here following AWS's documented behaviour:

- Application Auto Scaling ``TagResource``, ``ListTagsForResource`` and ``UntagResource`` on a scalable target's
  ARN (arn:aws:application-autoscaling:REGION:ACCOUNT:scalable-target/ID), which AWS supports and moto lacks; an ARN
  that names no scalable target is refused with ResourceNotFoundException. ``RegisterScalableTarget``'s ``Tags``
  are applied when it creates the target (AWS: "You can also add tags to a scalable target while creating it").
- ``RegisterScalableTarget`` of an ECS service (``ecs:service:DesiredCount``) moves the service's desired count into
  the new [MinCapacity, MaxCapacity] range, as AWS documents: "If the specified resource is not active in the
  target service, this operation does not change the resource's current capacity. Otherwise, it changes the
  resource's current capacity to a value that is inside of this range." (moto leaves it.)
- Service auto scaling brings an ECS service back into its target's range (moto never scales): a service whose
  desired count is below the target's MinCapacity is scaled out to it unless ``DynamicScalingOutSuspended``, and one
  above MaxCapacity scaled in unless ``DynamicScalingInSuspended``. AWS does this at its next scaling activity,
  within minutes; here it happens at once, before the next ``DescribeServices`` answers, so a test that reads the
  service sees what AWS would show a few minutes later (a shutdown that set only the desired count to 0 comes
  back).
- Lambda ``UpdateEventSourceMapping`` of a UUID that does not exist answers ResourceNotFoundException (404), as AWS
  does (moto answers an empty document that boto3 reads as a success).

moto already does as AWS for the rest of what the shutdown calls: API Gateway v2 ``RouteSettings`` (with
``UpdateStage`` from aws_emulator.py, merged per route key), REST ``UpdateStage`` patch operations on any
``/{resource_path}/{http_method}/throttling/*`` path of ``methodSettings``, ``SuspendedState`` of scalable targets,
and tags on event source mappings (``TagResource``/``ListTags`` on the mapping's ARN).
"""

from __future__ import annotations

import json
from typing import Any

ECS_DIMENSION = "ecs:service:DesiredCount"


def _error(code: str, message: str, status: int = 400):
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = status
    return error


def _ecs_target(backend: Any, cluster: str, service: str) -> Any:
    """The scalable target of an ECS service, or None."""
    return backend.targets.get(ECS_DIMENSION, {}).get(f"service/{cluster}/{service}")


def _suspended(target: Any, member: str) -> bool:
    return bool((target.suspended_state or {}).get(member))


def _set_desired(ecs: Any, cluster: str, service: str, count: int) -> None:
    ecs.update_service({"cluster": cluster, "service": service, "desired_count": count})


def install_scalable_target_tags() -> None:
    from moto.applicationautoscaling.models import ApplicationAutoscalingBackend, FakeScalableTarget
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse

    original_register = ApplicationAutoscalingBackend.register_scalable_target

    def target_by_arn(backend: Any, arn: str) -> Any:
        for targets in backend.targets.values():
            for target in targets.values():
                if target.arn == arn:
                    return target
        raise _error("ResourceNotFoundException", f"No scalable target found for ARN {arn}")

    def tags_of(target: FakeScalableTarget) -> dict:
        if not hasattr(target, "_runbook_tags"):
            target._runbook_tags = {}
        return target._runbook_tags

    def tag_resource(self: Any) -> str:
        target = target_by_arn(self.applicationautoscaling_backend, self._get_param("ResourceARN"))
        tags_of(target).update(self._get_param("Tags") or {})
        return json.dumps({})

    def list_tags_for_resource(self: Any) -> str:
        target = target_by_arn(self.applicationautoscaling_backend, self._get_param("ResourceARN"))
        return json.dumps({"Tags": tags_of(target)})

    def untag_resource(self: Any) -> str:
        target = target_by_arn(self.applicationautoscaling_backend, self._get_param("ResourceARN"))
        for key in self._get_param("TagKeys") or []:
            tags_of(target).pop(key, None)
        return json.dumps({})

    def register_response(self: Any) -> str:
        backend = self.applicationautoscaling_backend
        dimension, resource_id = self._get_param("ScalableDimension"), self._get_param("ResourceId")
        new = resource_id not in backend.targets.get(dimension, {})
        answer = original_register_response(self)
        if new and self._get_param("Tags"):
            tags_of(backend.targets[dimension][resource_id]).update(self._get_param("Tags"))
        return answer

    def register_scalable_target(self: Any, namespace: str, r_id: str, dimension: str, *args: Any,
                                 **kwargs: Any) -> Any:
        target = original_register(self, namespace, r_id, dimension, *args, **kwargs)
        if namespace == "ecs" and dimension == ECS_DIMENSION:
            _, cluster, name = r_id.split("/")
            [service], _ = self.ecs_backend.describe_services(cluster, [name])
            inside = min(max(service.desired_count, target.min_capacity), target.max_capacity)
            if inside != service.desired_count:
                _set_desired(self.ecs_backend, cluster, name, inside)
        return target

    original_register_response = ApplicationAutoScalingResponse.register_scalable_target
    ApplicationAutoScalingResponse.register_scalable_target = register_response
    ApplicationAutoScalingResponse.tag_resource = tag_resource
    ApplicationAutoScalingResponse.list_tags_for_resource = list_tags_for_resource
    ApplicationAutoScalingResponse.untag_resource = untag_resource
    ApplicationAutoscalingBackend.register_scalable_target = register_scalable_target


def install_service_auto_scaling() -> None:
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.ecs.models import EC2ContainerServiceBackend

    original_describe = EC2ContainerServiceBackend.describe_services

    def describe_services(self: Any, cluster: str, names: list[str]) -> Any:
        services, failures = original_describe(self, cluster, names)
        scaling = applicationautoscaling_backends[self.account_id][self.region_name]
        for service in services:
            target = _ecs_target(scaling, service.cluster_name, service.name)
            if target is None or service.status != "ACTIVE":
                continue
            if service.desired_count < target.min_capacity and not _suspended(target, "DynamicScalingOutSuspended"):
                _set_desired(self, service.cluster_name, service.name, target.min_capacity)
            elif service.desired_count > target.max_capacity and not _suspended(target, "DynamicScalingInSuspended"):
                _set_desired(self, service.cluster_name, service.name, target.max_capacity)
        return services, failures

    EC2ContainerServiceBackend.describe_services = describe_services


def install_event_source_mapping_not_found() -> None:
    from moto.awslambda.responses import LambdaResponse

    original_update = LambdaResponse.update_event_source_mapping

    def update_event_source_mapping(self: Any) -> Any:
        if not self.backend.get_event_source_mapping(self.path.split("/")[-1]):
            raise _error("ResourceNotFoundException", "The resource you requested does not exist.", 404)
        return original_update(self)

    LambdaResponse.update_event_source_mapping = update_event_source_mapping


def install() -> None:
    """Patch moto (called once, before the server starts)."""
    install_scalable_target_tags()
    install_service_auto_scaling()
    install_event_source_mapping_not_found()
