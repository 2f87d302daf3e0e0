#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_config
short_description: Set Redis maxmemory and eviction policy, live and in the config file
description:
  - Compares C(maxmemory) and C(maxmemory-policy) with the wanted values and changes only what differs, with
    C(CONFIG SET); then C(CONFIG REWRITE) when the server was started from a config file, so a restart keeps
    the change. A second run reports C(changed=false).
  - community.general.redis can set one value with C(CONFIG SET) but never rewrites the config file, so a
    restart loses the fix; this module does both.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.redis
attributes:
  check_mode:
    support: full
    description: Reports the change; sets nothing.
  diff_mode:
    support: full
    description: Shows the values before and after.
options:
  maxmemory:
    description: Memory limit in bytes or Redis units (V(512mb), V(2gb); kb/mb/gb are powers of 1024, k/m/g of 1000).
    type: str
  maxmemory_policy:
    description: Eviction policy.
    type: str
    choices: [noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl]
  rewrite:
    description: Persist with C(CONFIG REWRITE) when the server has a config file.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: The runbook's fix for an evicting cache
  runbook.recovery.redis_config:
    maxmemory: 512mb
    maxmemory_policy: allkeys-lru
"""

RETURN = r"""
diff:
  description: Values before and after.
  returned: always
  type: dict
  sample: {"before": {"maxmemory": "67108864", "maxmemory-policy": "noeviction"},
           "after": {"maxmemory": "536870912", "maxmemory-policy": "allkeys-lru"}}
config_file:
  description: The server's config file, when it has one.
  returned: always
  type: str
  sample: /etc/redis/redis.conf
rewritten:
  description: Whether CONFIG REWRITE persisted the change.
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.postgres import failures_reported
from ansible_collections.runbook.recovery.plugins.module_utils.redis_ops import (
    POLICIES,
    configure,
    connect,
    redis_argument_spec,
)


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(
        maxmemory=dict(type="str"),
        maxmemory_policy=dict(type="str", choices=POLICIES),
        rewrite=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("maxmemory", "maxmemory_policy")])
    p = module.params
    with failures_reported(module):
        result = configure(connect(p), p["maxmemory"], p["maxmemory_policy"], p["rewrite"], module.check_mode)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
