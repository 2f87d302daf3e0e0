#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dynamodb_backup
short_description: On-demand DynamoDB backups with retention, and point-in-time recovery ensured
description:
  - For each table, turns point-in-time recovery on when it is off (O(ensure_pitr)), takes an on-demand backup
    named C(<table>-<UTC time>) and waits until it is C(AVAILABLE), unless one is younger than
    O(skip_if_newer_than) (so a second run changes nothing), then applies retention.
  - With O(count_items), counts the table's items exactly (a strongly consistent parallel C(Scan) with
    C(Select=COUNT) in O(count_segments) segments) just before the backup and again once it is C(AVAILABLE); when
    both counts agree, the count is kept with the backup as an SSM parameter
    C(<count_record_prefix>/<table>/<backup id>) holding JSON C({backup_arn, item_count, segments, counted_at}).
    M(runbook.recovery.dynamodb_restore) compares a restore from that backup with it exactly. DynamoDB cannot tag
    an on-demand backup (only AWS Backup's advanced DynamoDB backups), hence SSM.
  - Retention deletes on-demand backups beyond the newest O(keep_last) that are also older than O(max_age_days)
    when given, with their count records; the newest backup is never deleted, so a table always keeps one.
  - A failure names what was changed before it (on earlier tables too, such as PITR turned on, backups created,
    counts recorded, backups deleted) in the message and in RV(changes); nothing is undone, each of those is
    wanted.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reports the backup it would take and the backups it would delete; changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  tables:
    description: Table names.
    type: list
    elements: str
    required: true
  keep_last:
    description: Newest backups always kept per table.
    type: int
    default: 7
  max_age_days:
    description: When set, a backup beyond O(keep_last) is deleted only once it is older than this.
    type: float
  skip_if_newer_than:
    description: No new backup when the newest is younger than this (V(1h), V(30m); V(0) always backs up).
    type: str
    default: 1h
  ensure_pitr:
    description: Turn point-in-time recovery on where it is off.
    type: bool
    default: true
  count_items:
    description: Count each new backup's items exactly and record the count (one SSM parameter per backup).
    type: bool
    default: true
  count_segments:
    description: Segments of the parallel C(Scan) that counts (1 to 1000000); more for large tables.
    type: int
    default: 4
  count_record_prefix:
    description: SSM parameter path under which the counts are kept (the same for M(runbook.recovery.dynamodb_restore)).
    type: str
    default: /runbook/dynamodb-backup-counts
"""

EXAMPLES = r"""
- name: Nightly DynamoDB backups, a week kept
  runbook.recovery.dynamodb_backup:
    tables: [chatbot-sessions, chatbot-connections]
    keep_last: 7
"""

RETURN = r"""
tables:
  description: Per table, the backup created (or why none was), the backups deleted and kept, and whether PITR was turned on.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "chatbot-sessions", "created": "chatbot-sessions-20261123T051200Z", "deleted": [],
            "kept": ["chatbot-sessions-20261123T051200Z"], "pitr_enabled_now": true, "item_count": 2000,
            "count_record": "/runbook/dynamodb-backup-counts/chatbot-sessions/01796419491236-d20cdc18",
            "changed": true}]
changes:
  description: On failure, what was changed before it and is still in place, in order.
  returned: failure
  type: list
  elements: str
  sample: ["point-in-time recovery of chatbot-sessions turned on", "backup chatbot-sessions-20261123T051200Z of chatbot-sessions created"]
undone:
  description: On failure, what was changed and then undone (nothing here; kept for the shape every AWS module shares).
  returned: failure
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import (
    COUNT_RECORD_PREFIX,
    COUNT_SEGMENTS,
    backup_table,
    check_count_options,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, parse_duration


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        tables=dict(type="list", elements="str", required=True),
        keep_last=dict(type="int", default=7),
        max_age_days=dict(type="float"),
        skip_if_newer_than=dict(type="str", default="1h"),
        ensure_pitr=dict(type="bool", default=True),
        count_items=dict(type="bool", default=True),
        count_segments=dict(type="int", default=COUNT_SEGMENTS),
        count_record_prefix=dict(type="str", default=COUNT_RECORD_PREFIX),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "backing up DynamoDB") as outcome:
        if p["keep_last"] < 1:
            raise RunbookError(f"keep_last={p['keep_last']}: keep at least 1 backup.")
        if p["max_age_days"] is not None and p["max_age_days"] < 0:
            raise RunbookError(f"max_age_days={p['max_age_days']} is negative.")
        check_count_options(p["count_segments"], p["count_record_prefix"])
        skip = parse_duration(p["skip_if_newer_than"])
        clients = Clients(p)
        results = [backup_table(clients, table, p["keep_last"], p["max_age_days"], skip, p["ensure_pitr"],
                                module.check_mode, outcome, p["count_items"], p["count_segments"],
                                p["count_record_prefix"]) for table in p["tables"]]
    module.exit_json(changed=any(r["changed"] for r in results), tables=results)


if __name__ == "__main__":
    main()
