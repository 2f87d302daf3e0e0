#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_maintenance
short_description: VACUUM and ANALYZE only the tables that need it, without blocking the application
description:
  - Chooses tables from C(pg_stat_user_tables) with autovacuum's arithmetic; dead tuples over
    O(vacuum_threshold) + O(vacuum_scale_factor) x reltuples, or transaction id age over O(freeze_age),
    get C(VACUUM (ANALYZE)) (with C(FREEZE) for age); rows modified since the last analyze over
    O(analyze_threshold) + O(analyze_scale_factor) x reltuples get C(ANALYZE). O(mode=all) takes every table.
  - Each statement runs on its own, outside a transaction, under O(lock_timeout); a table it cannot lock in
    time (the application holds it) is reported in RV(skipped), not failed.
  - A second run finds nothing to do and reports C(changed=false).
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
attributes:
  check_mode:
    support: full
    description: Lists the tables and the statements it would run; runs none.
  diff_mode:
    support: none
    description: There is no file-like state to diff; RV(tables) shows dead tuples before and after.
options:
  database:
    description: Database to maintain.
    type: str
    required: true
  mode:
    description: V(needed) chooses tables by need; V(all) vacuums and analyzes every table.
    type: str
    choices: [needed, all]
    default: needed
  lock_timeout:
    description: How long a statement may wait for its table's lock before the table is skipped (V(5s), V(500ms)).
    type: str
    default: 5s
  parallel:
    description: C(VACUUM (PARALLEL n)) workers for index vacuuming; unset lets PostgreSQL decide.
    type: int
  vacuum_threshold:
    description: Base number of dead tuples, as C(autovacuum_vacuum_threshold).
    type: int
    default: 50
  vacuum_scale_factor:
    description: Fraction of the table's rows, as C(autovacuum_vacuum_scale_factor).
    type: float
    default: 0.2
  analyze_threshold:
    description: Base number of modified rows, as C(autovacuum_analyze_threshold).
    type: int
    default: 50
  analyze_scale_factor:
    description: Fraction of the table's rows, as C(autovacuum_analyze_scale_factor).
    type: float
    default: 0.1
  freeze_age:
    description: Transaction id age above which the table is vacuumed with FREEZE.
    type: int
    default: 150000000
"""

EXAMPLES = r"""
- name: VACUUM/ANALYZE what needs it in the chat database
  runbook.recovery.pg_maintenance:
    database: chat
    lock_timeout: 2s
"""

RETURN = r"""
tables:
  description: Tables worked on (or, in check mode, that would be), with why and the statement.
  returned: always
  type: list
  elements: dict
  sample: [{"schema": "public", "table": "chat_messages", "reasons": ["dead_tuples"],
            "statement": "VACUUM (ANALYZE) \"public\".\"chat_messages\"", "dead_tuples_before": 41230,
            "dead_tuples_after": 0, "seconds": 0.42}]
skipped:
  description: Tables that could not be locked within O(lock_timeout).
  returned: always
  type: list
  elements: dict
  sample: [{"schema": "public", "table": "users", "skip_reason": "could not lock it within lock_timeout=5s"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import validate_name
from ansible_collections.runbook.recovery.plugins.module_utils.pg_maintenance import Thresholds, maintain
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        database=dict(type="str", required=True),
        mode=dict(type="str", choices=["needed", "all"], default="needed"),
        lock_timeout=dict(type="str", default="5s"),
        parallel=dict(type="int"),
        vacuum_threshold=dict(type="int", default=50),
        vacuum_scale_factor=dict(type="float", default=0.2),
        analyze_threshold=dict(type="int", default=50),
        analyze_scale_factor=dict(type="float", default=0.1),
        freeze_age=dict(type="int", default=150000000),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with failures_reported(module):
        validate_name(p["database"])
        limits = Thresholds(p["vacuum_threshold"], p["vacuum_scale_factor"], p["analyze_threshold"],
                            p["analyze_scale_factor"], p["freeze_age"])
        result = maintain(ConnParams.from_params(p), p["database"], p["mode"], limits, p["lock_timeout"],
                          p["parallel"], module.check_mode)
    names = ", ".join(f"{t['schema']}.{t['table']}" for t in result["tables"]) or "no table"
    result["msg"] = (f"{'would maintain' if module.check_mode else 'maintained'} {names} in {p['database']}"
                     + (f"; skipped (locked): {len(result['skipped'])}" if result["skipped"] else ""))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
