#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_archiving
short_description: Turn on continuous WAL archiving to S3 with Barman's cloud tools, and prove it works
description:
  - "Sets C(archive_mode), C(archive_timeout) (the RPO bound, 1 to 60 seconds) and C(archive_command)
    (C(barman-cloud-wal-archive) into O(archive.destination)) with C(ALTER SYSTEM), and C(wal_level=replica) when
    it is C(minimal). Only what differs is written; a reload applies C(archive_command) and C(archive_timeout)."
  - A restart happens only when C(archive_mode) or C(wal_level) changes (or such a change is still waiting for
    one), through O(restart_command); the plan says so.
  - The bucket must exist, or is created with O(create_bucket=true).
  - With O(check=true), a committed transaction's WAL segment is switched and the module waits until the archiver
    has sent it; a failing archiver is an error naming the segment.
version_added: 0.2.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
  - runbook.recovery.postgres.ARCHIVE
attributes:
  check_mode:
    support: full
    description: Reports the settings it would change and whether a restart would follow.
  diff_mode:
    support: none
    description: RV(plan) lists each setting's before and after.
options:
  archive_timeout:
    description: Seconds after which a segment with any write is archived even if not full.
    type: int
    default: 60
  restart_command:
    description: How the host restarts PostgreSQL (only run when C(archive_mode) or C(wal_level) changes).
    type: list
    elements: str
    default: []
  create_bucket:
    description: Create the archive bucket when it does not exist.
    type: bool
    default: false
  check:
    description: Switch WAL and wait until the archiver has sent the segment (a real run only).
    type: bool
    default: true
  adopt:
    description:
      - When the destination under O(archive.server_name) holds another cluster's base backups or WAL (a different
        system identifier, as after a rebuild with a new C(initdb) or an upgrade by dump and restore), start a
        new generation of this server's own, C(SERVER_NAME.SYSTEM_IDENTIFIER), instead of refusing. The other
        generation is kept untouched. Every module finds the generation afterwards by the server's identifier.
    type: bool
    default: false
  tools_installed_by_run:
    description:
      - The run installs Barman's cloud tools before this task (the C(pg_archive) role does). In check mode, tools
        that are missing are then reported in RV(plan) as to be installed instead of refused.
    type: bool
    default: false
seealso:
  - module: runbook.recovery.pg_base_backup
  - module: runbook.recovery.pg_pitr
"""

EXAMPLES = r"""
- name: Archive WAL to S3, RPO 60 s
  runbook.recovery.pg_archiving:
    archive: "{{ pg_archive }}"
    archive_timeout: 60
    restart_command: [systemctl, restart, postgresql@15-main]
"""

RETURN = r"""
plan:
  description: The settings that differ (before/after), whether a restart is needed and for which, the bucket.
  returned: always
  type: dict
  sample: {"changes": {"archive_mode": {"before": "off", "after": "on"}}, "restart_needed": true,
           "restart_for": ["archive_mode"], "bucket": "exists", "tools": "installed",
           "destination": {"server_name": "chat-db", "state": "empty"}}
archive_generation:
  description: Whose the destination is and which server name this server archives under (its own generation when
    the name holds another cluster's archive).
  returned: always
  type: dict
  sample: {"server_name": "chat-db.7451234567890123456", "state": "a new generation of this server",
           "other_generation": {"server_name": "chat-db", "systems": ["7391234567890123456"]}}
settings:
  description: The archive settings now.
  returned: always
  type: dict
  sample: {"archive_mode": "on", "archive_timeout": "60", "wal_level": "replica"}
restarted:
  description: Whether the server was restarted.
  returned: always
  type: bool
  sample: false
archiver:
  description: pg_stat_archiver after the run, with the segments waiting (C(.ready)) and the oldest one's age.
  returned: success, not check mode
  type: dict
  sample: {"archived_count": 12, "failed_count": 0, "failing": false, "pending_segments": 0, "lag_seconds": 0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.pg_archive import Archiving
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
        archive_timeout=dict(type="int", default=60),
        restart_command=dict(type="list", elements="str", default=[]),
        create_bucket=dict(type="bool", default=False),
        check=dict(type="bool", default=True),
        adopt=dict(type="bool", default=False),
        tools_installed_by_run=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = {"changed": False}
    with failures_reported(module, result):
        archiving = Archiving(ConnParams.from_params(p), Archive(archive_config(p), connection=p["aws_connection"]),
                              p["archive_timeout"], p["restart_command"], p["create_bucket"], p["check"],
                              adopt=p["adopt"], tools_installed_by_run=p["tools_installed_by_run"])
        result = archiving.run(module.check_mode)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
