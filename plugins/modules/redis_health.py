#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_health
short_description: Health findings for a Redis server, each with a severity
description:
  - PING, used memory against C(maxmemory) (no limit set is a warning), keys evicted since start, and the
    eviction policy. A server that does not answer is a V(critical) finding, not a module failure.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.redis
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  thresholds:
    description: "Overrides for redis_memory_ratio and redis_evicted_keys, as C({metric: {warning: x, critical: y}})."
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Inspect the cache
  runbook.recovery.redis_health:
    login_host: 127.0.0.1
    thresholds:
      redis_memory_ratio: {warning: 0.7, critical: 0.9}
"""

RETURN = r"""
findings:
  description: One entry per check.
  returned: always
  type: list
  elements: dict
  sample: [{"target": "redis://127.0.0.1:6379", "check": "redis_memory_ratio", "value": 0.91, "severity": "warning",
            "message": "58.2 MiB used of maxmemory 64.0 MiB (policy noeviction)"}]
worst:
  description: The worst severity.
  returned: always
  type: str
  sample: ok
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.health import merge_thresholds, redis_findings, worst
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import failures_reported
from ansible_collections.runbook.recovery.plugins.module_utils.redis_ops import connect, redis_argument_spec


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(thresholds=dict(type="dict", default={}))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with failures_reported(module):
        thresholds = merge_thresholds(p["thresholds"])
        findings = redis_findings(connect(p), f"redis://{p['login_host']}:{p['login_port']}", thresholds)
    module.exit_json(changed=False, findings=findings, worst=worst(findings))


if __name__ == "__main__":
    main()
