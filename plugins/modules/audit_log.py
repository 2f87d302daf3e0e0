#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_log
short_description: Append one JSON line to the audit log of recovery procedures
description:
  - Appends a record (when, who, on which host, which procedure, what, before and after, result, and the reason
    given in C(RUNBOOK_REASON) when set) as one
    JSON line to O(path), under an exclusive lock, creating the file 0600.
  - The audit log records runs; it is not managed state. Appending is therefore reported as
    C(changed=false), so that a playbook's second run still shows C(changed=0) for the systems it manages.
  - In check mode nothing is written.
  - When O(path) cannot be written (a full or read-only disk), the record is kept in a spool (C(RUNBOOK_AUDIT_SPOOL),
    default C(~/.local/state/runbook-recovery/audit-spool), 0600 files) and the task warns loudly without failing,
    so what the run did is never undone for its record. The next record appended to O(path) appends the spooled ones
    first, in order, each with C(spooled) saying why it was late. The task fails only when the spool cannot be
    written either.
  - It always runs on the controller, as an action plugin, without starting a module process; the module is
    what runs when it is called another way (ansible -m, or delegated to another host).
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
attributes:
  check_mode:
    support: full
    description: Writes nothing; returns the record that would be appended.
  diff_mode:
    support: none
    description: There is no file-like state to diff; the result's before and after describe the change.
options:
  path:
    description: The audit log file (JSON lines).
    type: path
    required: true
  procedure:
    description: Name of the procedure, for example V(recover-db).
    type: str
    required: true
  result:
    description: Outcome, for example V(recovered), V(unchanged), V(refused), V(rolled_back), V(failed).
    type: str
    required: true
  actor:
    description:
      - Who ran it. Defaults to C(RUNBOOK_ACTOR) from the environment (Airflow sets the triggering user),
        then C(SUDO_USER), then the login name.
    type: str
  details:
    description: Anything else worth keeping (database, backup id, before, after, error). Must not contain secrets.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Record the recovery
  runbook.recovery.audit_log:
    path: /var/log/runbook-recovery/audit.jsonl
    procedure: recover-db
    result: recovered
    details:
      database: chat
      backup: 20261123T051200Z
  delegate_to: localhost
"""

RETURN = r"""
record:
  description: The record appended (or that would be, in check mode).
  returned: always
  type: dict
  sample: {"at": "2026-11-23T05:12:03.123456Z", "actor": "alice", "controller": "ops-1", "procedure": "recover-db",
           "result": "recovered", "database": "chat", "backup": "20261123T051200Z"}
spooled:
  description: The spool file the record was kept in, because O(path) could not be written; null when it was.
  returned: always
  type: str
flushed:
  description: How many spooled records for O(path) were appended before this one.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.audit import (
    ARGUMENT_SPEC,
    make_record,
    record_or_spool,
    spool_dir,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    record = make_record(module.params)
    result = {"changed": False, "spooled": None, "flushed": 0}
    if not module.check_mode:
        try:
            written = record_or_spool(module.params["path"], record)
        except OSError as exc:
            module.fail_json(msg=f"cannot append to the audit log {module.params['path']}, nor keep the record in "
                                 f"the spool {spool_dir()}: {exc}", record=record)
        record = written["record"]
        result.update(spooled=written["spooled"], flushed=written["flushed"])
        if written["spooled"]:
            module.warn(f"AUDIT RECORD NOT WRITTEN: {written['error']}. It is kept in {written['spooled']} and will "
                        "be appended, before its own, by the next record written to that log. What this run did is "
                        "done; it was not undone.")
    module.exit_json(record=record, **result)


if __name__ == "__main__":
    main()
