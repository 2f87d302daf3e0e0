#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cfn_failed_stacks
short_description: Deletes the CloudFormation stacks a failed deploy left behind, so the next deploy can run
description:
  - Finds the stacks in O(statuses) (by default ROLLBACK_COMPLETE, ROLLBACK_FAILED, CREATE_FAILED and DELETE_FAILED)
    whose names start with one of O(prefixes), reads why each failed from its events, deletes it and waits until it is
    gone.
  - A stack in DELETE_FAILED is deleted again with the resources that failed to delete retained (AWS's
    C(RetainResources)); a delete that fails on the way is retried once that way. Retained resources are named in the
    result - they still exist and need a look (a bucket that is not empty, say).
  - Stacks in any other state (CREATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE, anything in progress) are never touched.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
attributes:
  check_mode:
    support: full
    description: Lists the failed stacks, why they failed and what would be deleted or retained; deletes nothing.
  diff_mode:
    support: none
    description: The result lists every stack and its fix.
options:
  prefixes:
    description: Only stacks whose name starts with one of these; every failed stack of the region when empty.
    type: list
    elements: str
    default: []
  statuses:
    description: The stack statuses that count as failed and left behind.
    type: list
    elements: str
    choices: [ROLLBACK_COMPLETE, ROLLBACK_FAILED, CREATE_FAILED, DELETE_FAILED]
    default: [ROLLBACK_COMPLETE, ROLLBACK_FAILED, CREATE_FAILED, DELETE_FAILED]
  wait_timeout:
    description: Seconds to wait for each stack's deletion.
    type: int
    default: 1800
"""

EXAMPLES = r"""
- name: Clear the failed BetterBank stacks before a redeploy
  runbook.recovery.cfn_failed_stacks:
    prefixes: [betterbank-]
"""

RETURN = r"""
stacks:
  description: One row per failed stack, sorted by name.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "betterbank-card-api-dev", "status": "ROLLBACK_COMPLETE",
            "reason": "CardsBucket: Resource handler returned message: \"bucket name is not available\"",
            "retained": [], "fix": "delete", "result": "deleted", "changed": true,
            "stack_id": "arn:aws:cloudformation:us-east-1:123456789012:stack/betterbank-card-api-dev/1b2c"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_failures_reported,
    exit_with_rows,
    resources_argument_spec,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_cloudformation import (
    FAILED_STATES,
    clean,
    failed_stacks,
    plan,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative


def main():
    argument_spec = resources_argument_spec(
        states=(),
        prefixes=dict(type="list", elements="str", default=[]),
        statuses=dict(type="list", elements="str", choices=list(FAILED_STATES), default=list(FAILED_STATES)),
        wait_timeout=dict(type="int", default=1800),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "cleaning up failed stacks"):
        require_non_negative(p, "wait_timeout")
        clients = Clients(p, p["workers"])
        cfn = clients("cloudformation")
        rows = [plan(cfn, summary) for summary in failed_stacks(cfn, p["prefixes"], p["statuses"] or FAILED_STATES)]
        if not module.check_mode:
            rows = clean(cfn, rows, p["wait_timeout"], clients.workers)
    exit_with_rows(module, dict(changed=any(r["changed"] for r in rows), stacks=rows), rows,
                   "failed stacks could not be deleted")


if __name__ == "__main__":
    main()
