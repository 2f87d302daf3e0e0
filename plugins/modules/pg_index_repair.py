#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_index_repair
short_description: Rebuild indexes left INVALID by a failed CREATE INDEX CONCURRENTLY
description:
  - Finds indexes with C(pg_index.indisvalid = false) (left by an interrupted C(CREATE INDEX CONCURRENTLY)
    or C(REINDEX CONCURRENTLY)) and rebuilds each with C(REINDEX INDEX CONCURRENTLY), so the table stays
    writable meanwhile.
  - A second run finds none and reports C(changed=false).
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
attributes:
  check_mode:
    support: full
    description: Lists the invalid indexes; rebuilds none.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  database:
    description: Database to repair.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Rebuild invalid indexes in chat
  runbook.recovery.pg_index_repair:
    database: chat
"""

RETURN = r"""
invalid:
  description: Invalid indexes found, with their definitions.
  returned: always
  type: list
  elements: dict
  sample: [{"schema": "public", "index": "idx_chat_messages_created_at", "table": "chat_messages",
            "definition": "CREATE INDEX idx_chat_messages_created_at ON public.chat_messages USING btree (created_at)"}]
rebuilt:
  description: Indexes rebuilt.
  returned: always
  type: list
  elements: str
  sample: ["public.idx_chat_messages_created_at"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_integrity import repair_invalid_indexes
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(database=dict(type="str", required=True))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with failures_reported(module):
        validate_name(p["database"])
        result = repair_invalid_indexes(ConnParams.from_params(p), p["database"], module.check_mode)
        if result["failed"]:
            failed = "; ".join(f"{f['index']}: {f['error']}" + (
                f" (the copy the rebuild left, {', '.join(f['dropped_leftovers'])}, was dropped)"
                if f["dropped_leftovers"] else "") for f in result["failed"])
            raise RunbookError(f"could not rebuild {len(result['failed'])} index(es): {failed}. Fix what the error "
                               "names (the data or the index definition), then run again.", **result)
    names = ", ".join(f"{i['schema']}.{i['index']}" for i in result["invalid"]) or "none"
    result["msg"] = f"invalid indexes in {p['database']}: {names}"
    module.exit_json(**result)


if __name__ == "__main__":
    main()
