#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dynamodb_restore
short_description: Restore a DynamoDB table into a new table with what AWS drops, check it, and point a Lambda function at it
description:
  - Restores O(table) from an on-demand backup or a point in time into a new table (default
    C(<table>-restored-<UTC time of the data>)), waits until it is C(ACTIVE), and counts its items exactly (a
    strongly consistent parallel C(Scan) in O(count_segments) segments).
  - "The count check says which comparison it made (RV(count_check)): from a backup with a count recorded by
    M(runbook.recovery.dynamodb_backup) (the SSM parameter C(<count_record_prefix>/<table>/<backup id>)), the counts
    must be equal; otherwise (a point in time, or a backup without a record) the count may differ from AWS's
    approximate C(ItemCount) (refreshed about every six hours: of the table when the backup was taken, or of the
    table now) by at most O(count_tolerance) of the larger of the two, and an C(ItemCount) of 0 (not yet refreshed)
    is not compared. A failed check, or a record that is not the one written for that backup, stops the restore
    before anything is repointed; the restored table is kept."
  - Then puts on the new table what a restore does not carry over (O(copy_settings)), each read from the source
    table, and reads each back; a difference fails the run before anything is repointed. Point-in-time recovery
    (with its recovery period), TTL, the stream specification, tags (but C(runbook:*) records of the source's own
    state), Application Auto Scaling targets and policies of the table and its indexes
    (C(dynamodb:table:ReadCapacityUnits), C(dynamodb:index:WriteCapacityUnits), ...; a customized metric's
    C(TableName) dimension names the new table), the source's CloudWatch metric alarms re-created on the dimension
    C(TableName=<target>) (named with the target's name in place of the source's, or C(<name>-<target>); an action
    on a source scaling policy acts on the new one; the target-tracking alarms AWS owns are made by the policies),
    and deletion protection, last.
  - "With O(function) and O(variable), sets that one environment variable of the function to the restored table
    (every other variable is sent back unchanged), then checks the result (the variable reads back, and the item
    O(check_item) is in the restored table). Repointing and check are one unit: any failure after the variable is
    written (a failed check, an AWS error of the check such as a O(check_item) key of the wrong shape, a failed
    wait) puts the variable back and says so; if putting it back fails too, the message says it still names the
    new table and how to set it back."
  - A failure message ends with what was changed before it and what was undone (RV(changes), RV(undone)).
  - The source table is never deleted or changed. The same request names the same target table, so a rerun
    does not restore again and only puts what the table still lacks (C(changed=false) when nothing).
  - A table, backup or function that does not exist, a restore time in the future or before the point-in-time
    window, point-in-time recovery that is off, a O(count_tolerance) outside 0-1, or a count record that is not
    this procedure's fails before anything changes.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Resolves the source, the target, the count record and the settings to put, and reports the plan; changes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  table:
    description: The source table.
    type: str
    required: true
  restore_from:
    description: V(latest-backup), V(pitr), or a backup name or ARN.
    type: str
    default: latest-backup
  restore_time:
    description: For V(pitr), an ISO time with a zone (V(2026-11-23T10:00:00Z)); the latest restorable time when unset.
    type: str
  target_table:
    description: Name of the new table; defaults to C(<table>-restored-<UTC time of the data>).
    type: str
  function:
    description: Lambda function to point at the restored table.
    type: str
  variable:
    description: The function's environment variable that names the table (for example V(SESSIONS_TABLE)).
    type: str
  check_item:
    description: "Key of an item that must be in the restored table for the repointing to stand, in DynamoDB's
      typed form (V({pk: {S: user-1}}))."
    type: dict
  copy_settings:
    description: What to put on the restored table from the source (all by default).
    type: list
    elements: str
    choices: [pitr, ttl, stream, tags, deletion_protection, auto_scaling, alarms]
    default: [pitr, ttl, stream, tags, deletion_protection, auto_scaling, alarms]
  count_tolerance:
    description: "Without a recorded count: the share (0 to 1) of the larger count by which the restored table's
      count may differ from AWS's approximate C(ItemCount); 0 demands equality, 1 accepts any count. Raise it when
      the table changed much since the restore time or in the last six hours."
    type: float
    default: 0.1
  count_segments:
    description: Segments of the parallel C(Scan) that counts the restored table (1 to 1000000).
    type: int
    default: 4
  count_record_prefix:
    description: SSM parameter path of the backups' counts (as given to M(runbook.recovery.dynamodb_backup)).
    type: str
    default: /runbook/dynamodb-backup-counts
"""

EXAMPLES = r"""
- name: Restore the sessions table from its newest backup and point the handler at it
  runbook.recovery.dynamodb_restore:
    table: chatbot-sessions
    restore_from: latest-backup
    function: ChatbotLambdaStack-WebSocketHandler
    variable: SESSIONS_TABLE

