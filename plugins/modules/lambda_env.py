#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lambda_env
short_description: Set or remove a Lambda function's environment variables by name, every other one kept, with an exact undo
description:
  - O(state=present) sets O(variables) and removes O(unset) on each of O(functions); every other variable is kept.
    AWS replaces the whole variable map on each update, so the map is read and written back with its C(RevisionId);
    when anyone changed the function in between, AWS refuses the write and it is read, merged and written again,
    keeping their change.
  - Before the first change, what each variable held (or that it was not set) is recorded in SSM Parameter Store as
    a SecureString, C(/runbook/lambda-env/FUNCTION) (values can be secrets), with a digest of the value set; the
    function is tagged C(runbook:env-record), C(runbook:env-set-at) and, with O(lift_after), C(runbook:env-expires-at).
  - O(state=undone) puts every recorded variable back to what it held before and removes the record. A variable
    changed since by someone else is refused, named, unless O(force).
  - O(state=expired) undoes every record whose expiry has passed (the scheduled DAG C(lift_expired)); a record
    of a function that no longer exists is removed.
  - Values never appear in the result or a message, except those of the variables named in O(show_values).
version_added: 0.4.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reads the functions and their records and says per variable what would change; writes nothing.
  diff_mode:
    support: none
    description: The plan and the result list each variable before and after (values masked), not a diff.
options:
  functions:
    description: Function names. Required with O(state=present) and O(state=undone).
    type: list
    elements: str
    default: []
    aliases: [function]
  state:
    description: C(present) sets, C(undone) puts back what was recorded, C(expired) undoes the records whose time is up.
    type: str
    choices: [present, undone, expired]
    default: present
  variables:
    description: Variables to set, a mapping of name to value; values are text.
    type: dict
    default: {}
  unset:
    description: Variables to remove.
    type: list
    elements: str
    default: []
  lift_after:
    description: Undo the change after this long (C(30m), C(2h)); the scheduled DAG C(lift_expired) does it.
    type: str
  force:
    description: With O(state=undone), put back what was recorded even over a variable someone changed since.
    type: bool
    default: false
  show_values:
    description: Variables whose values may be shown (they are not secrets).
    type: list
    elements: str
    default: [LOG_LEVEL, POWERTOOLS_LOG_LEVEL]
  actor:
    description: Who asked (recorded in the record).
    type: str
    default: ""
  wait_seconds:
    description: How long to wait for each update to finish (LastUpdateStatus Successful).
    type: int
    default: 300
"""

EXAMPLES = r"""
- name: Debug logging on chat-handler for 30 minutes, every other variable kept
  runbook.recovery.lambda_env:
    functions: [chat-handler]
    variables: {LOG_LEVEL: DEBUG}
    lift_after: 30m

- name: Put back exactly what that changed
  runbook.recovery.lambda_env:
    functions: [chat-handler]
    state: undone
"""

RETURN = r"""
functions:
  description: One row per function, with per variable its action and the value before and after (masked).
  returned: always
  type: list
  elements: dict
  sample: [{"function": "chat-handler", "changed": true, "expires_at": "2026-12-08T02:00:00.000000Z",
            "variables": [{"name": "LOG_LEVEL", "action": "set", "before": "'INFO'", "after": "'DEBUG'"}]}]
msg:
  description: What was done, a line per function.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
    delete_parameter,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda_env import (
    FunctionEnvironment,
    check_changes,
    due,
    expiry,
    record_name,
    recorded_functions,
    set_variables,
    undo_variables,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, utc_now


def line(row: dict, check_mode: bool) -> str:
    would = "would " if check_mode else ""
    changes = [v for v in row["variables"] if v["action"] != "unchanged"]
    if row.get("gone"):
        return f"{row['function']}: the function no longer exists; its record {would}removed"
    if not changes:
        if row.get("recorded") is False:
            return f"{row['function']}: no change of lambda-env.yml in force, nothing to put back"
        lift = f" (lifted at {row['expires_at']})" if row.get("expires_at") else ""
        return f"{row['function']}: already as asked{lift}"
    verbs = {"set": "set", "unset": "remove", "restore": "put back", "conflict": "put back over a later change"}
    parts = [f"{would}{verbs[v['action']]} {v['name']} ({v['before']} -> {v['after']})" for v in changes]
    lift = f"; lifted at {row['expires_at']}" if row.get("expires_at") else ""
    return f"{row['function']}: {', '.join(parts)}{lift}; every other variable kept"


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        functions=dict(type="list", elements="str", default=[], aliases=["function"]),
        state=dict(type="str", choices=["present", "undone", "expired"], default="present"),
        variables=dict(type="dict", default={}),
        unset=dict(type="list", elements="str", default=[]),
        lift_after=dict(type="str"),
        force=dict(type="bool", default=False),
        show_values=dict(type="list", elements="str", default=["LOG_LEVEL", "POWERTOOLS_LOG_LEVEL"]),
        actor=dict(type="str", default=""),
        wait_seconds=dict(type="int", default=300),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    rows = []
    with aws_failures_reported(module, "changing Lambda environment variables"):
        functions = [f.strip() for f in p["functions"] if f and f.strip()]
        if p["state"] != "expired" and not functions:
            raise RunbookError("name the function: -e function=NAME (or a list). Nothing was changed.")
        if p["state"] == "present":
            check_changes(p["variables"], p["unset"])
            expiry(p["lift_after"], utc_now())  # a malformed duration is refused before any call
        clients = Clients(p, 1)
        shown = tuple(p["show_values"])
        if p["state"] == "expired":
            functions = due(recorded_functions(clients), utc_now())
        for function in functions:
            env = FunctionEnvironment(clients, function, p["wait_seconds"], shown)
            if p["state"] == "present":
                rows.append(set_variables(env, p["variables"], p["unset"], p["lift_after"], module.check_mode,
                                          p["actor"]))
                continue
            try:
                rows.append(undo_variables(env, module.check_mode, p["force"]))
            except RunbookError as exc:
                if p["state"] != "expired":
                    raise
                if "does not exist" in str(exc):  # an expired record of a function deleted since
                    if not module.check_mode:
                        delete_parameter(clients("ssm"), record_name(function))
                    rows.append({"function": function, "variables": [], "changed": True, "gone": True})
                else:  # the others are still lifted; this one is named at the end
                    rows.append({"function": function, "variables": exc.details.get("variables", []),
                                 "changed": False, "error": str(exc)})
    failed = [r["error"] for r in rows if r.get("error")]
    if failed:
        module.fail_json(msg=" ".join(failed), functions=rows, changed=any(r["changed"] for r in rows))
    changed = any(r["changed"] for r in rows)
    if p["state"] == "expired" and not rows:
        msg = "no change of lambda-env.yml is due to be lifted"
    else:
        msg = "; ".join(line(r, module.check_mode) for r in rows)
    module.exit_json(changed=changed, functions=rows, msg=msg)


if __name__ == "__main__":
    main()
