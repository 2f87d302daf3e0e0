#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: waf_rule_count
short_description: Set one rule (or rule group) of a WAF v2 web ACL to COUNT and back, every other rule as it was
description:
  - O(state=counted) makes each rule of O(rules) count instead of acting - C(Action) C(Count) for a rule, C(OverrideAction)
    C(Count) for a rule group reference - the runbook's "disable specific rule temporarily". Every other rule, and every
    other member of the web ACL, is sent back as it was read, with the ACL's C(LockToken), so a change made in between is
    refused by WAF and read again rather than overwritten.
  - What the rule did before the first count is recorded (SSM parameter C(/runbook/waf-web-acl/SCOPE/ACL/RULE)), so
    O(state=undone) puts exactly that back. A rule someone changed since (neither Count nor what it did before) is
    refused, named, unless O(force).
  - An unknown web ACL or rule name is refused before any call that changes anything, naming the rules there are.
version_added: 0.4.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reads the web ACL and says what each rule does now and would do.
  diff_mode:
    support: none
    description: The result lists each rule's action before and after.
options:
  web_acl:
    description: The web ACL's name.
    type: str
    required: true
  id:
    description: The web ACL's id, when several share the name.
    type: str
  scope:
    description: REGIONAL, or CLOUDFRONT (in us-east-1).
    type: str
    choices: [REGIONAL, CLOUDFRONT]
    default: REGIONAL
  rules:
    description: Rule names.
    type: list
    elements: str
    required: true
  state:
    description: C(counted) sets COUNT; C(undone) puts back what the rule did before.
    type: str
    choices: [counted, undone]
    default: counted
  force:
    description: With O(state=undone), put back what was recorded even over a change made since.
    type: bool
    default: false
  actor:
    description: Who asked (recorded).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: The rate limit counts instead of blocking while legitimate traffic is investigated
  runbook.recovery.waf_rule_count:
    web_acl: SakeSensei-WebACL
    rules: [RateLimitRule]

- name: And blocks again
  runbook.recovery.waf_rule_count:
    web_acl: SakeSensei-WebACL
    rules: [RateLimitRule]
    state: undone
"""

RETURN = r"""
rules:
  description: One row per rule, its action before and after.
  returned: always
  type: list
  elements: dict
  sample: [{"web_acl": "SakeSensei-WebACL", "rule": "RateLimitRule", "member": "Action", "before": "Block",
            "after": "Count", "changed": true}]
msg:
  description: What was done.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_waf import WebAcl, count_rule, uncount_rule
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        web_acl=dict(type="str", required=True),
        id=dict(type="str"),
        scope=dict(type="str", choices=["REGIONAL", "CLOUDFRONT"], default="REGIONAL"),
        rules=dict(type="list", elements="str", required=True),
        state=dict(type="str", choices=["counted", "undone"], default="counted"),
        force=dict(type="bool", default=False),
        actor=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    rows = []
    with aws_failures_reported(module, "changing a WAF web ACL rule"):
        names = [r.strip() for r in p["rules"] if r and r.strip()]
        if not names:
            raise RunbookError("name the rule: -e rule=RateLimitRule. Nothing was changed.")
        clients = Clients(p, 1)
        acl = WebAcl(clients, p["web_acl"], p["scope"], p["id"])
        acl.read()
        for name in names:  # every name checked before anything changes
            acl.rule(name)
        for name in names:
            if p["state"] == "counted":
                rows.append(count_rule(acl, name, module.check_mode, p["actor"]))
            else:
                rows.append(uncount_rule(acl, name, module.check_mode, p["force"]))
    would = "would " if module.check_mode else ""
    parts = []
    for r in rows:
        if r["changed"]:
            parts.append(f"{r['web_acl']} rule {r['rule']}: {would}{r['member']} {r['before']} -> {r['after']}")
        else:
            parts.append(f"{r['web_acl']} rule {r['rule']}: {r['member']} {r['before']}, nothing to change")
    module.exit_json(changed=any(r["changed"] for r in rows), rules=rows,
                     msg="; ".join(parts) + "; every other rule as it was")


if __name__ == "__main__":
    main()
