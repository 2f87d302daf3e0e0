#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lambda_capacity
short_description: Raise (or lower) Lambda memory, timeout, storage, reserved and provisioned concurrency, and undo it exactly
description:
  - Changes only the settings named. C(UpdateFunctionConfiguration) receives just those members, so VPC configuration,
    environment variables, role, layers and every other setting stay as they are (unlike C(amazon.aws.lambda),
    which resets what it is not given).
  - Retries C(ResourceConflictException) (an update already in progress) with backoff, then waits until the
    function's C(LastUpdateStatus) is C(Successful); a C(Failed) update fails the function with AWS's reason.
  - O(state=present) records the values it replaces in C(runbook:scale-previous-*) tags on the function (a second
    scaling keeps the first record); O(state=undone) writes them back and removes the tags.
  - Acts on every function selected by O(names), O(prefixes) and O(tags), concurrently; a selector matching nothing,
    or a value outside what Lambda accepts, fails before any change. A function stopped by an emergency shutdown is
    refused.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
  - runbook.recovery.aws.planned
  - runbook.recovery.aws.lambda_selection
attributes:
  check_mode:
    support: full
    description: Reads every function and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Each function's settings before and after.
options:
  state:
    description: V(present) to set the settings named, V(undone) to put back what a scaling replaced.
    type: str
    choices: [present, undone]
    default: present
  memory_mb:
    description: Memory in MB (128-10240).
    type: int
  timeout_s:
    description: Timeout in seconds (1-900).
    type: int
  ephemeral_storage_mb:
    description: Size of /tmp in MB (512-10240).
    type: int
  reserved_concurrency:
    description: Reserved concurrency (0 or more).
    type: int
  provisioned_concurrency:
    description: Provisioned concurrency of the alias or version O(qualifier).
    type: int
  qualifier:
    description:
      - Alias or published version whose provisioned concurrency is set (and read, for an undo).
      - V($LATEST), or an alias pointing at V($LATEST), is refused before any change, as AWS refuses it.
    type: str
"""

EXAMPLES = r"""
- name: Give the recommendation function more room
  runbook.recovery.lambda_capacity:
    names: [sake-sensei-recommendation]
    memory_mb: 2048
    timeout_s: 30

- name: Put back what the scaling changed
  runbook.recovery.lambda_capacity:
    names: [sake-sensei-recommendation]
    state: undone
"""

RETURN = r"""
resources:
  description: One entry per function.
  returned: always
  type: list
  elements: dict
  sample: [{"resource": "sake-sensei-recommendation", "action": "set", "changed": true,
            "before": {"memory_mb": 256, "timeout_s": 30, "ephemeral_storage_mb": 512, "reserved_concurrency": 5},
            "after": {"memory_mb": 2048, "timeout_s": 30, "ephemeral_storage_mb": 512, "reserved_concurrency": 5},
            "note": "previous memory_mb=256 recorded for undo"}]
counts:
  description: Functions per action (set, unchanged, undo, not_scaled, failed).
  returned: always
  type: dict
  sample: {"set": 1}
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
    LambdaCapacity,
    check_lambda_limits,
    check_qualifier,
    resolve_functions,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, from_plan, run

SETTINGS = ("memory_mb", "timeout_s", "ephemeral_storage_mb", "reserved_concurrency", "provisioned_concurrency")


def main():
    argument_spec = resources_argument_spec(
        states=("present", "undone"),
        **LAMBDA_SELECTION_SPEC,
        qualifier=dict(type="str"),
        **{setting: dict(type="int") for setting in SETTINGS},
        planned=dict(type="list", elements="dict"),
    )
    argument_spec["state"].update(required=False, default="present")
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    wanted = {setting: p[setting] for setting in SETTINGS}
    with aws_failures_reported(module, "finding the Lambda functions"):
        if p["state"] == "present" and all(value is None for value in wanted.values()):
            raise RunbookError(f"name at least one setting to change: {', '.join(SETTINGS)}.")
        check_lambda_limits(wanted)
        if p["provisioned_concurrency"] is not None and not p["qualifier"]:
            raise RunbookError("provisioned_concurrency applies to an alias or a published version: give qualifier.")
        check_qualifier(p["qualifier"])
        clients = Clients(p, p["workers"])
        kind, known = LambdaCapacity(clients, p["qualifier"]), {}
        if p["planned"] is not None:
            functions, known = from_plan(kind.noun, p["planned"])
        else:
            functions = resolve_functions(clients, p["names"], p["prefixes"], p["tags"])
    finish(module, run(kind, functions, p["state"], module.check_mode, wanted=wanted, known=known))


if __name__ == "__main__":
    main()
