#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore_db
short_description: Recover a PostgreSQL database from a backup without ever losing the current one
description:
  - "O(state=restored): preflight (the backup exists and passes its checksums, the server is reachable,
    the server has room), restore into a staging database with C(pg_restore -j), compare every table's
    row count with the manifest, copy the database-level settings, ANALYZE, then close every session and
    swap by renaming in one transaction: the current database is kept as C(<db>__pre_recovery_<time>).
    A SQL health probe follows; if it fails, the swap is rolled back at once."
  - Until the swap, the current database is untouched and keeps serving; a failed or killed restore
    only loses the staging database.
  - "The database's own state, which pg_dump leaves out, is carried across from the backup's manifest: owner,
    connection limit, C(ALTER DATABASE SET) settings, its ACL (C(GRANT)/C(REVOKE) on the database, grant by
    grant), its comment, and C(ALTER ROLE ... IN DATABASE ... SET) settings. A backup taken before these were
    recorded takes them from the current database, and the plan says so (C(cannot_carry) in RV(plan))."
  - Large objects are restored and counted against the manifest.
  - One run per database at a time (O(lock_wait)); a staging database found while holding the lock was left by
    a run that died, and is dropped.
  - "Each step is written first to a journal (C(<backup_root>/.journals/recover-db-<db>-<server>.json), 0600). A
    run killed mid-way (SIGKILL, an OOM kill, a lost worker) is found by the next run, which settles it before
    anything else: killed before its swap committed, its staging database is dropped and the database takes
    connections again; killed after, it is finished as it would have ended (probed, rolled back if the probe
    fails, recorded, old copies trimmed), so the database it replaced is never taken for an old copy. The health
    sweep reports such a journal as critical (C(interrupted_procedure)) until then."
  - The backup store records which backup the recovered database holds (C(<backup_root>/<db>/.restored.json),
    by the database's oid), so running the same recovery again reports C(changed=false). Use O(force=true) to
    restore it again.
  - "O(state=rolled_back): put O(kept_database) back under the original name and drop the restored copy;
    used by the C(pg_recover) role when a step after the swap (application start, HTTP probe) fails."
  - In check mode, returns the plan (backup, staging and kept names, sessions to close) and changes nothing.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
  - runbook.recovery.postgres.BACKUP_STORE
attributes:
  check_mode:
    support: full
    description: Verifies the backup's checksums and reports the plan; restores nothing.
  diff_mode:
    support: none
    description: There is no file-like state to diff; the result's before and after describe the change.
options:
  database:
    description:
      - "Database to recover: any name PostgreSQL accepts (C(données) too), up to 63 bytes; quotes, semicolons,
        slashes and control characters are refused."
      - Names derived from it (C(<db>__recovery_staging), C(<db>__pre_recovery_<time>)) are shortened with a hash
        when they would pass 63 bytes.
    type: str
    required: true
  backup:
    description: V(latest), V(latest-verified) or a backup id.
    type: str
    default: latest
  state:
    description: V(restored) recovers; V(rolled_back) undoes a recovery by putting O(kept_database) back.
    type: str
    choices: [restored, rolled_back]
    default: restored
  kept_database:
    description: For O(state=rolled_back), the database the recovery kept (returned as RV(kept_database)).
    type: str
  recovered_oid:
    description:
      - For O(state=rolled_back), the oid of the database the recovery swapped in (returned as RV(recovered_oid)).
        Required by a rollback, which refuses when the database under that name is another one (a later run replaced
        it), so that a rollback only ever drops the database its own recovery made.
    type: int
  jobs:
    description: Parallel C(pg_restore) workers.
    type: int
    default: 2
  keep_previous:
    description: How many C(<db>__pre_recovery_*) databases to keep; older ones are dropped after a successful recovery.
    type: int
    default: 2
  health_query:
    description: SQL run on the recovered database after the swap; an error rolls the recovery back.
    type: str
    default: SELECT 1
  no_owner:
    description: Restore without ownership and privileges (C(--no-owner --no-privileges)), for a server lacking the roles.
    type: bool
    default: false
  force:
    description: Restore even when the database already holds this backup.
    type: bool
    default: false
  lock_wait:
    description:
      - Seconds to wait when another run holds this database's recovery lock, before refusing with the holder's
        host, pid and start time. The lock is a PostgreSQL advisory lock on the run's own connection, so it
        ends with the run, even a killed one. The plan (check mode) waits and refuses the same way.
    type: float
    default: 10
seealso:
  - module: runbook.recovery.pg_backup
  - module: runbook.recovery.pg_verify_backup
"""

EXAMPLES = r"""
- name: Show the plan
  runbook.recovery.pg_restore_db:
    database: chat
    backup_root: /var/backups/postgresql
    backup: latest
  check_mode: true

- name: Recover chat from a given backup
  runbook.recovery.pg_restore_db:
    database: chat
    backup_root: /var/backups/postgresql
    backup: 20261123T051200Z
    health_query: SELECT count(*) FROM users
  register: recovery

- name: Roll back if the application does not come up
  runbook.recovery.pg_restore_db:
    database: chat
    backup_root: /var/backups/postgresql
    state: rolled_back
    kept_database: "{{ recovery.kept_database }}"
    recovered_oid: "{{ recovery.recovered_oid }}"
"""

RETURN = r"""
backup:
  description: The backup restored (or planned).
  returned: state=restored
  type: dict
  sample: {"id": "20261123T051200Z", "tables": 3, "rows": 10500}
plan:
  description: What the recovery does.
  returned: state=restored
  type: dict
  sample: {"needed": true, "backup": "20261123T051200Z", "database": "chat", "staging_database": "chat__recovery_staging",
           "keep_current_as": "chat__pre_recovery_20261123T060000Z", "connections_to_terminate": 3, "tables": 3, "rows": 10500,
           "large_objects": 2, "database_state_from": "backup", "cannot_carry": []}
before:
  description: The database before (exists, size, restored backup, row count per table).
  returned: state=restored
  type: dict
  sample: {"exists": true, "size": "9.1 MiB", "restored_backup": null, "tables": {"public.users": 499}}
after:
  description: The database after a successful recovery.
  returned: success with changed
  type: dict
  sample: {"exists": true, "size": "9.3 MiB", "restored_backup": "20261123T051200Z", "tables": {"public.users": 500}}
kept_database:
  description: Name under which the previous database is kept (null when there was none).
  returned: after a swap
  type: str
  sample: chat__pre_recovery_20261123T060000Z
recovered_oid:
  description: The oid of the database swapped in; a rollback (O(recovered_oid)) acts only while it is still there.
  returned: after a swap
  type: int
  sample: 16521
swapped:
  description: Whether the recovered database is now in place.
  returned: always
  type: bool
  sample: true
rolled_back:
  description: Whether a rollback put the previous database back.
  returned: always
  type: bool
  sample: false
interrupted:
  description: The journal of a run killed mid-way that this run finished or undid first.
  returned: when there was one
  type: dict
  sample: {"step": "probing", "database": "chat", "backup": "20261123T051200Z", "staging": "chat__recovery_staging",
           "kept": "chat__pre_recovery_20261123T060000Z", "staging_oid": 16521, "started_at": "2026-11-23T06:00:00Z"}
removed_previous:
  description: Older kept databases dropped by O(keep_previous).
  returned: after a swap
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import Recovery, kept_prefix
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    database_exists,
    failures_reported,
    postgres_argument_spec,
)