- name: Restore to a point in time, without the alarms, the count within 20% of AWS's approximate one
  runbook.recovery.dynamodb_restore:
    table: chatbot-sessions
    restore_from: pitr
    restore_time: "2026-11-23T10:00:00Z"
    copy_settings: [pitr, ttl, stream, tags, deletion_protection, auto_scaling]
    count_tolerance: 0.2
"""

RETURN = r"""
source:
  description: What was restored from; for a backup, its count record and the count it holds (null without one).
  returned: always
  type: dict
  sample: {"kind": "backup", "name": "chatbot-sessions-20261123T051200Z", "at": "2026-11-23T05:12:00.000000Z",
           "arn": "arn:aws:dynamodb:us-east-1:123456789012:table/chatbot-sessions/backup/01796419491236-d20cdc18",
           "approximate_count": 1990, "recorded_count": 2000,
           "count_record": "/runbook/dynamodb-backup-counts/chatbot-sessions/01796419491236-d20cdc18"}
target_table:
  description: The restored table.
  returned: always
  type: str
  sample: chatbot-sessions-restored-20261123T051200Z
item_count:
  description: Items in the restored table (null in check mode).
  returned: always
  type: int
  sample: 2000
count_check:
  description: The count comparison made, in words (V(exact:), V(approximate:) or V(none:) first).
  returned: when the table was counted
  type: str
  sample: "exact: 2000 items, 2000 counted when the backup was taken"
settings_to_copy:
  description: What the restored table lacked of the source's settings when planned.
  returned: always
  type: list
  elements: str
  sample: ["point-in-time recovery (35 days)", "TTL on expires", "tags team", "deletion protection"]
settings_copied:
  description: What was put on the restored table in this run.
  returned: success
  type: list
  elements: str
  sample: ["TTL on expires", "alarm chatbot-sessions-restored-20261123T051200Z-throttles (missing)"]
settings_checked:
  description: The source's settings the restored table was read back with.
  returned: success
  type: list
  elements: str
  sample: ["point-in-time recovery (35 days)", "TTL on expires", "stream NEW_AND_OLD_IMAGES", "tags team",
           "deletion protection", "auto scaling target table dynamodb:table:ReadCapacityUnits (5-50)",
           "scaling policy table dynamodb:table:ReadCapacityUnits read-target", "alarm chatbot-sessions-restored-20261123T051200Z-throttles"]
repointed:
  description: Whether the function's variable now names the restored table.
  returned: always
  type: bool
  sample: true
rolled_back:
  description: On a failure after repointing, whether the variable was put back.
  returned: failure
  type: bool
  sample: true
previous_value:
  description: What the variable held before.
  returned: when function is given
  type: str
  sample: chatbot-sessions
changes:
  description: On failure, what was changed before it and is still in place (the restored table, the settings put on it).
  returned: failure
  type: list
  elements: str
  sample: ["table chatbot-sessions-restored-20261123T051200Z restored from chatbot-sessions-20261123T051200Z"]
undone:
  description: On failure, what was changed and then undone (the repointed variable).
  returned: failure
  type: list
  elements: str
  sample: ["SESSIONS_TABLE of handler set to chatbot-sessions-restored-20261123T051200Z (put back to 'chatbot-sessions')"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import (
    COPIED_SETTINGS,
    COUNT_RECORD_PREFIX,
    COUNT_SEGMENTS,
    COUNT_TOLERANCE,
    TableRestore,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import utc_now


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        table=dict(type="str", required=True),
        restore_from=dict(type="str", default="latest-backup"),
        restore_time=dict(type="str"),
        target_table=dict(type="str"),
        function=dict(type="str"),
        variable=dict(type="str"),
        check_item=dict(type="dict"),
        copy_settings=dict(type="list", elements="str", choices=list(COPIED_SETTINGS), default=list(COPIED_SETTINGS)),
        count_tolerance=dict(type="float", default=COUNT_TOLERANCE),
        count_segments=dict(type="int", default=COUNT_SEGMENTS),
        count_record_prefix=dict(type="str", default=COUNT_RECORD_PREFIX),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=[("function", "variable")])
    p = module.params
    with aws_failures_reported(module, "restoring DynamoDB") as outcome:
        unit = TableRestore(Clients(p), p["table"], p["restore_from"], p["restore_time"], p["target_table"],
                            p["function"], p["variable"], p["check_item"], p["copy_settings"], p["count_tolerance"],
                            p["count_segments"], p["count_record_prefix"])
        result = unit.plan(utc_now())
        if module.check_mode:
            module.exit_json(**unit.check_mode_result(result))
        result = unit.apply(result, outcome)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
