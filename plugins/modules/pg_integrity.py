#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_integrity
short_description: Check a PostgreSQL database for corruption with amcheck (heap and B-tree indexes)
description:
  - Runs C(verify_heapam) on every table and C(bt_index_check) on every valid B-tree index (with
    O(heapallindexed), also that every heap tuple has its index entry). A relation whose pages cannot even
    be read (checksum failure) is reported as corrupt too.
  - Creates the C(amcheck) extension first when O(create_extension=true) (the only change it makes).
  - Fails the task when corruption is found, and returns every corrupt relation with the message.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
attributes:
  check_mode:
    support: full
    description: Checks (amcheck only reads) when the extension exists; otherwise reports that it would create it.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  database:
    description: Database to check.
    type: str
    required: true
  heapallindexed:
    description: Also verify that every heap tuple has an index entry (slower, reads the whole table per index).
    type: bool
    default: false
  check_heap:
    description: Run C(verify_heapam) on tables, not only the index checks.
    type: bool
    default: true
  create_extension:
    description: Create the C(amcheck) extension when missing.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Check every table and index of chat
  runbook.recovery.pg_integrity:
    database: chat
    heapallindexed: true
"""

RETURN = r"""
corrupt:
  description: Corrupt relations, each with its kind and messages.
  returned: always
  type: list
  elements: dict
  sample: [{"relation": "idx_chat_messages_session_id", "kind": "btree index",
            "messages": ["invalid page in block 1 of relation base/16384/16421"]}]
checked:
  description: How many tables and indexes were checked.
  returned: always
  type: dict
  sample: {"tables": 3, "indexes": 6}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    failure_details,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_integrity import check_database
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        database=dict(type="str", required=True),
        heapallindexed=dict(type="bool", default=False),
        check_heap=dict(type="bool", default=True),
        create_extension=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with failures_reported(module):
        validate_name(p["database"])
        result = check_database(ConnParams.from_params(p), p["database"], p["heapallindexed"], p["check_heap"],
                                p["create_extension"], module.check_mode)
    if result["corrupt"]:
        names = ", ".join(c["relation"] for c in result["corrupt"])
        module.fail_json(msg=(f"CORRUPTION in {p['database']}: {names}. Stop writes to them; rebuild a corrupt index "
                              "with REINDEX, or recover the database from a verified backup (recover-db.yml)."),
                         **failure_details(result))
    result.setdefault("msg", f"{p['database']}: {result['checked']['tables']} tables and "
                             f"{result['checked']['indexes']} indexes checked, no corruption")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
