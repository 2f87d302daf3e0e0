#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_recover_rows
short_description: Bring back tables of a PostgreSQL database, or the rows a statement deleted, while it keeps serving
description:
  - "The source is the database at a point in time (O(target_time), O(target_lsn) or O(target_name): the newest base
    backup before it is restored into a throwaway cluster under O(work_dir) and replayed to it, as
    M(runbook.recovery.pg_pitr) does) or a logical backup (O(backup): restored into a throwaway cluster). The live
    database keeps serving, and keeps every write made after the source, in every table."
  - "O(mode=side) writes the rows each table had at the source into a new table beside it,
    C(<table>__recovered_<source>), for a person to inspect and use; the live table is not touched. A second run finds
    the side table holding the same rows and changes nothing; a side table holding other rows is refused."
  - "O(mode=missing) inserts the rows present at the source and absent from the live table, by its primary key (or a
    unique key on not-null columns); rows the live table has are never changed. A table without such a key is refused.
    Tables are handled parents first; a row whose parent row is gone live is refused, naming it, unless
    O(with_parents) brings the parents back from the source too (and theirs)."
  - "O(mode=replace) makes each table's content the source's, in place (its grants, indexes, triggers and the foreign
    keys pointing at it stay): the current rows are first copied to C(<table>__pre_recovery_<time>). A row another
    table points at is never deleted: that is refused, naming the rows."
  - "Serial and identity columns keep the values the rows had, and their sequences are only ever moved forward."
  - "O(where), one SQL expression, selects the rows to bring back. It never reaches the live server: PostgreSQL checks
    it on the throwaway cluster inside a read-only transaction before anything is written; a semicolon is refused."
  - "What to write is decided on the throwaway (the live database is only read until then), and written in one
    transaction. The run holds the database's recovery lock (the one M(runbook.recovery.pg_restore_db) takes)."
  - "Check mode builds the source and reports, per table, the rows at the source, the rows live, how many would be
    written and a sample of their keys; it writes nothing live (a point-in-time source makes the server archive its
    current WAL segment first, as a real run does)."
version_added: 0.4.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
  - runbook.recovery.postgres.ARCHIVE
attributes:
  check_mode:
    support: full
    description: Builds the source and reports what would be written; writes nothing live.
  diff_mode:
    support: none
    description: The result's tables say what changes.
options:
  database:
    description: The database the tables are in.
    type: str
    required: true
  tables:
    description: The tables, as NAME (found in any schema, refused when in several) or SCHEMA.NAME.
    type: list
    elements: str
    required: true
  mode:
    description: V(side), V(missing) or V(replace) (see the description).
    type: str
    choices: [side, missing, replace]
    default: side
  where:
    description: One SQL expression choosing the rows to bring back (not with O(mode=replace)); empty takes them all.
    type: str
    default: ""
  with_parents:
    description: O(mode=missing) - also bring back, from the source, the parent rows the rows need and the live tables lack.
    type: bool
    default: false
  backup:
    description: A logical backup as the source (V(latest) or a backup id); give this or one target.
    type: str
  backup_root:
    description: The logical backup store (for O(backup)).
    type: path
  target_time:
    description: The source is the database at this instant, with a zone (V(2026-11-25T14:02:00Z)).
    type: str
  target_lsn:
    description: Or at this LSN (V(0/3000148)), for example an audit record's C(restore_point.lsn).
    type: str
  target_name:
    description: Or at this restore point (the C(restore_point.name) an audit record of ours gives).
    type: str
  archive:
    description:
      - The WAL archive, for a point-in-time source (not needed with O(backup)). Its options are
        M(runbook.recovery.pg_pitr)'s.
    type: dict
    required: false
  work_dir:
    description: Where the throwaway cluster lives; needs about the source's size free. Leftovers of killed runs go.
    type: path
    default: /var/tmp/runbook-pitr
  jobs:
    description: Parallel pg_restore workers (a logical backup source).
    type: int
    default: 2
  lock_wait:
    description: Seconds to wait for another recovery of the database, and for a table lock when writing.
    type: float
    default: 10
  replay_timeout:
    description: Seconds the replay may take.
    type: float
    default: 3600
  expect_source:
    description:
      - The source a sealed plan resolved (its C(source)); the run refuses, before writing, one that resolves
        differently (another base backup or backup).
    type: dict
    default: {}
