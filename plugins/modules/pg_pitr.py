#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_pitr
short_description: Recover one PostgreSQL database, or the whole cluster, to a point in time from the WAL archive
description:
  - "Point-in-time recovery from the archive kept by Barman's cloud tools (base backups and WAL in S3): to a time
    (O(target_time), with a zone), an LSN (O(target_lsn)), a restore point (O(target_name)) or the end of the
    archive (O(target=latest))."
  - "O(scope=database): the newest base backup before the target is restored into a throwaway cluster under
    O(work_dir) (its own data directory, a private socket, no TCP, no archiving), replayed to the target and
    promoted; the database is dumped out of it (C(pg_dump -Fd -j)) and recovered through the same path as
    M(runbook.recovery.pg_restore_db): staging, validation against the dump's manifest, the database's own state,
    swap (the current database is kept), probe, rollback. The rest of the live cluster keeps serving. The
    throwaway cluster is removed at the end, on failure too, and a run holds the database's recovery lock
    throughout (the same lock as pg_restore_db)."
  - "O(scope=cluster): stop the server (O(stop_command)), move its data directory aside (kept, never deleted
    here), restore and replay into a fresh one, start it (O(start_command)), wait for the promotion, probe;
    on any failure the old data directory is put back and started."
  - "The plan (check mode, and before every run) names the base backup, the WAL range needed and whether the
    archive holds all of it, the target, the window and the restore size against free space. A gap in the range,
    a target outside the window or in the future, and a time without a zone are refused before anything changes."
  - Before replaying, the live server commits, switches WAL and waits until the archiver has sent that segment,
    so a target up to the moment of the run is in the archive.
  - "O(state=drilled): the drill. Restore the newest base backup and replay all archived WAL into a throwaway
    cluster, run C(pg_amcheck) on every database, and check that every table of the newest logical backup of each
    of O(databases) is there; returns RPO (age of the newest archived WAL) and RTO (the drill's duration).
    Changes nothing on the live server."
version_added: 0.2.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
  - runbook.recovery.postgres.ARCHIVE
attributes:
  check_mode:
    support: full
    description: Reports the plan (and refuses what a run would refuse); changes nothing.
  diff_mode:
    support: none
    description: The result's plan, before and after describe the change.
options:
  state:
    description:
      - V(restored) recovers; V(drilled) runs the drill.
      - V(undone) undoes a cluster recovery that was killed mid-run (its journal, in O(work_dir), says how far it
        got) and does nothing else; nothing when there is none. V(restored) does the same first, but needs the
        server to answer; the C(pg_recover) role runs V(undone) before anything that connects.
    type: str
    choices: [restored, drilled, undone]
    default: restored
  scope:
    description: V(database) recovers O(database) alone; V(cluster) the whole cluster.
    type: str
    choices: [database, cluster]
    default: database
  database:
    description: The database to recover (O(scope=database)).
    type: str
  databases:
    description: For O(state=drilled), the databases whose newest logical backup (in O(backup_root)) the drill compares.
    type: list
    elements: str
    default: []
  target_time:
    description: Recover to this instant, with a zone (V(2026-11-25T14:02:00Z), V(2026-11-25 15:02:00+01:00)).
    type: str
  target_lsn:
    description: Recover to this LSN (V(0/3000148)), for example an audit record's C(restore_point.lsn).
    type: str
  target_name:
    description: Recover to this restore point (the C(restore_point.name) an audit record of ours gives).
    type: str
  target:
    description: V(latest) recovers to the end of the archived WAL.
    type: str
    choices: [latest]
  backup_root:
    description:
      - The logical backup store. O(scope=database) records there which target the recovered database holds
        (so the same run again reports C(changed=false)); the drill compares with its newest backups.
    type: path
  work_dir:
    description:
      - Where throwaway clusters and the dump live; needs about the base backup's size free, and must be
        traversable by the server's OS user. Leftovers of killed runs are removed here (under the lock).
    type: path
    default: /var/tmp/runbook-pitr
  jobs:
    description: Parallel pg_dump/pg_restore workers (O(scope=database)) and pg_amcheck jobs.
    type: int
    default: 2
  keep_previous:
    description: How many C(<db>__pre_recovery_*) databases to keep (O(scope=database)).
    type: int
    default: 2
  health_query:
    description: SQL run after the swap (database) or the start (cluster); an error rolls back.
    type: str
    default: SELECT 1
  force:
    description: Recover even when the database already holds this target.
    type: bool
    default: false
  lock_wait:
    description: Seconds to wait for another recovery of the database before refusing (O(scope=database)).
    type: float
    default: 10
  replay_timeout:
    description: Seconds a replay may take before the recovery gives up (and rolls back).
    type: float
    default: 3600
  stop_command:
    description: How to stop the server (O(scope=cluster)); empty means C(pg_ctl stop -m fast) on its data directory.
    type: list
    elements: str
    default: []
  start_command:
    description: How to start it; empty means C(pg_ctl start) as the data directory's owner.
    type: list
    elements: str
    default: []
  data_directory:
    description: The data directory O(scope=cluster) expects (checked against the server's); read from the server when unset.
    type: path
seealso:
  - module: runbook.recovery.pg_restore_db
  - module: runbook.recovery.pg_base_backup
  - module: runbook.recovery.pg_restore_point
"""

EXAMPLES = r"""
- name: The plan of recovering chat to 14:02 UTC
  runbook.recovery.pg_pitr:
    database: chat
    target_time: "2026-11-25T14:02:00Z"
    backup_root: /var/backups/postgresql
    archive: "{{ pg_archive }}"
  check_mode: true

- name: Undo a run of ours, by the restore point it made
  runbook.recovery.pg_pitr:
    database: chat
    target_name: runbook-kill-long-queries-20261125T140300Z
    backup_root: /var/backups/postgresql
    archive: "{{ pg_archive }}"

- name: The nightly drill
  runbook.recovery.pg_pitr:
    state: drilled
    databases: [chat]
    backup_root: /var/backups/postgresql
    archive: "{{ pg_archive }}"
"""

RETURN = r"""
plan:
  description: The base backup, WAL range (and what the archive lacks), target, window, restore size.
  returned: state=restored
  type: dict
  sample: {"target": "time 2026-11-25T14:02:00.000000Z", "base_backup": {"id": "20261125T010000"},
           "wal": {"from": "000000010000000000000004", "to": "00000001000000000000000B", "segments": 8, "missing": []},
           "window": "from 2026-11-25T01:00:31.000000Z to now", "restore_size": "69.0 MiB", "needed": true}
kept_database:
  description: O(scope=database) - the name the previous database is kept under.
  returned: after a swap
  type: str
  sample: chat__pre_recovery_20261125T141000Z
kept_data_directory:
  description: O(scope=cluster) - where the previous data directory is kept.
  returned: after a cluster recovery
  type: str
  sample: /var/lib/postgresql/15/main.pre_pitr_20261125T141000Z
replay:
  description: Seconds spent restoring the base backup and replaying WAL (O(scope=database)).
  returned: after a database recovery
  type: dict
  sample: {"restore_seconds": 1.2, "replay_seconds": 4.8, "dumped_backup": "20261125T141003Z"}
rpo_seconds:
  description: O(state=drilled) - age of the newest archived WAL segment.
  returned: state=drilled
  type: float
  sample: 41.2
rto_seconds:
  description: O(state=drilled) - how long the drill's restore, replay and checks took.
  returned: state=drilled and not check mode
  type: float
  sample: 12.5
amcheck:
  description: O(state=drilled) - the result of pg_amcheck on the throwaway cluster.
  returned: state=drilled and not check mode
  type: dict
  sample: {"exit": 0, "problems": []}
tables:
  description: O(state=drilled) - per database, the newest logical backup compared with, and tables missing.
  returned: state=drilled and not check mode
  type: dict
  sample: {"databases": {"chat": {"logical_backup": "20261125T010000Z", "tables": 3, "missing": [], "rows_differ": 1}}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, validate_name
from ansible_collections.runbook.recovery.plugins.module_utils.pg_pitr import (
    ClusterPitr,
    DatabasePitr,
    Drill,
    archive_argument_spec,
    archive_config,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import Archive, parse_target
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def act(recovery, check_mode: bool) -> dict:
    """The plan or the run; a failure carries what the run had done and undone."""
    try:
        if check_mode:
            recovery.plan()
        else:
            recovery.run()
    except RunbookError as exc:
        exc.details = {**recovery.result, **exc.details}
        raise
    return recovery.result


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(archive_argument_spec())
    argument_spec.update(
        state=dict(type="str", choices=["restored", "drilled", "undone"], default="restored"),
        scope=dict(type="str", choices=["database", "cluster"], default="database"),
        database=dict(type="str"),
        databases=dict(type="list", elements="str", default=[]),
        target_time=dict(type="str"),
        target_lsn=dict(type="str"),
        target_name=dict(type="str"),
        target=dict(type="str", choices=["latest"]),
        backup_root=dict(type="path"),
        work_dir=dict(type="path", default="/var/tmp/runbook-pitr"),
        jobs=dict(type="int", default=2),
        keep_previous=dict(type="int", default=2),
        health_query=dict(type="str", default="SELECT 1"),
        force=dict(type="bool", default=False),
        lock_wait=dict(type="float", default=10),
        replay_timeout=dict(type="float", default=3600),
        stop_command=dict(type="list", elements="str", default=[]),
        start_command=dict(type="list", elements="str", default=[]),
        data_directory=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = {"changed": False}
    with failures_reported(module, result):
        if p["replay_timeout"] <= 0:
            raise RunbookError(f"replay_timeout={p['replay_timeout']} must be above 0 seconds.")
        archive = Archive(archive_config(p))
        params = ConnParams.from_params(p)
        if p["state"] == "undone":
            recovery = ClusterPitr(params, archive, parse_target(None, None, None, "latest"), p["stop_command"],
                                   p["start_command"], data_directory=p["data_directory"], work_dir=p["work_dir"])
            result = recovery.undo_interrupted(module.check_mode)
        elif p["state"] == "drilled":
            for name in p["databases"]:
                validate_name(name)
            drill = Drill(params, archive, p["work_dir"], LocalStore(p["backup_root"]) if p["backup_root"] else None,
                          p["databases"], replay_timeout=p["replay_timeout"], jobs=p["jobs"])
            result = drill.run(module.check_mode)
        else:
            target = parse_target(p["target_time"], p["target_lsn"], p["target_name"], p["target"])
            if p["scope"] == "cluster":
                recovery = ClusterPitr(params, archive, target, p["stop_command"], p["start_command"],
                                       health_query=p["health_query"], replay_timeout=p["replay_timeout"],
                                       data_directory=p["data_directory"], force=p["force"],
                                       work_dir=p["work_dir"])
                result = act(recovery, module.check_mode)
            else:
                if not p["database"]:
                    raise RunbookError("name the database to recover (database), or use scope=cluster.")
                if not p["backup_root"]:
                    raise RunbookError("backup_root is required for scope=database (the store records the target "
                                       "the recovered database holds).")
                recovery = DatabasePitr(params, LocalStore(p["backup_root"]), p["database"], archive, target,
                                        p["work_dir"], replay_timeout=p["replay_timeout"], jobs=p["jobs"],
                                        keep_previous=p["keep_previous"], health_query=p["health_query"],
                                        force=p["force"], lock_wait=p["lock_wait"])
                result = act(recovery, module.check_mode)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
