#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dynamodb_capacity
short_description: Switch DynamoDB tables to on-demand or raise their capacity, wait until it holds, undo exactly
description:
  - Sets the billing mode and the provisioned read and write capacity of tables and their global secondary
    indexes; changes only what is named, then waits until the table and every index are C(ACTIVE).
  - AWS's rules become clear errors before any change; a fifth switch to C(PAY_PER_REQUEST) in a rolling 24 hours
    (AWS allows four; a switch to C(PROVISIONED), such as the undo of an incident switch, is allowed at any time),
    capacities on an on-demand table, capacities outside 1-40000 units, an index the table does not have.
  - The switches to on-demand counted are those this module made (their times, as AWS reports them, are kept in a
    C(runbook:on-demand-switches) tag on the table) and the last one C(DescribeTable) shows. A fifth switch after
    others made elsewhere is refused by AWS (C(LimitExceededException)); the failure then says which limit, when
    AWS says the next switch is possible, and that nothing was changed on the table (the scaling record written
    just before the call is removed).
  - O(state=present) records the values it replaces in C(runbook:scale-previous-*) tags on the table (leaving
    provisioned mode records the capacities too, so an undo can set them back); O(state=undone) writes them back
    and removes the tags.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
  - runbook.recovery.aws.planned
attributes:
  check_mode:
    support: full
    description: Reads every table and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Each table's settings before and after.
options:
  tables:
    description: Table names.
    type: list
    elements: str
    required: true
  state:
    description: V(present) to set what is named, V(undone) to put back what a scaling replaced.
    type: str
    choices: [present, undone]
    default: present
  billing_mode:
    description: V(PAY_PER_REQUEST) (on-demand) or V(PROVISIONED).
    type: str
    choices: [PAY_PER_REQUEST, PROVISIONED]
  read_capacity:
    description: Provisioned read capacity units of the table.
    type: int
  write_capacity:
    description: Provisioned write capacity units of the table.
    type: int
  indexes:
    description: "Capacity of global secondary indexes, as C({index name: {read_capacity: N, write_capacity: N}})."
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Stop throttling the sessions table
  runbook.recovery.dynamodb_capacity:
    tables: [chatbot-sessions]
    billing_mode: PAY_PER_REQUEST

- name: Raise provisioned capacity, index included
  runbook.recovery.dynamodb_capacity:
    tables: [sake-sensei-users]
    read_capacity: 50
    write_capacity: 20
    indexes:
      by-email: {read_capacity: 20, write_capacity: 5}
"""

RETURN = r"""
resources:
  description: One entry per table.
  returned: always
  type: list
  elements: dict
  sample: [{"resource": "chatbot-sessions", "action": "set", "changed": true,
            "before": {"billing_mode": "PROVISIONED", "read_capacity": 5, "write_capacity": 5},
            "after": {"billing_mode": "PAY_PER_REQUEST", "read_capacity": 5, "write_capacity": 5}}]
counts:
  description: Tables per action (set, unchanged, undo, not_scaled, failed).
  returned: always
  type: dict
  sample: {"set": 1}
failed_resources:
  description: The tables that failed or were refused.
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
from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import DynamoCapacity, resolve_tables
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, from_plan, run


def wanted_settings(params: dict) -> dict:
    wanted = {key: params[key] for key in ("billing_mode", "read_capacity", "write_capacity")}
    for index, capacities in params["indexes"].items():
        if not isinstance(capacities, dict) or set(capacities) - {"read_capacity", "write_capacity"}:
            raise RunbookError(f"indexes.{index} must be a dict with read_capacity and/or write_capacity.")
        for key, value in capacities.items():
            wanted[f"gsi/{index}/{key}"] = int(value)
    return wanted


def main():
    argument_spec = resources_argument_spec(
        states=("present", "undone"),
        tables=dict(type="list", elements="str", required=True),
        billing_mode=dict(type="str", choices=["PAY_PER_REQUEST", "PROVISIONED"]),
        read_capacity=dict(type="int"),
        write_capacity=dict(type="int"),
        indexes=dict(type="dict", default={}),
        planned=dict(type="list", elements="dict"),
    )
    argument_spec["state"].update(required=False, default="present")
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "finding the DynamoDB tables"):
        wanted = wanted_settings(p)
        if p["state"] == "present" and all(value is None for value in wanted.values()):
            raise RunbookError("name something to change: billing_mode, read_capacity, write_capacity or indexes.")
        clients = Clients(p, p["workers"])
        kind, known = DynamoCapacity(clients), {}
        if p["planned"] is not None:
            tables, known = from_plan(kind.noun, p["planned"])
        else:
            tables = resolve_tables(clients, p["tables"])
    finish(module, run(kind, tables, p["state"], module.check_mode, wanted=wanted, known=known))


if __name__ == "__main__":
    main()
