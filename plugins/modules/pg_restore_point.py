#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore_point
short_description: Mark the WAL with a named restore point before a destructive procedure
description:
  - Creates a restore point (C(pg_create_restore_point)) named after the procedure and the time, and returns
    its name and LSN, so a point-in-time recovery (C(recovery_target_name) or C(recovery_target_lsn)) can take
    the server back to the moment before the procedure ran. The C(pg_recover), C(pg_sessions) and C(scale)
    roles call it just before they change anything, and write both into the audit record.
  - Restore point names are not unique in the WAL, so the LSN is the exact reference; the name is for people.
  - A server that cannot make one (C(wal_level=minimal), a login without the right to) gives a warning and
    RV(name) null, unless O(required=true).
version_added: 0.2.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
attributes:
  check_mode:
    support: full
    description: Returns the name it would use; creates nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  procedure:
    description: The procedure about to run (C(recover-db), C(kill-long-queries), ...); part of the name.
    type: str
    required: true
  required:
    description: Fail when the server cannot make a restore point, instead of warning.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Mark the WAL before the recovery
  runbook.recovery.pg_restore_point:
    procedure: recover-db
  register: restore_point
"""

RETURN = r"""
name:
  description: The restore point's name (null when none could be made).
  returned: always
  type: str
  sample: runbook-recover-db-20261125T140300Z
lsn:
  description: Its position in the WAL (null in check mode or when none could be made).
  returned: always
  type: str
  sample: 0/3000F28
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    DatabaseError,
    create_restore_point,
    failures_reported,
    postgres_argument_spec,
    restore_point_name,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(procedure=dict(type="str", required=True), required=dict(type="bool", default=False))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    name = restore_point_name(module.params["procedure"], utc_now())
    if module.check_mode:
        module.exit_json(changed=True, name=name, lsn=None, msg=f"would create restore point {name}")
    with failures_reported(module):
        try:
            with ConnParams.from_params(module.params).connect() as conn:
                lsn = create_restore_point(conn, name)
        except DatabaseError as exc:
            reason = f"no restore point was made: {' '.join(str(exc).split())}"
            if module.params["required"]:
                module.fail_json(msg=f"{reason}. Nothing else was done.")
            module.warn(f"{reason}; a point-in-time recovery cannot target this run by name.")
            module.exit_json(changed=False, name=None, lsn=None, msg=reason)
    module.exit_json(changed=True, name=name, lsn=lsn, msg=f"restore point {name} at {lsn}")


if __name__ == "__main__":
    main()
