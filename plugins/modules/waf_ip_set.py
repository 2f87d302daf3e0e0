#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: waf_ip_set
short_description: Add addresses to a WAF v2 IP set and remove them, touching only the addresses named, with an exact undo
description:
  - O(state=present) adds O(addresses) to the IP set O(name); every address it held is kept (C(aws wafv2
    update-ip-set) replaces the whole list). The set is read with its C(LockToken) and written with it; when anyone
    changed it in between, WAF refuses the write and it is read, merged and written once more.
  - Each address added is recorded (SSM parameter C(/runbook/waf-ip-set/SCOPE/NAME), the set tagged
    C(runbook:waf-record)), with O(block_for) its expiry. O(state=undone) removes exactly the addresses recorded (or
    those of them named), never one that was there before or that someone else added; O(state=expired) removes the
    recorded addresses whose time is up, in every IP set (the scheduled DAG C(lift_expired)). O(state=absent) removes
    exactly the addresses named.
  - Refused before any call - a malformed address, one with host bits set, one of the set's other IP version, a range
    wider than O(max_prefix_v4) or O(max_prefix_v6), and, with O(protect), an entry that shares an address with one of
    those IP sets (a block covering an allowed address).
version_added: 0.4.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reads the set and its record and says what would be added or removed; writes nothing.
  diff_mode:
    support: none
    description: The result lists the addresses added and removed.
options:
  name:
    description: The IP set's name. Required but with O(state=expired).
    type: str
  id:
    description: The IP set's id, when several sets share the name.
    type: str
  scope:
    description: REGIONAL, or CLOUDFRONT (in us-east-1).
    type: str
    choices: [REGIONAL, CLOUDFRONT]
    default: REGIONAL
  addresses:
    description: Addresses or CIDRs (a bare address is its /32 or /128).
    type: list
    elements: str
    default: []
  state:
    description: C(present) adds, C(absent) removes the ones named, C(undone) removes what was added, C(expired) removes
      what was added for a while once its time is up.
    type: str
    choices: [present, absent, undone, expired]
    default: present
  block_for:
    description: With O(state=present), how long the addresses stay (C(24h), C(7d)); empty, until undone.
    type: str
  protect:
    description: IP sets (of the same scope) that no entry added may share an address with - the allow list of a block.
    type: list
    elements: str
    default: []
  max_prefix_v4:
    description: The widest IPv4 range accepted.
    type: int
    default: 16
  max_prefix_v6:
    description: The widest IPv6 range accepted.
    type: int
    default: 48
  actor:
    description: Who asked (recorded with each address).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Block two sources for a day; the 3 addresses already blocked stay
  runbook.recovery.waf_ip_set:
    name: SakeSensei-BlockedIPs
    addresses: [198.51.100.0/24, 192.0.2.1]
    block_for: 24h
    protect: [SakeSensei-AllowedIPs]

- name: Remove exactly what was added
  runbook.recovery.waf_ip_set:
    name: SakeSensei-BlockedIPs
    state: undone
"""

RETURN = r"""
ip_sets:
  description: One row per IP set acted on.
  returned: always
  type: list
  elements: dict
  sample: [{"ip_set": "SakeSensei-BlockedIPs", "scope": "REGIONAL", "before": 3, "added": ["198.51.100.0/24"],
            "already": [], "removed": [], "changed": true, "expires_at": "2026-12-09T01:00:00.000000Z"}]
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
from ansible_collections.runbook.recovery.plugins.module_utils.aws_waf import (
    IpSet,
    add,
    covering,
    due_ip_sets,
    expiry,
    parse_addresses,
    remove,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, utc_now


def line(row: dict, check_mode: bool) -> str:
    would = "would " if check_mode else ""
    parts = []
    if row["added"]:
        lift = f" until {row['expires_at']}" if row.get("expires_at") else ""
        parts.append(f"{would}add {', '.join(row['added'])}{lift}")
    if row.get("already"):
        parts.append(f"{', '.join(row['already'])} already there")
    if row["removed"]:
        parts.append(f"{would}remove {', '.join(row['removed'])}")
    if not parts:
        parts.append("nothing to remove" if "recorded" in row else "nothing to change")
    return f"{row['ip_set']} ({row['before']} addresses): {'; '.join(parts)}; every other address kept"


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        name=dict(type="str"),
        id=dict(type="str"),
        scope=dict(type="str", choices=["REGIONAL", "CLOUDFRONT"], default="REGIONAL"),
        addresses=dict(type="list", elements="str", default=[]),
        state=dict(type="str", choices=["present", "absent", "undone", "expired"], default="present"),
        block_for=dict(type="str"),
        protect=dict(type="list", elements="str", default=[]),
        max_prefix_v4=dict(type="int", default=16),
        max_prefix_v6=dict(type="int", default=48),
        actor=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    state, rows = p["state"], []
    with aws_failures_reported(module, "changing a WAF IP set"):
        if state != "expired" and not p["name"]:
            raise RunbookError("name the IP set: -e ip_set=NAME (or waf_block_ip_set in the inventory). Nothing was "
                               "changed.")
        if not 0 <= p["max_prefix_v4"] <= 32 or not 0 <= p["max_prefix_v6"] <= 128:
            raise RunbookError("max_prefix_v4 is 0-32 and max_prefix_v6 0-128. Nothing was changed.")
        addresses = [a for a in p["addresses"] if str(a).strip()]
        if state in ("present", "absent") and not addresses:
            raise RunbookError(f"name the addresses to {'add' if state == 'present' else 'remove'}: "
                               "-e addresses=198.51.100.0/24,192.0.2.1. Nothing was changed.")
        networks = parse_addresses(addresses, {4: p["max_prefix_v4"], 6: p["max_prefix_v6"]})
        lifted_at = expiry(p["block_for"], utc_now()) if state == "present" else None
        clients = Clients(p, 1)
        if state == "present" and p["protect"]:
            for protected in p["protect"]:
                allowed = IpSet(clients, protected, p["scope"])
                allowed.read()
                clash = covering(networks, allowed.addresses)
                if clash:
                    raise RunbookError(
                        f"{', '.join(f'{b} covers {a}' for b, a in clash)}, which {protected} allows: nothing was "
                        "changed. Block narrower ranges that leave the allowed addresses out, or take them out of "
                        f"{protected} first.")
        if state == "expired":
            for scope, name in due_ip_sets(clients):
                rows.append(remove(IpSet(clients, name, scope), None, module.check_mode, only_recorded=True,
                                   now=utc_now()))
        else:
            ip_set = IpSet(clients, p["name"], p["scope"], p["id"])
            if state == "present":
                rows.append(add(ip_set, networks, lifted_at, module.check_mode, p["actor"]))
            else:
                rows.append(remove(ip_set, networks if (state == "absent" or networks) else None, module.check_mode,
                                   only_recorded=state == "undone"))
    if state == "expired" and not rows:
        msg = "no address added for a while is due to be removed"
    else:
        msg = "; ".join(line(r, module.check_mode) for r in rows)
    module.exit_json(changed=any(r["changed"] for r in rows), ip_sets=rows, msg=msg)


if __name__ == "__main__":
    main()
