#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cognito_user
short_description: Confirm, reset, disable, enable or sign out Cognito users, and set a user pool's MFA with an undo
description:
  - Each user action only where the user's state calls for it - O(action=confirm) an UNCONFIRMED sign-up,
    O(action=reset_password) a CONFIRMED (or FORCE_CHANGE_PASSWORD) user, O(action=disable) and O(action=enable) the
    Enabled flag - so a second run changes nothing; a user in a state the action does not apply to is refused, naming
    the state. O(action=sign_out) ends every session of the user, an action rather than a state (each run signs out).
  - Every user is decided before any is acted on, so one refusal changes nothing.
  - O(action=delete) is refused - a deleted user's sub, and every record keyed by it, is gone for good; disable instead.
  - O(action=mfa) sets the pool's MFA configuration (O(mfa)), what it was before recorded in SSM
    (C(/runbook/cognito-mfa/POOL_ID)); O(action=mfa_undone) puts exactly that back.
version_added: 0.4.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reads the users (or the pool) and says what would change for each.
  diff_mode:
    support: none
    description: The result lists each user's state and what the action does.
options:
  user_pool:
    description: The user pool's id (us-west-2_XXXXXXXXX) or name.
    type: str
    required: true
  users:
    description: Usernames.
    type: list
    elements: str
    default: []
  filter:
    description: A Cognito user filter, C(email = "a@example.com") (C(^=) for a prefix); its users are acted on too.
    type: str
    default: ""
  action:
    description: What to do.
    type: str
    choices: [confirm, reset_password, disable, enable, sign_out, delete, mfa, mfa_undone]
    required: true
  mfa:
    description: With O(action=mfa) - ON (every user), OPTIONAL, or OFF; ON and OPTIONAL turn on authenticator apps.
    type: str
    choices: ["ON", "OPTIONAL", "OFF"]
  actor:
    description: Who asked (recorded with the MFA record).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: A locked-out user's password reset (a code is sent to the verified email)
  runbook.recovery.cognito_user:
    user_pool: SakeSensei-Users
    filter: email = "kenji@example.com"
    action: reset_password

- name: A compromised account - signed out everywhere, then disabled
  runbook.recovery.cognito_user:
    user_pool: SakeSensei-Users
    users: [kenji]
    action: "{{ item }}"
  loop: [sign_out, disable]
"""

RETURN = r"""
users:
  description: One row per user - its state, the action, whether it changed, what it did.
  returned: when a user action ran
  type: list
  elements: dict
  sample: [{"user": "kenji", "status": "UNCONFIRMED", "action": "confirm", "changed": true,
            "what": "UNCONFIRMED -> CONFIRMED"}]
pool:
  description: With O(action=mfa) or O(action=mfa_undone), the pool's MFA before and after.
  returned: when an MFA action ran
  type: dict
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
from ansible_collections.runbook.recovery.plugins.module_utils.aws_cognito import (
    DELETE_REFUSED,
    find_pool,
    find_users,
    set_mfa,
    undo_mfa,
    user_actions,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        user_pool=dict(type="str", required=True),
        users=dict(type="list", elements="str", default=[]),
        filter=dict(type="str", default=""),
        action=dict(type="str", required=True, choices=["confirm", "reset_password", "disable", "enable", "sign_out",
                                                        "delete", "mfa", "mfa_undone"]),
        mfa=dict(type="str", choices=["ON", "OPTIONAL", "OFF"]),
        actor=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    would = "would " if module.check_mode else ""
    with aws_failures_reported(module, "acting on Cognito users"):
        if p["action"] == "delete":
            raise RunbookError(DELETE_REFUSED)
        if p["action"] == "mfa" and not p["mfa"]:
            raise RunbookError("action=mfa needs -e mfa=ON, OPTIONAL or OFF. Nothing was changed.")
        clients = Clients(p, 1)
        idp = clients("cognito-idp")
        pool, name = find_pool(idp, p["user_pool"].strip())
        label = f"{name} ({pool})" if name else pool
        if p["action"] in ("mfa", "mfa_undone"):
            row = (set_mfa(idp, clients("ssm"), pool, p["mfa"], module.check_mode, p["actor"]) if p["action"] == "mfa"
                   else undo_mfa(idp, clients("ssm"), pool, module.check_mode))
            change = f"{would}{row['before']} -> {row['after']}" if row["changed"] else f"{row['before']}, unchanged"
            module.exit_json(changed=row["changed"], pool=row, msg=f"user pool {label} MFA: {change}")
        users = find_users(idp, pool, [u.strip() for u in p["users"] if u and u.strip()], p["filter"].strip())
        rows = user_actions(idp, pool, p["action"], users, module.check_mode)
    parts = [f"{r['user']}: {would if r['changed'] else ''}{r['what']}" for r in rows]
    module.exit_json(changed=any(r["changed"] for r in rows), users=rows,
                     msg=f"user pool {label}, {p['action']}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