seealso:
  - module: runbook.recovery.pg_pitr
  - module: runbook.recovery.pg_restore_db
"""

EXAMPLES = r"""
- name: Bring back the messages deleted after 14:00 that the table lacks, as they were at 14:02
  runbook.recovery.pg_recover_rows:
    database: chat
    tables: [chat_messages]
    mode: missing
    where: "created_at >= '2026-12-01'"
    target_time: "2026-12-07T14:02:00Z"
    archive: "{{ pg_archive_settings }}"

- name: The users table as the newest backup has it, beside the live one
  runbook.recovery.pg_recover_rows:
    database: chat
    tables: [public.users]
    backup: latest
    backup_root: /var/backups/postgresql
"""

RETURN = r"""
source:
  description: The source as resolved (the backup, or the base backup, WAL range and target).
  returned: always
  type: dict
  sample: {"kind": "pitr", "base_backup": "20261207T010000", "target": "time 2026-12-07T14:02:00.000000Z"}
tables:
  description: Per table, parents first - its key, the rows at the source and live, the rows to write and a sample of their keys, what was written.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "public.chat_messages", "key": ["id"], "rows_source": 8000, "rows_live": 4012, "to_write": 3988,
            "sample_keys": [2, 4, 6, 8, 10], "written": 3988}]
restore_point:
  description: The restore point made just before the write (its name and LSN), which a point-in-time recovery can target.
  returned: when something was written
  type: dict
seconds:
  description: Where the time went - the source built (restore, replay), the plan decided on it, the write.
  returned: always
  type: dict
  sample: {"source": 14.2, "plan": 3.1, "write": 2.4}
elapsed_seconds:
  description: How long the run took (source built, rows written).
  returned: when something was written
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.pg_pitr import archive_argument_spec, archive_config
from ansible_collections.runbook.recovery.plugins.module_utils.pg_rows import MODES, RowRecovery, Source
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import Archive, parse_target
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(archive_argument_spec())
    argument_spec["archive"]["required"] = False
    argument_spec.update(
        database=dict(type="str", required=True),
        tables=dict(type="list", elements="str", required=True),
        mode=dict(type="str", choices=list(MODES), default="side"),
        where=dict(type="str", default=""),
        with_parents=dict(type="bool", default=False),
        backup=dict(type="str"),
        backup_root=dict(type="path"),
        target_time=dict(type="str"),
        target_lsn=dict(type="str"),
        target_name=dict(type="str"),
        work_dir=dict(type="path", default="/var/tmp/runbook-pitr"),
        jobs=dict(type="int", default=2),
        lock_wait=dict(type="float", default=10),
        replay_timeout=dict(type="float", default=3600),
        expect_source=dict(type="dict", default={}),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = {"changed": False}
    with failures_reported(module, result):
        targets = [k for k in ("target_time", "target_lsn", "target_name") if p[k] not in (None, "")]
        if bool(p["backup"]) == bool(targets):
            raise RunbookError("give one source: backup (latest or an id) or one of target_time, target_lsn, "
                               "target_name" + (f", not {', '.join(targets + (['backup'] if p['backup'] else []))}"
                                                if targets else "") + ". Nothing was changed.")
        if p["jobs"] < 1 or p["replay_timeout"] <= 0:
            raise RunbookError("jobs must be 1 or more and replay_timeout above 0. Nothing was changed.")
        target = archive = None
        if targets:
            target = parse_target(p["target_time"], p["target_lsn"], p["target_name"])
            if not p["archive"]:
                raise RunbookError("a point-in-time source needs the archive (pg_archive in the inventory, set up by "
                                   "setup-archiving.yml). Nothing was changed.")
            archive = Archive(archive_config(p))
        params = ConnParams.from_params(p)
        source = Source(params, p["database"], p["work_dir"], p["jobs"], p["backup_root"], p["backup"], archive,
                        target, p["replay_timeout"])
        recovery = RowRecovery(params, p["database"], p["tables"], source, mode=p["mode"], where=p["where"],
                               with_parents=p["with_parents"], lock_wait=p["lock_wait"],
                               expect_source=p["expect_source"])
        try:
            result = recovery.run(module.check_mode)
        except RunbookError as exc:
            exc.details = {**recovery.result, **exc.details}
            raise
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
