#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: log_retention
short_description: CloudWatch log groups under some prefixes get a retention; named groups are created when missing
description:
  - Every log group whose name starts with one of O(prefixes), and every group named in O(groups), gets
    O(retention_days). Named groups that do not exist are created first (a Lambda function's group is only created
    by its first log line, and then keeps its logs forever).
  - Accepts every value CloudWatch Logs accepts (1096, 2192, 2557, 2922 and 3288 included) and refuses any other
    before a call is made. Never deletes a log group, unlike amazon.aws.cloudwatchlogs_log_group with an unlisted
    value, and changes nothing in check mode.
  - One call handles hundreds of groups - listing is paginated and the updates run on a bounded pool of O(workers).
  - A prefix that matches no group is a warning and is named in RV(unmatched_prefixes); it is usually a typo.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
attributes:
  check_mode:
    support: full
    description: Lists the groups and the retention each would get; creates and changes nothing.
  diff_mode:
    support: full
    description: Retention per changed group, before and after.
options:
  prefixes:
    description: Log group name prefixes, such as V(/aws/lambda/ChatbotLambdaStack-).
    type: list
    elements: str
    default: []
  groups:
    description: Log group names that must exist; missing ones are created.
    type: list
    elements: str
    default: []
  retention_days:
    description: Days to keep log events; one of the values CloudWatch Logs accepts.
    type: int
    required: true
  only_unset:
    description: Only set the retention of groups that have none (never expire), leaving every explicit retention as is.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Lambda and ECS logs kept 30 days
  runbook.recovery.log_retention:
    prefixes: [/aws/lambda/, /ecs/]
    groups: [/aws/lambda/SakeSensei-Recommendation]
    retention_days: 30

- name: Audit logs kept three years, only where nobody chose a retention
  runbook.recovery.log_retention:
    prefixes: [/audit/]
    retention_days: 1096
    only_unset: true
"""

RETURN = r"""
groups:
  description: One row per log group, sorted by name.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "/aws/lambda/ChatbotLambdaStack-WebSocketHandler", "created": false, "before": null, "after": 30,
            "changed": true}]
unmatched_prefixes:
  description: Prefixes that matched no log group.
  returned: always
  type: list
  elements: str
  sample: ["/aws/lamda/"]
summary:
  description: Counts of groups seen, created and changed, and of failures.
  returned: always
  type: dict
  sample: {"groups": 240, "created": 1, "changed": 37, "failed": 0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_failures_reported,
    exit_with_rows,
    resources_argument_spec,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_cloudwatch import (
    apply,
    check_retention,
    find_groups,
    plan,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


def main():
    argument_spec = resources_argument_spec(
        states=(),
        prefixes=dict(type="list", elements="str", default=[]),
        groups=dict(type="list", elements="str", default=[]),
        retention_days=dict(type="int", required=True),
        only_unset=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "setting log retention"):
        check_retention(p["retention_days"])
        if not p["prefixes"] and not p["groups"]:
            raise RunbookError("Give prefixes or groups: no log group was selected, nothing was changed.")
        clients = Clients(p, p["workers"])
        logs = clients("logs")
        found, unmatched = find_groups(logs, p["prefixes"], p["groups"])
        rows = plan(found, p["groups"], p["retention_days"], p["only_unset"])
        if not module.check_mode:
            rows = apply(logs, rows, clients.workers)
    for prefix in unmatched:
        module.warn(f"Prefix {prefix!r} matched no log group: check its spelling (names are case-sensitive).")
    changed = [r for r in rows if r["changed"]]
    result = dict(changed=bool(changed), groups=rows, unmatched_prefixes=unmatched,
                  summary={"groups": len(rows), "created": sum(r["created"] for r in changed),
                           "changed": len(changed), "failed": sum(bool(r.get("error")) for r in rows)})
    if module._diff:
        result["diff"] = {"before": {r["name"]: r["before"] for r in changed},
                          "after": {r["name"]: r["after"] for r in changed}}
    exit_with_rows(module, result, rows, "log groups failed")


if __name__ == "__main__":
    main()
