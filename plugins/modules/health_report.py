#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: health_report
short_description: Write the health sweep's findings as one JSON report and a readable summary table
description:
  - Takes the findings of runbook.recovery.pg_health and runbook.recovery.redis_health (from every host),
    writes them as one JSON document (0600) under O(directory), and returns a summary table sorted worst
    first, the counts per severity and the worst severity.
  - The report is an output, not managed state, so writing it is reported as C(changed=false). In check mode
    nothing is written.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
attributes:
  check_mode:
    support: full
    description: Builds the summary; writes no file.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  findings:
    description: The findings, each with target, check, value, severity and message.
    type: list
    elements: dict
    required: true
  directory:
    description: Directory for C(health-<UTC time>.json) and C(health-latest.json).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Write the report
  runbook.recovery.health_report:
    findings: "{{ all_findings }}"
    directory: /var/log/runbook-recovery/reports
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: The report written (null in check mode).
  returned: always
  type: str
  sample: /var/log/runbook-recovery/reports/health-20261123T051200Z.json
summary:
  description: Lines of the summary table, worst first.
  returned: always
  type: list
  elements: str
  sample: ["critical  127.0.0.1:5432/chat  invalid_indexes  1  invalid indexes: public.idx_x"]
counts:
  description: Findings per severity.
  returned: always
  type: dict
  sample: {"ok": 12, "warning": 1, "critical": 0}
worst:
  description: The worst severity.
  returned: always
  type: str
  sample: warning
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    compact_timestamp,
    isoformat,
    utc_now,
    write_json_atomic,
)
from ansible_collections.runbook.recovery.plugins.module_utils.health import SEVERITIES, worst


def summary_lines(findings: list[dict]) -> list[str]:
    ordered = sorted(findings, key=lambda f: (-SEVERITIES.index(f["severity"]), f["target"], f["check"]))
    width = max([len(f["target"]) for f in ordered] + [6])
    lines = [f"{'SEVERITY':<9} {'TARGET':<{width}} {'CHECK':<28} {'VALUE':>14}  MESSAGE"]
    for f in ordered:
        value = "" if f["value"] is None else str(f["value"])
        lines.append(f"{f['severity'].upper():<9} {f['target']:<{width}} {f['check']:<28} {value:>14}  {f['message']}")
    return lines


def main():
    module = AnsibleModule(argument_spec=dict(findings=dict(type="list", elements="dict", required=True),
                                              directory=dict(type="path", required=True)),
                           supports_check_mode=True)
    findings = module.params["findings"]
    for finding in findings:
        if finding.get("severity") not in SEVERITIES:
            module.fail_json(msg=f"finding without a valid severity: {finding}")
    now = utc_now()
    counts = {level: sum(1 for f in findings if f["severity"] == level) for level in SEVERITIES}
    document = {"generated_at": isoformat(now), "worst": worst(findings), "counts": counts, "findings": findings}
    path = None
    if not module.check_mode:
        directory = module.params["directory"]
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, f"health-{compact_timestamp(now)}.json")
        write_json_atomic(path, document)
        write_json_atomic(os.path.join(directory, "health-latest.json"), document)
    module.exit_json(changed=False, path=path, summary=summary_lines(findings), counts=counts,
                     worst=document["worst"], report=json.loads(json.dumps(document)))


if __name__ == "__main__":
    main()
