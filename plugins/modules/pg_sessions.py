#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_sessions
short_description: Find runaway PostgreSQL sessions and, when confirmed, cancel then terminate them
description:
  - Lists queries running longer than O(max_duration), sessions idle in a transaction longer than
    O(idle_in_transaction), blocking chains (C(pg_blocking_pids), the blocker first) and connection use
    against C(max_connections).
  - With O(confirm=true), cancels each long query (C(pg_cancel_backend)); one still running after the grace
    period, or older than O(terminate_after), and every idle-in-transaction session past its limit, is
    terminated (C(pg_terminate_backend)).
  - Never touches its own session, background processes (autovacuum, replication, WAL senders), or the users
    and application names in O(exclude_users) and O(exclude_applications).
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.postgres
attributes:
  check_mode:
    support: full
    description: Reports what would be cancelled or terminated and calls neither function.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  max_duration:
    description: A query running longer than this is cancelled (V(10m), V(30s)).
    type: str
    default: 10m
  idle_in_transaction:
    description: A session idle in a transaction longer than this is terminated.
    type: str
    default: 10m
  terminate_after:
    description: A query older than this is terminated rather than cancelled. Defaults to twice O(max_duration).
    type: str
  exclude_users:
    description: Sessions of these roles are never touched.
    type: list
    elements: str
    default: []
  exclude_applications:
    description: Sessions with these application names are never touched.
    type: list
    elements: str
    default: []
  databases:
    description: Only sessions connected to these databases; all by default.
    type: list
    elements: str
    default: []
  planned:
    description:
      - The sessions of a sealed plan (the C(long_running) and C(idle_in_transaction) rows of a check-mode run of
        this module). Only those are acted on, each only while it is the session the plan found (same pid, same
        backend start, same query or transaction start), with the plan's action. Sessions past the limits now that
        the plan did not list are left alone and returned in RV(not_planned); the plan's sessions that ended, or
        run something else now, are returned in RV(gone).
      - Omitted, every session past the limits now is acted on.
    type: list
    elements: dict
  confirm:
    description: Actually cancel and terminate; without it the module only reports.
    type: bool
    default: false
  grace:
    description: Seconds to wait after cancelling before terminating what still runs.
    type: float
    default: 5
"""

EXAMPLES = r"""
- name: What would be killed?
  runbook.recovery.pg_sessions:
    max_duration: 10m
  check_mode: true

- name: Kill runaway queries, never the replication or reporting users
  runbook.recovery.pg_sessions:
    max_duration: 10m
    exclude_users: [replicator, reporting]
    confirm: true
"""

RETURN = r"""
lines:
  description: One line per session past a limit, as the plan shows it (action, pid, user, application, for how long, query).
  returned: always
  type: list
  elements: str
  sample: ["cancel     pid 4242 (app, api, chat), active for 731.2 s: SELECT pg_sleep(3600)"]
long_running:
  description: Queries past O(max_duration) that may be acted on, with the action.
  returned: always
  type: list
  elements: dict
  sample: [{"pid": 4242, "user": "app", "database": "chat", "seconds": 731.2, "query": "SELECT pg_sleep(3600)",
            "action": "cancel", "backend_started": "2026-12-07T02:48:11.204113Z",
            "since": "2026-12-07T02:51:02.551907Z"}]
idle_in_transaction:
  description: Sessions idle in a transaction past the limit.
  returned: always
  type: list
  elements: dict
  sample: []
not_planned:
  description: With O(planned), sessions past the limits now that the plan did not list (left alone).
  returned: always
  type: list
  elements: dict
  sample: []
gone:
  description: With O(planned), the plan's sessions that ended or run something else now (nothing done to them).
  returned: always
  type: list
  elements: dict
  sample: [{"pid": 4242, "user": "app", "database": "chat", "query": "SELECT pg_sleep(3600)", "action": "cancel"}]
excluded:
  description: Sessions past a limit that are protected, and why.
  returned: always
  type: list
  elements: dict
  sample: [{"pid": 77, "why": "user replicator is excluded", "query": "..."}]
blocking_chains:
  description: Each blocker (not itself blocked) first, then every session waiting on it.
  returned: always
  type: list
  elements: dict
  sample: [{"blocker": {"pid": 10, "state": "idle in transaction"}, "waiting": [{"pid": 11}, {"pid": 12}]}]
connections:
  description: Client connections in use against max_connections.
  returned: always
  type: dict
  sample: {"in_use": 12, "max_connections": 100, "ratio": 0.12}
cancelled:
  description: PIDs cancelled.
  returned: always
  type: list
  elements: int
  sample: [4242]
terminated:
  description: PIDs terminated.
  returned: always
  type: list
  elements: int
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_sessions import control
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        max_duration=dict(type="str", default="10m"),
        idle_in_transaction=dict(type="str", default="10m"),
        terminate_after=dict(type="str"),
        exclude_users=dict(type="list", elements="str", default=[]),
        exclude_applications=dict(type="list", elements="str", default=[]),
        databases=dict(type="list", elements="str", default=[]),
        confirm=dict(type="bool", default=False),
        grace=dict(type="float", default=5.0),
        planned=dict(type="list", elements="dict"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with failures_reported(module):
        for database in p["databases"]:
            validate_name(database)
        if p["grace"] < 0:
            raise RunbookError(f"grace={p['grace']} is negative: give seconds >= 0.")
        result = control(ConnParams.from_params(p), p["max_duration"], p["idle_in_transaction"], p["terminate_after"],
                         p["exclude_users"], p["exclude_applications"], p["databases"], p["confirm"],
                         module.check_mode, grace=p["grace"], planned=p["planned"])
    targets = len(result["long_running"]) + len(result["idle_in_transaction"])
    if module.check_mode or not p["confirm"]:
        result["msg"] = f"{targets} session(s) past the limits would be cancelled or terminated"
    else:
        result["msg"] = f"cancelled {result['cancelled']}, terminated {result['terminated']}"
    module.exit_json(**result)


if __name__ == "__main__":
    main()
