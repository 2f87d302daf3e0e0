#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_verify_backup
short_description: Prove that a PostgreSQL backup is intact and restorable
description:
  - V(checksum) compares every file of the backup with the size and sha256 in its manifest.
  - V(catalog) also reads the dump's table of contents with C(pg_restore --list) and checks that every
    table of the manifest has its data entry.
  - V(restore) also restores the backup with C(pg_restore -j), compares every table's row count and the large
    objects with the manifest, and removes what it restored. By default (O(scratch=throwaway)) it restores into a
    cluster of its own, made with C(initdb) under O(scratch_dir) on this host and removed after, so the production
    server lends it nothing, not even disk; the free space there is checked first, and a throwaway cluster left by
    a killed run is removed by the next. O(scratch=server) restores into a scratch database on the server instead,
    claimed with an advisory lock so that one a killed run left is dropped by the next verification, after a
    check of the server's free space.
  - The result is recorded in the backup's C(verification.json); a failure marks the backup unverified
    and fails the task. C(changed) is true only when the recorded verdict changes.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
  - runbook.recovery.postgres.BACKUP_STORE
attributes:
  check_mode:
    support: full
    description: Runs V(checksum) and V(catalog) (they only read) without recording; V(restore) is only planned.
  diff_mode:
    support: none
    description: There is no file-like state to diff; the result's before and after describe the change.
options:
  database:
    description: Database whose backup to verify.
    type: str
    required: true
  backup:
    description: V(latest), V(latest-verified) or a backup id.
    type: str
    default: latest
  level:
    description: How deep to verify; each level includes the ones before it.
    type: str
    choices: [checksum, catalog, restore]
    default: checksum
  jobs:
    description: Parallel C(pg_restore) workers for O(level=restore).
    type: int
    default: 2
  scratch:
    description: Where O(level=restore) restores, a throwaway cluster of its own (the default) or the server itself.
    type: str
    choices: [throwaway, server]
    default: throwaway
  scratch_dir:
    description:
      - The directory the throwaway clusters are made in (made 0711 by the run when missing; refused when it is a
        link, another user's, or writable by others).
    type: path
    default: /var/tmp/runbook-verify
  scratch_os_user:
    description: The operating system user the throwaway cluster runs as when the module runs as root.
    type: str
    default: postgres
seealso:
  - module: runbook.recovery.pg_backup
"""

EXAMPLES = r"""
- name: Restore the newest backup into a scratch database and compare row counts
  runbook.recovery.pg_verify_backup:
    login_host: 127.0.0.1
    database: chat
    backup_root: /var/backups/postgresql
    level: restore
"""

RETURN = r"""
backup:
  description: The verified backup, with its recorded verification state.
  returned: always
  type: dict
  sample: {"id": "20261123T051200Z", "verified": true, "level": "restore"}
ok:
  description: Whether every check passed.
  returned: always
  type: bool
  sample: true
problems:
  description: What did not match (missing files, checksum mismatches, row counts).
  returned: always
  type: list
  elements: str
  sample: ["3245.dat.gz: sha256 1f2e3d4c5b6a... differs from the manifest's 9a8b7c6d5e4f..."]
levels_run:
  description: The levels that were run, in order.
  returned: always
  type: list
  elements: str
  sample: ["checksum", "catalog", "restore"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LEVELS, LocalStore
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    failure_details,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_backup import verification_failure, verify_backup
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import Scratch
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def verify(params: dict, check_mode: bool) -> dict:
    validate_name(params["database"])
    if params["jobs"] < 1:
        raise RunbookError(f"jobs={params['jobs']} is not allowed: use 1 or more parallel pg_restore workers.")
    store = LocalStore(params["backup_root"])
    backup = store.resolve(params["database"], params["backup"])
    result = verify_backup(store, backup, params["level"], ConnParams.from_params(params), params["jobs"],
                           check_mode, Scratch(params["scratch"], params["scratch_dir"], params["scratch_os_user"]))
    result["backup"] = backup.summary()
    return result


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        database=dict(type="str", required=True),
        backup_root=dict(type="path", required=True),
        backup=dict(type="str", default="latest"),
        level=dict(type="str", choices=list(LEVELS), default="checksum"),
        jobs=dict(type="int", default=2),
        scratch=dict(type="str", choices=["throwaway", "server"], default="throwaway"),
        scratch_dir=dict(type="path", default="/var/tmp/runbook-verify"),
        scratch_os_user=dict(type="str", default="postgres"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    with failures_reported(module):
        result = verify(module.params, module.check_mode)
    if not result["ok"]:
        module.fail_json(msg=verification_failure(result["backup"]["id"], module.params["database"], result),
                         **failure_details(result))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
