#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lambda_concurrency
short_description: Stop Lambda functions (reserved concurrency 0) and resume them to their exact previous value
description:
  - Acts on every function selected by O(names), O(prefixes) and O(tags) (their union) in one call, concurrently
    on a bounded thread pool with botocore's adaptive retries, and reports each function with its value before
    and after.
  - O(state=stopped) records the function's reserved concurrency (a number, or V(none) when unreserved) in the
    tag C(runbook:previous-reserved-concurrency) on the function itself, with C(runbook:stopped-at), and then sets
    the reserved concurrency to 0. A function already stopped by an earlier run keeps its first record; a second
    shutdown never overwrites the recorded value with 0. A function at 0 with no record was stopped by someone
    else; it is left alone and a resume leaves it too.
  - O(state=resumed) restores the recorded value (deleting the reservation when it was V(none)) and then removes
    the tags. A function changed by someone since the shutdown keeps its new value; only the record is removed.
  - With O(event_source_mappings) (the default), O(state=stopped) first disables every event source mapping of the
    functions (SQS, Kinesis, DynamoDB streams, ...; UpdateEventSourceMapping C(Enabled=false)), so records wait in
    their source rather than being polled into a function at 0 and retried or dropped. Each mapping enabled before
    gets the record C(runbook:previous-enabled=True) and C(runbook:stopped-at) on the mapping itself; one already
    disabled is left alone and stays disabled after a resume. O(state=resumed) enables again, after the functions
    are restored, exactly the mappings that carry a record.
  - O(state=present) sets the reserved concurrency to O(reserved) (scaling), recording the value it replaces in
    C(runbook:scale-previous-reserved-concurrency); O(state=undone) puts that value back and removes the record.
    A function stopped by a shutdown is refused until it is resumed.
  - Every selector must match; an unknown name, a prefix or tag that matches nothing fails before any change.
    When some functions fail during the run, the others are still acted on, the failures are listed, and the
    task fails.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
  - runbook.recovery.aws.lambda_selection
  - runbook.recovery.aws.planned
attributes:
  check_mode:
    support: full
    description: Reads every function and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Each function's reserved concurrency before and after.
options:
  state:
    description: V(stopped), V(resumed), V(undone), or V(present) (with O(reserved)).
    type: str
    choices: [stopped, resumed, present, undone]
    required: true
  reserved:
    description: Reserved concurrency for O(state=present).
    type: int
  event_source_mappings:
    description:
      - With O(state=stopped) and O(state=resumed), also disable (and enable again) the functions' event source
        mappings. Scaling (O(state=present), O(state=undone)) never touches them.
    type: bool
    default: true
    version_added: 0.2.0
"""

EXAMPLES = r"""
- name: Stop every function of the chatbot (plan first with --check)
  runbook.recovery.lambda_concurrency:
    prefixes: [ChatbotLambdaStack-]
    state: stopped

- name: Bring them back exactly as they were
  runbook.recovery.lambda_concurrency:
    prefixes: [ChatbotLambdaStack-]
    state: resumed

- name: Reserve 50 for the recommendation function
  runbook.recovery.lambda_concurrency:
    names: [sake-sensei-recommendation]
    state: present
    reserved: 50
"""

RETURN = r"""
resources:
  description: One entry per function, in name order, after one per event source mapping (before them on resume).
  returned: always
  type: list
  elements: dict
  sample: [{"resource": "ChatbotLambdaStack-WebSocketHandler <- sqs:chat-messages (5a5df587-e315-4cd8-84a6-ed17545359c7)",
             "arn": "arn:aws:lambda:us-east-1:123456789012:event-source-mapping:5a5df587-e315-4cd8-84a6-ed17545359c7",
             "action": "stop", "changed": true, "before": {"enabled": true}, "after": {"enabled": false},
             "note": "previous value recorded: enabled=True"},
            {"resource": "ChatbotLambdaStack-WebSocketHandler", "arn": "arn:aws:lambda:us-east-1:123456789012:function:ChatbotLambdaStack-WebSocketHandler",
            "action": "stop", "changed": true, "before": {"reserved_concurrency": 7}, "after": {"reserved_concurrency": 0},
            "note": "previous value recorded: reserved_concurrency=7"}]
counts:
  description: Functions per action (stop, already_stopped, resume, not_stopped, set, unchanged, failed).
  returned: always
  type: dict
  sample: {"stop": 3, "already_stopped": 1}
failed_resources:
  description: Names of the functions that failed.
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
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import (
    LAMBDA_SELECTION_SPEC,
    EventSourceMapping,
    LambdaConcurrency,
    resolve_functions,
    resolve_mappings,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, from_plan_kinds
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values_extra import run_steps


def main():
    argument_spec = resources_argument_spec(
        **LAMBDA_SELECTION_SPEC,
        reserved=dict(type="int"),
        event_source_mappings=dict(type="bool", default=True),
        planned=dict(type="list", elements="dict"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ["reserved"])])
    p = module.params
    with aws_failures_reported(module, "finding the Lambda functions"):
        require_non_negative(p, "reserved")
        clients = Clients(p, p["workers"])
        function_kind, mapping_kind = LambdaConcurrency(clients), EventSourceMapping(clients)
        with_mappings = p["event_source_mappings"] and p["state"] in ("stopped", "resumed")
        known = {}
        if p["planned"] is not None:
            (functions, mappings), known = from_plan_kinds(p["planned"], function_kind.noun,
                                                           mapping_kind.noun if with_mappings else None)
        else:
            functions = resolve_functions(clients, p["names"], p["prefixes"], p["tags"])
            mappings = resolve_mappings(clients, functions) if with_mappings else []
    # The pollers stop before the functions, and start again after them.
    steps = [(function_kind, functions, {"wanted": {"reserved_concurrency": p["reserved"]}, "known": known}),
             (mapping_kind, mappings, {"known": known})]
    finish(module, run_steps(steps[::-1] if p["state"] == "stopped" else steps, p["state"], module.check_mode))


if __name__ == "__main__":
    main()
