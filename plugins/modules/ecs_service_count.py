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
  - O(state=resumed) restores the recorded desired count and removes the tags.
  - O(state=present) sets the desired count to O(desired_count), recording the count it replaces in
    C(runbook:scale-previous-desired-count); O(state=undone) puts it back. A service stopped by a shutdown is
    refused until it is resumed.
  - A cluster or service that does not exist fails before any change.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
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
            "note": "previous value recorded: desired_count=3"}]
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
from ansible_collections.runbook.recovery.plugins.module_utils.aws_ecs import EcsDesiredCount, resolve_services
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, run


def main():
    argument_spec = resources_argument_spec(
        services=dict(type="list", elements="dict", required=True, options=dict(
            cluster=dict(type="str", required=True),
            name=dict(type="str", required=True),
        )),
        desired_count=dict(type="int"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ["desired_count"])])
    p = module.params
    with aws_failures_reported(module, "finding the ECS services"):
        require_non_negative(p, "desired_count")
        clients = Clients(p, p["workers"])
        services = resolve_services(clients, p["services"])
    result = run(EcsDesiredCount(clients), services, p["state"], module.check_mode,
                 wanted={"desired_count": p["desired_count"]})
    finish(module, result)


if __name__ == "__main__":
    main()
