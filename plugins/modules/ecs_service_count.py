#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ecs_service_count
short_description: Scale ECS services to zero and back to their exact previous desired count, or to N
description:
  - Acts on many ECS services in one call, concurrently, and reports each with its desired count before and after.
  - O(state=stopped) records the desired count in the tag C(runbook:previous-desired-count) on the service itself,
    with C(runbook:stopped-at), then sets the desired count to 0. A service stopped by an earlier run keeps its
    first record.
  - With O(auto_scaling) (the default), O(state=stopped) then holds each service's Application Auto Scaling
    target (C(ecs:service:DesiredCount)) at zero, since auto scaling would otherwise bring the service back from 0
    within minutes. One RegisterScalableTarget sets both C(MinCapacity) and C(MaxCapacity) to 0 (no policy can scale
    out, and AWS itself moves the service into the new range) and suspends every scaling activity
    (C(SuspendedState), so a scheduled action cannot raise the range during the incident). The minimum, maximum and
    the three suspended flags the target had are recorded on the scalable target itself
    (C(runbook:previous-min-capacity), C(runbook:previous-max-capacity),
    C(runbook:previous-dynamic-scaling-in-suspended), ...). A service without a scalable target has nothing to hold.
  - O(state=resumed) restores the recorded desired count and removes the tags, then restores each auto scaling
    target exactly (after the count, so that the restored range does not move a service still at 0).
  - O(state=present) sets the desired count to O(desired_count), recording the count it replaces in
    C(runbook:scale-previous-desired-count); O(state=undone) puts it back. A service stopped by a shutdown is
    refused until it is resumed.
  - A cluster or service that does not exist fails before any change.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
  - runbook.recovery.aws.planned
attributes:
  check_mode:
    support: full
    description: Reads every service and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Each service's desired count before and after.
options:
  services:
    description: The services.
    type: list
    elements: dict
    required: true
    suboptions:
      cluster:
        description: Cluster name or ARN.
        type: str
        required: true
      name:
        description: Service name.
        type: str
        required: true
  state:
    description: V(stopped), V(resumed), V(undone), or V(present) (with O(desired_count)).
    type: str
    choices: [stopped, resumed, present, undone]
    required: true
  desired_count:
    description: Desired count for O(state=present).
    type: int
  auto_scaling:
    description:
      - With O(state=stopped) and O(state=resumed), also hold (and restore) the services' Application Auto Scaling
        targets. Scaling (O(state=present), O(state=undone)) never touches them.
    type: bool
    default: true
    version_added: 0.2.0
"""

EXAMPLES = r"""
- name: Stop the chat backend
  runbook.recovery.ecs_service_count:
    services:
      - {cluster: chat-cluster, name: chat-backend}
    state: stopped

- name: Run 6 tasks of it
  runbook.recovery.ecs_service_count:
    services:
      - {cluster: chat-cluster, name: chat-backend}
    state: present
    desired_count: 6
"""

RETURN = r"""
resources:
  description: One entry per service.
  returned: always
  type: list
  elements: dict
  sample: [{"resource": "chat-cluster/chat-backend", "arn": "arn:aws:ecs:us-east-1:123456789012:service/chat-cluster/chat-backend",
            "action": "stop", "changed": true, "before": {"desired_count": 3}, "after": {"desired_count": 0},
            "note": "previous value recorded: desired_count=3"},
            {"resource": "service/chat-cluster/chat-backend",
             "arn": "arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/0123abcd",
             "action": "stop", "changed": true,
             "before": {"min_capacity": 2, "max_capacity": 6, "dynamic_scaling_in_suspended": false,
                        "dynamic_scaling_out_suspended": false, "scheduled_scaling_suspended": false},
             "after": {"min_capacity": 0, "max_capacity": 0, "dynamic_scaling_in_suspended": true,
                       "dynamic_scaling_out_suspended": true, "scheduled_scaling_suspended": true}}]
counts:
  description: Services per action.
  returned: always
  type: dict
  sample: {"stop": 1}
failed_resources:
  description: The services that failed.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_failures_reported,
    resources_argument_spec,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_ecs import (
    EcsAutoScaling,
    EcsDesiredCount,
    resolve_scaling_targets,
    resolve_services,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, from_plan_kinds
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values_extra import run_steps


def main():
    argument_spec = resources_argument_spec(
        services=dict(type="list", elements="dict", required=True, options=dict(
            cluster=dict(type="str", required=True),
            name=dict(type="str", required=True),
        )),
        desired_count=dict(type="int"),
        auto_scaling=dict(type="bool", default=True),
        planned=dict(type="list", elements="dict"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ["desired_count"])])
    p = module.params
    with aws_failures_reported(module, "finding the ECS services"):
        require_non_negative(p, "desired_count")
        clients = Clients(p, p["workers"])
        service_kind, target_kind = EcsDesiredCount(clients), EcsAutoScaling(clients)
        with_targets = p["auto_scaling"] and p["state"] in ("stopped", "resumed")
        known = {}
        if p["planned"] is not None:
            (services, targets), known = from_plan_kinds(p["planned"], service_kind.noun,
                                                         target_kind.noun if with_targets else None)
        else:
            services = resolve_services(clients, p["services"])
            targets = resolve_scaling_targets(clients, services) if with_targets else []
    # The count first either way: its record is taken before auto scaling can move it, and it is restored while
    # the target still holds the range at 0 (restoring the range first would move the service off 0).
    finish(module, run_steps([(service_kind, services, {"wanted": {"desired_count": p["desired_count"]},
                                                        "known": known}),
                              (target_kind, targets, {"known": known})], p["state"], module.check_mode))


if __name__ == "__main__":
    main()
