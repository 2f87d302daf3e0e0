#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ecs_deployment
short_description: Restart ECS services, or roll them back to an earlier task definition revision, and wait for a steady state
description:
  - O(state=restarted) starts a new deployment of the task definition each service runs (C(forceNewDeployment)), so
    every task is replaced. It is an action, not a state to reach; every run restarts, and reports a change.
  - O(state=rolled_back) puts each service on another task definition revision. Without O(task_definition) it goes
    to the newest ACTIVE revision of the same family older than the one running (INACTIVE ones are skipped and
    named); with it, to that revision (already running is no change). Before the change, the revision replaced and
    the revision set are recorded on the service in the tags C(runbook:rollback-previous-task-definition),
    C(runbook:rollback-task-definition) and C(runbook:rolled-back-at); while the service still runs the revision set,
    a second rollback goes back to the one recorded, so it undoes the first.
  - Refused for every service before any change, with what to do - a revision that does not exist, an INACTIVE
    (deregistered) revision, which ECS does not put a service on, and no ACTIVE revision to go back to.
  - Then waits, for each service, until its new deployment is the only one and every task runs, or fails naming
    the deployment - ECS marked it FAILED (the deployment circuit breaker), another deployment replaced it, or
    O(wait_timeout) passed.
  - Acts on many services in one call, concurrently; a cluster or service that does not exist fails before any
    change.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
attributes:
  check_mode:
    support: full
    description: Reads every service and its task definition family, and reports from which revision to which it would
      go (or which it would restart); refusals fail here too. Writes nothing.
  diff_mode:
    support: full
    description: Each service's task definition before and after.
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
    description: V(restarted) (a new deployment of the same task definition) or V(rolled_back).
    type: str
    choices: [restarted, rolled_back]
    required: true
  task_definition:
    description:
      - For O(state=rolled_back), the revision to go to - a revision number of the family each service runs (V(3)),
        V(family:revision), or its ARN. Unset - the previous ACTIVE revision, or the recorded one (undo).
      - V(recorded) - the revision the last rollback set, as recorded on each service. It changes nothing while
        each still runs it (in check mode, a check that the rollback holds); a service never rolled back fails.
    type: str
  wait_timeout:
    description: Seconds to wait for each service's deployment to reach a steady state; V(0) does not wait.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Roll the chat backend back to its previous task definition revision
  runbook.recovery.ecs_deployment:
    services:
      - {cluster: chat-cluster, name: chat-backend}
    state: rolled_back

- name: Put it on revision 2 of its family
  runbook.recovery.ecs_deployment:
    services:
      - {cluster: chat-cluster, name: chat-backend}
    state: rolled_back
    task_definition: "2"

- name: Replace every task of it, on the revision it runs
  runbook.recovery.ecs_deployment:
    services:
      - {cluster: chat-cluster, name: chat-backend}
    state: restarted
    wait_timeout: 900
"""

RETURN = r"""
resources:
  description: One entry per service.
  returned: always
  type: list
  elements: dict
  sample: [{"resource": "chat-cluster/chat-backend", "arn": "arn:aws:ecs:us-east-1:123456789012:service/chat-cluster/chat-backend",
            "action": "rollback", "changed": true, "before": {"task_definition": "chat-backend:3"},
            "after": {"task_definition": "chat-backend:2"},
            "note": "the newest ACTIVE one before chat-backend:3; chat-backend:3 recorded for undo"}]
counts:
  description: Services per action (rollback, undo, unchanged, restart, failed).
  returned: always
  type: dict
  sample: {"rollback": 1}
failed_resources:
  description: The services that failed.
  returned: always
  type: list
  elements: str
  sample: []
lines:
  description: One line per service, as a person reads a plan.
  returned: always
  type: list
  elements: str
  sample: ["rollback        ECS service chat-cluster/chat-backend: task_definition=chat-backend:3 -> task_definition=chat-backend:2 (...)"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_failures_reported,
    resources_argument_spec,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_ecs import EcsDeployment, resolve_services
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, run


def main():
    argument_spec = resources_argument_spec(
        states=("restarted", "rolled_back"),
        services=dict(type="list", elements="dict", required=True, options=dict(
            cluster=dict(type="str", required=True),
            name=dict(type="str", required=True),
        )),
        task_definition=dict(type="str"),
        wait_timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "finding the ECS services"):
        require_non_negative(p, "wait_timeout")
        clients = Clients(p, p["workers"])
        services = resolve_services(clients, p["services"])
    kind = EcsDeployment(clients, p["state"], p["task_definition"], p["wait_timeout"])
    finish(module, run(kind, services, p["state"], module.check_mode, decide=kind.plan))


if __name__ == "__main__":
    main()
