#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dynamodb_restore
short_description: Restore a DynamoDB table into a new table, check it, and point a Lambda function at it
description:
  - Restores O(table) from an on-demand backup or a point in time into a new table (default
    C(<table>-restored-<UTC time of the data>)), waits until it is C(ACTIVE), and counts its items exactly (a
    Scan); from a backup, the count must equal the backup's, or nothing is repointed.
  - With O(function) and O(variable), sets that one environment variable of the function to the restored table
    (every other variable is sent back unchanged), then checks the result (the variable reads back, and the item
    O(check_item) is in the restored table); a failed check puts the variable back as it was.
  - The source table is never deleted or changed. The same request names the same target table, so a rerun
    does not restore again (C(changed=false)).
  - A table, backup or function that does not exist, a restore time in the future or before the point-in-time
    window, or point-in-time recovery that is off, fails before anything changes.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Resolves the source and the target and reports the plan; changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  table:
    description: The source table.
    type: str
    required: true
  restore_from:
    description: V(latest-backup), V(pitr), or a backup name or ARN.
    type: str
    default: latest-backup
  restore_time:
    description: For V(pitr), an ISO time with a zone (V(2026-11-23T10:00:00Z)); the latest restorable time when unset.
    type: str
  target_table:
    description: Name of the new table; defaults to C(<table>-restored-<UTC time of the data>).
    type: str
  function:
    description: Lambda function to point at the restored table.
    type: str
  variable:
    description: The function's environment variable that names the table (for example V(SESSIONS_TABLE)).
    type: str
  check_item:
    description: "Key of an item that must be in the restored table for the repointing to stand, in DynamoDB's
      typed form (V({pk: {S: user-1}}))."
    type: dict
"""

EXAMPLES = r"""
- name: Restore the sessions table from its newest backup and point the handler at it
  runbook.recovery.dynamodb_restore:
    table: chatbot-sessions
    restore_from: latest-backup
    function: ChatbotLambdaStack-WebSocketHandler
    variable: SESSIONS_TABLE
"""

RETURN = r"""
source:
  description: What was restored from.
  returned: always
  type: dict
  sample: {"kind": "backup", "name": "chatbot-sessions-20261123T051200Z", "at": "2026-11-23T05:12:00.000000Z", "item_count": 2000}
target_table:
  description: The restored table.
  returned: always
  type: str
  sample: chatbot-sessions-restored-20261123T051200Z
item_count:
  description: Items in the restored table (null in check mode).
  returned: always
  type: int
  sample: 2000
repointed:
  description: Whether the function's variable now names the restored table.
  returned: always
  type: bool
  sample: true
previous_value:
  description: What the variable held before.
  returned: when function is given
  type: str
  sample: chatbot-sessions
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import (
    choose_source,
    count_items,
    restore,
    table_exists,
    target_name,
    wait_table_active,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import function_variables, set_variable
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now


def post_check(ddb, lam, function: str, variable: str, target: str, check_item: dict | None) -> str | None:
    """Why the repointed function is not right, or None."""
    now_set = function_variables(lam, function).get(variable)
    if now_set != target:
        return f"{variable} reads back as {now_set!r}, not {target!r}"
    if check_item and "Item" not in ddb.get_item(TableName=target, Key=check_item, ConsistentRead=True):
        return f"the item {check_item} is not in {target}"
    return None


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        table=dict(type="str", required=True),
        restore_from=dict(type="str", default="latest-backup"),
        restore_time=dict(type="str"),
        target_table=dict(type="str"),
        function=dict(type="str"),
        variable=dict(type="str"),
        check_item=dict(type="dict"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=[("function", "variable")])
    p = module.params
    result = {"changed": False, "repointed": False}
    with aws_failures_reported(module, "restoring DynamoDB"):
        clients = Clients(p)
        ddb, now = clients("dynamodb"), utc_now()
        source = choose_source(ddb, p["table"], p["restore_from"], p["restore_time"], now)
        target = p["target_table"] or target_name(p["table"], source, now)
        if target == p["table"]:
            raise RunbookError("target_table is the source table: a restore always goes into a new table.")
        variables = function_variables(clients("lambda"), p["function"]) if p["function"] else {}
        result.update(source={**source, "at": isoformat(source["at"]) if source["at"] else None},
                      target_table=target, item_count=None)
        if p["function"]:
            result["previous_value"] = variables.get(p["variable"])
        exists = table_exists(ddb, target)
        if module.check_mode:
            result.update(changed=not exists or result.get("previous_value", target) != target,
                          msg=f"would restore {p['table']} from {source['name']} into {target}" if not exists
                          else f"{target} is already restored")
            module.exit_json(**result)
        if exists:
            wait_table_active(ddb, target)
        else:
            restore(ddb, p["table"], source, target)
            result["changed"] = True
        result["item_count"] = count_items(ddb, target)
        expected = source.get("item_count")
        if source["kind"] == "backup" and expected is not None and result["item_count"] != expected:
            raise RunbookError(f"{target} holds {result['item_count']} items but the backup recorded {expected}: "
                               "nothing was repointed; the restored table is kept for inspection.", **result)
        if p["function"] and variables.get(p["variable"]) != target:
            lam = clients("lambda")
            set_variable(lam, p["function"], variables, p["variable"], target)
            result.update(changed=True, repointed=True)
            problem = post_check(ddb, lam, p["function"], p["variable"], target, p["check_item"])
            if problem:
                previous = result["previous_value"]
                set_variable(lam, p["function"], variables, p["variable"], previous)
                result.update(repointed=False, rolled_back=True)
                raise RunbookError(f"the check after repointing failed ({problem}): {p['variable']} of "
                                   f"{p['function']} is back to {previous!r}; {target} is kept for inspection.",
                                   **result)
        elif p["function"]:
            result["repointed"] = True
    module.exit_json(msg=f"{target} restored from {source['name']} ({result['item_count']} items)"
                     + (f"; {p['variable']} of {p['function']} names it" if result["repointed"] else ""), **result)


if __name__ == "__main__":
    main()
