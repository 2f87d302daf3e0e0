#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_base_backup
short_description: Take compressed base backups to S3 with barman-cloud-backup, apply a recovery window, check the archive
description:
  - "Take a base backup (C(barman-cloud-backup), compressed, parallel upload, run as the data
    directory's owner on the database host) unless one finished within O(skip_if_newer_than); then delete what
    the recovery window no longer needs (C(barman-cloud-backup-delete -r 'RECOVERY WINDOW OF N DAYS'), keeping at
    least O(minimum_redundancy) backups and the WAL they need); then check the archive."
  - "The check: base backups, the recoverable window, the newest archived WAL segment and its age, and every WAL
    segment missing since the oldest backup began (gaps). In check mode only this, and what would be taken and
    deleted."
version_added: 0.2.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
  - runbook.recovery.postgres.ARCHIVE
attributes:
  check_mode:
    support: full
    description: Says whether a backup would be taken and which backups retention would delete.
  diff_mode:
    support: none
    description: RV(created) and RV(removed) name the change.
options:
  skip_if_newer_than:
    description: Seconds; no backup is taken when the newest finished within this time. Unset, one is always taken.
    type: float
  recovery_window_days:
    description: Point-in-time recovery must reach this many days back; older backups (and their WAL) go.
    type: int
    default: 7
  minimum_redundancy:
    description: Base backups always kept, whatever their age.
    type: int
    default: 1
  jobs:
    description: Parallel upload workers of barman-cloud-backup.
    type: int
    default: 2
  adopt:
    description:
      - Take the first base backup of a new generation of this server's own when the destination under
        O(archive.server_name) holds another cluster's archive (see M(runbook.recovery.pg_archiving)'s O(adopt));
        without it, another cluster's archive is refused.
    type: bool
    default: false
seealso:
  - module: runbook.recovery.pg_archiving
  - module: runbook.recovery.pg_pitr
"""

EXAMPLES = r"""
- name: Nightly base backup, 7 days of point-in-time recovery
  runbook.recovery.pg_base_backup:
    archive: "{{ pg_archive }}"
    recovery_window_days: 7
    skip_if_newer_than: 43200
"""

RETURN = r"""
created:
  description: The id of the base backup taken, or null.
  returned: always
  type: str
  sample: 20261125T010002
removed:
  description: Base backups deleted by the recovery window.
  returned: always
  type: list
  elements: str
  sample: []
backups:
  description: The finished base backups, oldest first (id, name, timeline, begin/end WAL, LSN and time, size).
  returned: always
  type: list
  elements: dict
  sample: [{"id": "20261125T010002", "end_time": "2026-11-25T01:00:31.000000Z", "size_bytes": 72351744}]
newest_backup_age_hours:
  description: Age of the newest base backup.
  returned: always
  type: float
  sample: 13.2
window:
  description: The recoverable window (from the oldest backup's end to the newest archived WAL).
  returned: always
  type: dict
  sample: {"from": "2026-11-18T01:00:31.000000Z", "to": "2026-11-25T14:02:51.000000Z"}
gaps:
  description: WAL segments (ranges) missing from the archive since the oldest backup began.
  returned: always
  type: list
  elements: str
  sample: []
newest_wal_at:
  description: When the newest archived WAL segment reached the archive (its age is the RPO right now).
  returned: always
  type: str
  sample: "2026-11-25T14:02:51.000000Z"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.pg_archive import BaseBackups
from ansible_collections.runbook.recovery.plugins.module_utils.pg_pitr import archive_argument_spec, archive_config
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import Archive
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(archive_argument_spec())
    argument_spec.update(
        skip_if_newer_than=dict(type="float"),
        recovery_window_days=dict(type="int", default=7),
        minimum_redundancy=dict(type="int", default=1),
        jobs=dict(type="int", default=2),
        adopt=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = {"changed": False}
    with failures_reported(module, result):
        backups = BaseBackups(ConnParams.from_params(p), Archive(archive_config(p), connection=p["aws_connection"]),
                              p["skip_if_newer_than"], p["recovery_window_days"], p["minimum_redundancy"], p["jobs"],
                              adopt=p["adopt"])
        result = backups.run(module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
