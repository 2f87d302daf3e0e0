#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: aws_health
short_description: AWS findings for the health sweep - emergency shutdowns still in force
description:
  - Finds every Lambda function of the region that carries an emergency shutdown record (the
    C(runbook:stopped-at) tag) and every disabled event source mapping that carries one, and reads the API stages
    (their routes' and methods' own limits included) and ECS services named in O(stages) and O(ecs_services) (the
    inventory's emergency scopes), with each service's Application Auto Scaling target.
  - A resource stopped by a shutdown is a finding C(shutdown_age_hours) (a warning at once, critical after a day
    by default), so nobody forgets the resume. A named stage or service at zero with no record is a warning
    C(stopped_without_record); it was stopped by hand and a resume cannot restore it (a disabled event source
    mapping without a record is not, since many are disabled on purpose).
  - Never changes anything; an unreachable API is a critical finding, not a failure.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  stages:
    description: API stages to inspect, as for runbook.recovery.apigateway_stage_throttle (C(api), C(stage), C(type)).
    type: list
    elements: dict
    default: []
  ecs_services:
    description: ECS services to inspect, as C({cluster, name}).
    type: list
    elements: dict
    default: []
  thresholds:
    description: "Override for C(shutdown_age_hours), as C({shutdown_age_hours: {warning: 0, critical: 24}})."
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Anything still shut down?
  runbook.recovery.aws_health:
    stages: [{api: chatbot-websocket, stage: prod}]
    ecs_services: [{cluster: chat-cluster, name: chat-backend}]
"""

RETURN = r"""
findings:
  description: One entry per finding, in the health sweep's format.
  returned: always
  type: list
  elements: dict
  sample: [{"target": "lambda:ChatbotLambdaStack-WebSocketHandler", "check": "shutdown_age_hours", "value": 0.25,
            "severity": "warning", "message": "stopped by an emergency shutdown since 2026-11-23T05:12:03Z (...)"}]
worst:
  description: The worst severity.
  returned: always
  type: str
  sample: warning
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_health import aws_findings
from ansible_collections.runbook.recovery.plugins.module_utils.health import merge_thresholds, worst


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        stages=dict(type="list", elements="dict", default=[]),
        ecs_services=dict(type="list", elements="dict", default=[]),
        thresholds=dict(type="dict", default={}),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "inspecting AWS"):
        thresholds = merge_thresholds(p["thresholds"])
        findings = aws_findings(Clients(p), p["stages"], p["ecs_services"], thresholds)
    module.exit_json(changed=False, findings=findings, worst=worst(findings))


if __name__ == "__main__":
    main()
