#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: security_group_rule
short_description: Add or remove one ingress rule of a security group exactly, recorded for an exact undo
description:
  - O(state=present) adds the ingress rule (O(protocol), O(port), each of O(cidrs)) when the group lacks it; every other
    rule is untouched and a rule already there is not recorded (it is not ours).
  - Each rule added is recorded as a tag on the group, C(runbook:sg-added:PROTOCOL/FROM-TO/CIDR) (when, who, and the
    reason when forced), before it is added. O(state=undone) revokes exactly the rules recorded; O(state=absent) revokes
    exactly the rule named, whoever added it.
  - C(0.0.0.0/0) or C(::/0) is refused on any port but 80 and 443 unless O(force) with O(force_reason).
version_added: 0.4.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reads the group and says which rules would be added or revoked.
  diff_mode:
    support: none
    description: The result lists the rules added and revoked.
options:
  group:
    description: The security group's id (sg-...) or name.
    type: str
    required: true
  vpc_id:
    description: The VPC, when a name is not unique.
    type: str
  protocol:
    description: tcp, udp, icmp, icmpv6, or all.
    type: str
    default: tcp
  port:
    description: A port (C(443)) or a range (C(8000-8080)); not with O(protocol=all).
    type: str
  cidrs:
    description: Who may connect, as CIDRs.
    type: list
    elements: str
    default: []
  description:
    description: The rule's description.
    type: str
    default: ""
  state:
    description: C(present) adds, C(absent) revokes the rule named, C(undone) revokes the rules this module added.
    type: str
    choices: [present, absent, undone]
    default: present
  force:
    description: Allow the whole internet on a port other than 80 and 443.
    type: bool
    default: false
  force_reason:
    description: Why, with O(force); recorded with the rule.
    type: str
    default: ""
  actor:
    description: Who asked (recorded).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: HTTPS from the office (runbook 001 opens it to 0.0.0.0/0, which 443 allows)
  runbook.recovery.security_group_rule:
    group: sg-0123456789abcdef0
    port: "443"
    cidrs: [203.0.113.0/24]

- name: Revoke exactly what this added
  runbook.recovery.security_group_rule:
    group: sg-0123456789abcdef0
    state: undone
"""

RETURN = r"""
groups:
  description: One row, the group and the rules added or revoked.
  returned: always
  type: list
  elements: dict
  sample: [{"group": "sg-0123 (alb)", "protocol": "tcp", "ports": "port 443", "added": ["203.0.113.0/24"],
            "already": [], "removed": [], "changed": true}]
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
from ansible_collections.runbook.recovery.plugins.module_utils.aws_security_group import (
    SecurityGroup,
    add_rules,
    check_rule,
    remove_rules,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


def parse_ports(text: str | None) -> tuple[int | None, int | None]:
    if text in (None, ""):
        return None, None
    low, _dash, high = str(text).strip().partition("-")
    try:
        return int(low), int(high) if high else int(low)
    except ValueError:
        raise RunbookError(f"port={text!r}: give a port (443) or a range (8000-8080). Nothing was changed.") from None


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        group=dict(type="str", required=True),
        vpc_id=dict(type="str"),
        protocol=dict(type="str", default="tcp"),
        port=dict(type="str"),
        cidrs=dict(type="list", elements="str", default=[]),
        description=dict(type="str", default=""),
        state=dict(type="str", choices=["present", "absent", "undone"], default="present"),
        force=dict(type="bool", default=False),
        force_reason=dict(type="str", default=""),
        actor=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "changing a security group rule"):
        group = SecurityGroup(Clients(p, 1), p["group"].strip(), p["vpc_id"])
        if p["state"] == "undone":
            row = remove_rules(group, None, module.check_mode)
        else:
            low, high = parse_ports(p["port"])
            proto, low, high, cidrs = check_rule(str(p["protocol"]).lower(), low, high, p["cidrs"],
                                                 p["force"] and p["state"] == "present", p["force_reason"])
            if p["state"] == "present":
                row = add_rules(group, proto, low, high, cidrs, p["description"], module.check_mode, p["actor"],
                                p["force_reason"] if p["force"] else "")
            else:
                row = remove_rules(group, [(proto, low, high, c) for c in cidrs], module.check_mode)
    would = "would " if module.check_mode else ""
    parts = []
    if row["added"]:
        parts.append(f"{would}allow {row['protocol'] if row['protocol'] != '-1' else 'all'} {row['ports']} from "
                     f"{', '.join(row['added'])}")
    if row["already"]:
        parts.append(f"{', '.join(row['already'])} already allowed")
    if row["removed"]:
        parts.append(f"{would}revoke {'; '.join(row['removed'])}")
    msg = f"{row['group']}: {', '.join(parts) or 'nothing to change'}; every other rule untouched"
    module.exit_json(changed=row["changed"], groups=[row], msg=msg)


if __name__ == "__main__":
    main()
