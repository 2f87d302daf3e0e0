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
  - "With O(backup_root), each database's logical backups too: the age of the newest verified backup, the
    newest backup failing its verification, and the store's free space against what the next backup needs.
    A database without any verified backup is critical."
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
        cache_hit_ratio (lower is worse), invalid_indexes, database_size_bytes; with O(backup_root),
        backup_age_hours (default warning 26, critical 50), backup_verification_failed (1 when the newest backup
        failed a verification; critical at 1), backup_space_ratio (free space over what the next backup needs,
        lower is worse; warning 2, critical 1); with O(archive), base_backup_age_hours (warning 26, critical 50),
        archive_lag_seconds (how long the oldest WAL segment has waited for the archiver; warning 300, critical 900)
        and archive_failing (1 when the archiver's last attempt failed, or the archive has a WAL gap; critical)."
    type: dict
    default: {}
  backup_root:
    description:
      - The backup store (C(pg_backup_root)) whose backups of O(databases) are checked. Unset, none are.
      - A recovery from a backup that was killed mid-run, whose journal is in the store, is a critical finding
        (C(interrupted_procedure)) until a run of C(recover-db.yml) finishes or undoes it.
    type: path
  pitr_work_dir:
    description:
      - The point-in-time recovery work directory (C(pg_pitr_work_dir)). A cluster recovery that was killed
        mid-run, whose journal is there, is a critical finding (C(interrupted_procedure)) until a run of
        C(recover-db.yml) undoes it. Unset, not looked at.
    type: path
  archive:
    description:
      - The server's WAL archive (the inventory's C(pg_archive), see M(runbook.recovery.pg_archiving)); set, the
        archiver (C(pg_stat_archiver), segments waiting) and the newest base backup are checked. An archive that
        cannot be read, C(archive_mode=off) and a WAL gap are critical findings.
    type: dict
    version_added: 0.2.0
    suboptions:
      destination:
        description: The archive's S3 URL, C(s3://bucket/prefix).
        type: str
        required: true
      server_name:
        description: The name this cluster archives under.
        type: str
        required: true
      tools_dir:
        description: The virtualenv holding C(barman-cloud-*).
        type: path
        default: /opt/runbook-recovery/barman-cloud
      aws_dir:
        description: Directory with the C(credentials) and C(config) files of O(archive.profile).
        type: path
        required: true
      profile:
        description: The AWS profile in those files.
        type: str
        default: runbook-archive
      compression:
        description: How WAL and base backups are compressed.
        type: str
        default: gzip
        choices: [gzip, bzip2, snappy, none]
"""

EXAMPLES = r"""
- name: Inspect the chat database and its backups
  runbook.recovery.pg_health:
    databases: [chat]
    backup_root: /var/backups/postgresql
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

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore
from ansible_collections.runbook.recovery.plugins.module_utils.common import validate_name
from ansible_collections.runbook.recovery.plugins.module_utils.health import (
    archive_findings,
    backup_findings,
    merge_thresholds,
    postgres_findings,
    worst,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_pitr import (
    ClusterPitr,
    archive_argument_spec,
    archive_config,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import interrupted_recoveries
from ansible_collections.runbook.recovery.plugins.module_utils.pitr import Archive
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def interrupted_findings(work_dir: str) -> list[dict]:
    """A cluster recovery killed mid-run: the server may be down or on a half-made directory until it is undone."""
    journal = ClusterPitr(None, None, None, [], [], work_dir=work_dir).interrupted()
    if journal is None:
        return []
    return [{"target": journal.get("data") or work_dir, "check": "interrupted_procedure", "value": journal["step"],
             "severity": "critical",
             "message": f"a cluster point-in-time recovery (to {journal.get('target')}, started "
                        f"{journal.get('started_at')}) was killed at step {journal['step']}: run recover-db.yml "
                        "(scope=cluster) again, which undoes it first, or pg_pitr state=undone"}]


def interrupted_recovery_findings(backup_root: str) -> list[dict]:
    """A recovery from a backup killed mid-run: a staging database left, or a swapped-in database never probed."""
    return [{"target": entry["database"], "check": "interrupted_procedure", "value": entry["step"],
             "severity": "critical",
             "message": f"a recovery of {entry['database']} from backup {entry['backup']} (started "
                        f"{entry['started_at']}) was killed at step {entry['step']}: run recover-db.yml for it "
                        "again, which finishes or undoes it first"} for entry in interrupted_recoveries(backup_root)]


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        databases=dict(type="list", elements="str", default=[]),
        thresholds=dict(type="dict", default={}),
        backup_root=dict(type="path"),
        archive=dict(type="dict", options=archive_argument_spec()["archive"]["options"]),
        pitr_work_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with failures_reported(module):
        for database in p["databases"]:
            validate_name(database)
        thresholds = merge_thresholds(p["thresholds"])
        findings = postgres_findings(ConnParams.from_params(p), p["databases"], thresholds)
        if p["backup_root"]:
            findings += backup_findings(LocalStore(p["backup_root"]), p["databases"], thresholds)
            findings += interrupted_recovery_findings(p["backup_root"])
        if p["archive"]:
            findings += archive_findings(ConnParams.from_params(p), Archive(archive_config(p)), thresholds)
        if p["pitr_work_dir"]:
            findings += interrupted_findings(p["pitr_work_dir"])
    module.exit_json(changed=False, findings=findings, worst=worst(findings))


if __name__ == "__main__":
    main()