def roll_back(recovery: Recovery, kept: str | None, recovered_oid: int | None, check_mode: bool) -> dict:
    if recovered_oid is None:
        raise RunbookError(f"state=rolled_back needs recovered_oid, the oid of the {recovery.database} its recovery "
                           "swapped in (the recovery returns it): a rollback drops only that database. Nothing was "
                           "changed.")
    if kept:
        validate_name(kept, "kept_database")
        if not kept.startswith(kept_prefix(recovery.database)):
            raise RunbookError(f"kept_database {kept!r} is not a copy kept by a recovery of {recovery.database!r} "
                               f"(those are named {kept_prefix(recovery.database)}<time>).")
        with recovery.params.connect() as conn:
            if not database_exists(conn, kept):
                return {"changed": False, "rolled_back": False, "swapped": False,
                        "msg": f"{kept} does not exist: nothing to roll back (already rolled back?)"}
    if check_mode:
        return {"changed": True, "rolled_back": False, "swapped": False,
                "msg": f"would put {kept} back as {recovery.database}" if kept else
                f"would drop {recovery.database}, which its recovery created"}
    recovery.rollback(kept, recovered_oid)
    return {**recovery.result, "msg": f"{recovery.database} is back to {kept}"}


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        database=dict(type="str", required=True),
        backup_root=dict(type="path", required=True),
        backup=dict(type="str", default="latest"),
        state=dict(type="str", choices=["restored", "rolled_back"], default="restored"),
        kept_database=dict(type="str"),
        jobs=dict(type="int", default=2),
        keep_previous=dict(type="int", default=2),
        health_query=dict(type="str", default="SELECT 1"),
        no_owner=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        lock_wait=dict(type="float", default=10),
        recovered_oid=dict(type="int"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    recovery = Recovery(ConnParams.from_params(params), LocalStore(params["backup_root"]), params["database"],
                        params["backup"], jobs=params["jobs"], keep_previous=params["keep_previous"],
                        health_query=params["health_query"], force=params["force"], no_owner=params["no_owner"],
                        lock_wait=params["lock_wait"])
    with failures_reported(module, recovery.result):
        if params["state"] == "rolled_back":
            recovery.validate()
            result = roll_back(recovery, params["kept_database"], params["recovered_oid"], module.check_mode)
        elif module.check_mode:
            recovery.plan()
            result = recovery.result
        else:
            result = recovery.run()
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
