#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_health
short_description: Health findings for a PostgreSQL server and its databases, each with a severity
description:
  - "Server: connection saturation, longest open transaction, sessions blocked on locks, transaction id
    wraparound age. Each database: dead-tuple ratio, cache hit ratio, invalid indexes, size."
  - Each finding is V(ok), V(warning) or V(critical) by O(thresholds). Read-only; never fails on findings
    (the C(health_sweep) role decides the exit status).
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  databases:
    description: Databases to inspect besides the server-wide checks.
    type: list
    elements: str
    default: []
  thresholds:
    description:
      - "Overrides of the default levels, for example C({connection_ratio: {warning: 0.7, critical: 0.9}})."
      - "Metrics: connection_ratio, longest_transaction_seconds, blocked_sessions, xid_age, dead_tuple_ratio,
        cache_hit_ratio (lower is worse), invalid_indexes, database_size_bytes."
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Inspect the chat database
  runbook.recovery.pg_health:
    databases: [chat]
    thresholds:
      longest_transaction_seconds: {warning: 60, critical: 600}
  register: health
"""

RETURN = r"""
findings:
  description: One entry per check.
  returned: always
  type: list
  elements: dict
  sample: [{"target": "127.0.0.1:5432", "check": "connection_ratio", "value": 0.12, "severity": "ok",
            "message": "12 of 100 connections in use"}]
worst:
  description: The worst severity of all findings.
  returned: always
  type: str
  sample: warning
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import validate_name
from ansible_collections.runbook.recovery.plugins.module_utils.health import merge_thresholds, postgres_findings, worst
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        databases=dict(type="list", elements="str", default=[]),
        thresholds=dict(type="dict", default={}),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with failures_reported(module):
        for database in p["databases"]:
            validate_name(database)
        thresholds = merge_thresholds(p["thresholds"])
        findings = postgres_findings(ConnParams.from_params(p), p["databases"], thresholds)
    module.exit_json(changed=False, findings=findings, worst=worst(findings))


if __name__ == "__main__":
    main()
