#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dynamodb_pitr
short_description: Point-in-time recovery on (or off) for DynamoDB tables
description:
  - Turns continuous backups with point-in-time recovery on for each table where they are off, so a table can be
    restored to any second of the last 35 days. No module of amazon.aws or community.aws does this.
  - Tables already in the wanted state are left alone; a missing table fails the run before any change.
  - The tables are changed at once; when some fail, the others are still changed, and the message names what was
    changed (RV(changes)) besides each failure.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
attributes:
  check_mode:
    support: full
    description: Reports the tables it would change; changes nothing.
  diff_mode:
    support: full
    description: Point-in-time recovery status per changed table, before and after.
options:
  tables:
    description: Table names.
    type: list
    elements: str
    required: true
  enabled:
    description: Whether point-in-time recovery should be on.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Every inventory table restorable to a point in time
  runbook.recovery.dynamodb_pitr:
    tables: [betterbank-cards-dev, chatbot-sessions]
"""

RETURN = r"""
tables:
  description: One row per table.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "chatbot-sessions", "before": "DISABLED", "after": "ENABLED", "changed": true}]
changes:
  description: On failure, what was changed (on the tables that did not fail).
  returned: failure
  type: list
  elements: str
  sample: ["point-in-time recovery of chatbot-sessions turned on"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_failures_reported,
    describe_error,
    for_each,
    resources_argument_spec,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import describe_table, ensure_pitr
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


def main():
    argument_spec = resources_argument_spec(
        states=(),
        tables=dict(type="list", elements="str", required=True),
        enabled=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "setting point-in-time recovery") as outcome:
        clients = Clients(p, p["workers"])
        ddb = clients("dynamodb")
        for table in p["tables"]:
            describe_table(ddb, table)  # a missing table fails here, before any change
        done = for_each(p["tables"], lambda t: ensure_pitr(ddb, t, p["enabled"], module.check_mode, outcome),
                        clients.workers)
        rows = [row if not isinstance(row, Exception) else
                {"table": t, "changed": False, "error": describe_error(row, f"point-in-time recovery of {t}")}
                for t, row in zip(p["tables"], done, strict=True)]
        changed = [r for r in rows if r["changed"]]
        result = dict(changed=bool(changed), tables=rows)
        if module._diff:
            result["diff"] = {"before": {r["table"]: r["before"] for r in changed},
                              "after": {r["table"]: r["after"] for r in changed}}
        failed = [r for r in rows if r.get("error")]
        if failed:
            raise RunbookError(f"{len(failed)} of {len(rows)} tables failed: " + "; ".join(r["error"] for r in failed[:5]),
                               **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
