#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: apigateway_stage_throttle
short_description: Throttle API Gateway stages to zero and restore their previous throttling
description:
  - Acts on API Gateway v2 stages (WebSocket and HTTP APIs; the stage's default route throttling and each route's
    own, C(RouteSettings)) and REST API stages (the C(*/*) method throttling and each other C(methodSettings) path)
    in one call, concurrently, and reports each stage before and after.
  - O(state=stopped) records the stage's burst and rate limits (V(none) when not set) in the tags
    C(runbook:previous-throttling-burst-limit) and C(runbook:previous-throttling-rate-limit) on the stage itself,
    with C(runbook:stopped-at), then sets both to 0 so every request is refused with 429. A route or method with a
    limit of its own is not held by the stage's, so each limit it sets is recorded too
    (C(runbook:previous-throttling-burst-limit@sendMessage), C(...@GET /items) for the REST method C(~1items/GET);
    a character a tag key cannot hold is written C(=XX), C($connect) as C(=24connect)) and set to 0 in the same
    UpdateStage call. A stage stopped by an earlier run keeps its first record (a route that got limits since is
    recorded too).
  - O(state=resumed) restores every recorded limit in one UpdateStage call and removes the tags. AWS has no call
    that removes throttling from a stage once set, so a default limit that was not set is restored as the
    account-level limit (C(apigateway get-account)), which is what applied to the stage before; the result says so.
  - Each tag counts against AWS's 50 tags of a stage, two per route or method with limits of its own; a stage with
    more than the record can hold fails before any change to it.
  - O(state=present) sets the limits to O(burst_limit) and O(rate_limit), recording the values they replace
    (C(runbook:scale-previous-*)); O(state=undone) puts them back.
  - An API (by name or id) or stage that does not exist fails before any change.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
  - runbook.recovery.aws.planned
attributes:
  check_mode:
    support: full
    description: Reads every stage and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Each stage's limits before and after.
options:
  stages:
    description: The stages.
    type: list
    elements: dict
    required: true
    suboptions:
      api:
        description: API name or id.
        type: str
        required: true
      stage:
        description: Stage name.
        type: str
        required: true
      type:
        description: V(v2) for WebSocket and HTTP APIs, V(rest) for REST APIs.
        type: str
        choices: [v2, rest]
        default: v2
  state:
    description: V(stopped), V(resumed), V(undone), or V(present) (with O(burst_limit) and O(rate_limit)).
    type: str
    choices: [stopped, resumed, present, undone]
    required: true
  burst_limit:
    description: Burst limit for O(state=present).
    type: int
  rate_limit:
    description: Rate limit (requests per second) for O(state=present).
    type: float
"""

EXAMPLES = r"""
- name: Refuse every request to the chatbot's WebSocket API
  runbook.recovery.apigateway_stage_throttle:
    stages:
      - {api: chatbot-websocket, stage: prod}
      - {api: chatbot-admin, stage: prod, type: rest}
    state: stopped

- name: Restore the limits the stages had
  runbook.recovery.apigateway_stage_throttle:
    stages:
      - {api: chatbot-websocket, stage: prod}
    state: resumed
"""

RETURN = r"""
resources:
  description: One entry per stage.
  returned: always
  type: list
  elements: dict
  sample: [{"resource": "chatbot-websocket/prod", "arn": "arn:aws:apigateway:us-east-1::/apis/a1b2c3/stages/prod",
            "action": "stop", "changed": true, "before": {"burst_limit": 500, "rate_limit": 1000.0},
            "after": {"burst_limit": 0, "rate_limit": 0.0}, "note": "previous value recorded: burst_limit=500, rate_limit=1000.0"}]
counts:
  description: Stages per action.
  returned: always
  type: dict
  sample: {"stop": 2}
failed_resources:
  description: The stages that failed.
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
from ansible_collections.runbook.recovery.plugins.module_utils.aws_apigateway import StageThrottle, resolve_stages
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, from_plan, run


def main():
    argument_spec = resources_argument_spec(
        stages=dict(type="list", elements="dict", required=True, options=dict(
            api=dict(type="str", required=True),
            stage=dict(type="str", required=True),
            type=dict(type="str", choices=["v2", "rest"], default="v2"),
        )),
        burst_limit=dict(type="int"),
        rate_limit=dict(type="float"),
        planned=dict(type="list", elements="dict"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ["burst_limit", "rate_limit"])])
    p = module.params
    with aws_failures_reported(module, "finding the API stages"):
        require_non_negative(p, "burst_limit", "rate_limit")
        clients = Clients(p, p["workers"])
        kind, known = StageThrottle(clients), {}
        if p["planned"] is not None:
            stages, known = from_plan(kind.noun, p["planned"])
        else:
            stages = resolve_stages(clients, p["stages"])
    result = run(kind, stages, p["state"], module.check_mode, decide=kind.plan(p["state"]), known=known,
                 wanted={"burst_limit": p["burst_limit"], "rate_limit": p["rate_limit"]})
    finish(module, result)


if __name__ == "__main__":
    main()
