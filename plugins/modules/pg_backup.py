#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup
short_description: Back up a PostgreSQL database with pg_dump, with a manifest that proves what it holds
description:
  - Dumps one database with C(pg_dump --format=directory --jobs=N) inside one exported snapshot.
  - Counts every table's rows exactly in that same snapshot while C(pg_dump) runs, hashes every file
    (sha256), and writes C(manifest.json) last. A directory without a manifest is never listed as a
    backup; the dump is written under C(.partial-<id>) and renamed into place only when complete.
  - Verifies the new backup before it returns (O(verify)). By default its files are read again and compared with
    the manifest, as M(runbook.recovery.pg_verify_backup) does; the result is recorded in C(verification.json).
    A failed verification fails the task; retention has run before it, and kept the newest backup that was verified.
  - "The manifest also records what the database carries outside its contents, which C(pg_dump) leaves out
    without C(--create): encoding and locale, owner, connection limit, C(ALTER DATABASE SET) settings, its ACL,
    its comment, C(ALTER ROLE ... IN DATABASE ... SET) settings; and the number of large objects."
  - Refuses to start when the backup volume has less free space than the estimated dump size.
  - With O(plan_first), plans other databases too before anything is written, so that a run over several
    databases stops at bad input before its first backup.
  - Applies retention (O(keep_last), O(max_age_days)) and never removes the newest verified backup.
  - With O(skip_if_newer_than), a verified backup that recent means nothing to do (C(changed=false)).
  - Optionally copies the backup to S3 with server-side encryption (manifest uploaded last).
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.postgres
  - runbook.recovery.postgres.BACKUP_STORE
attributes:
  check_mode:
    support: full
    description: Reports whether a backup would be taken, its estimated size, free space, and what retention would remove.
  diff_mode:
    support: none
    description: There is no file-like state to diff; the result's before and after describe the change.
options:
  database:
    description: Database to back up. Letters, digits, C(_) and C(-) only.
    type: str
    required: true
  jobs:
    description: Parallel C(pg_dump) workers (one table per worker at a time).
    type: int
    default: 2
  compress_level:
    description: gzip level of the dump files, 0 (none) to 9. Level 1 is the fastest and, on table data, within a few percent of level 6 in size.
    type: int
    default: 1
  min_free_space:
    description: Free space that must remain on the backup volume after the backup, for example V(2GB).
    type: str
    default: '0'
  free_space_margin:
    description: Factor applied to the estimated dump size (heap and TOAST of every table) in the free-space precheck.
    type: float
    default: 1.1
  skip_if_newer_than:
    description:
      - When a verified backup of O(database) finished less than this long ago (V(30m), V(12h), V(1d)), take no new backup.
    type: str
  keep_last:
    description: Retention. Keep at least this many newest backups. Must be 1 or more.
    type: int
  max_age_days:
    description:
      - Retention. Backups older than this many days may be removed. When O(keep_last) is also set, a backup is removed
        only when both rules let it go. The newest verified backup is never removed.
    type: float
  lock_wait_timeout:
    description:
      - How long the backup waits for a table lock another session holds (a migration) before failing, naming why
        (V(60s), V(5m)). Its own reads wait no longer than C(pg_dump) does.
    type: str
    default: 60s
  verify:
    description:
      - Verification of a new backup, each level including the ones before it (see M(runbook.recovery.pg_verify_backup)).
      - V(checksum) reads every file again and compares its size and sha256 with the manifest; V(catalog) also reads
        the table of contents with C(pg_restore --list); V(restore) also restores into a scratch database (with
        O(jobs) workers) and compares every table's row count with the manifest.
    type: str
    choices: [checksum, catalog, restore]
    default: checksum
  plan_first:
    description:
      - Databases planned before this backup starts, as in check mode (valid name, the database exists, its backup
        would fit), so that a run over several databases refuses bad input before its first backup is written.
      - The O(database) itself is always planned first; naming it here too does no harm.
    type: list
    elements: str
    default: []
  run_id:
    description:
      - Who asks for this backup, recorded in its manifest. An Airflow task sets C(RUNBOOK_RUN_ID) to its DAG, run, task
        and map index, which the role passes here.
      - When a complete backup of O(database) already names this run (an earlier try finished it before it was
        killed), it is reported (verified first if that try ended before its verification) and no second backup is
        taken.
    type: str
  s3_bucket:
    description: Also copy the backup to this S3 bucket (the second store). Uses the AWS options below.
    type: str
  s3_prefix:
    description: Key prefix inside O(s3_bucket).
    type: str
    default: runbook-recovery
  s3_sse:
    description: Server-side encryption of every uploaded object.
    type: str
    choices: [AES256, aws:kms]
    default: AES256
  s3_kms_key_id:
    description: KMS key for O(s3_sse=aws:kms).
    type: str
  s3_signing_key:
    description:
      - A secret key (from the inventory or a vault, never kept with the backups) that signs each S3 copy's manifest
        (HMAC-SHA256, C(manifest.json.sig)). The manifest holds every file's SHA-256, so a copy fetched with the same
        key is one this key's holder wrote; without the key, a copy is only as trustworthy as whoever can write the
        bucket.
    type: str
notes:
  - Files are created 0600 and directories 0700.
seealso:
  - module: runbook.recovery.pg_verify_backup
  - module: runbook.recovery.pg_backup_info
  - module: runbook.recovery.pg_restore_db
"""

EXAMPLES = r"""
- name: Back up the chat database unless a verified backup is less than 12 hours old
  runbook.recovery.pg_backup:
    login_host: 127.0.0.1
    login_password: "{{ vault_pg_password }}"
    database: chat
    backup_root: /var/backups/postgresql
    jobs: 4
    skip_if_newer_than: 12h
    keep_last: 7
    max_age_days: 14

- name: Back up every database of the host, each verified; bad input for any of them stops the run before the first
  runbook.recovery.pg_backup:
    database: "{{ item }}"
    plan_first: "{{ pg_databases if index == 0 else [] }}"
    backup_root: /var/backups/postgresql
  loop: "{{ pg_databases }}"
  loop_control:
    index_var: index
    break_when: index == 0 and backups.refused | default(false)
  register: backups

- name: Back up and copy to S3 with KMS encryption
  runbook.recovery.pg_backup:
    database: chat
    backup_root: /var/backups/postgresql
    s3_bucket: acme-db-backups
    s3_sse: aws:kms
    s3_kms_key_id: alias/backups
"""

RETURN = r"""
backup:
  description: The backup taken, or the fresh verified one that made a new backup unnecessary.
  returned: success, and in check mode when a fresh backup exists
  type: dict
  sample: {"id": "20261123T051200Z", "database": "chat", "path": "/var/backups/postgresql/chat/20261123T051200Z",
           "time": "2026-11-23T05:12:03.123456Z", "size_bytes": 1048576, "size": "1.0 MiB", "tables": 3,
           "rows": 10500, "verified": true, "level": "checksum"}
verification:
  description: The verification of the new backup (O(verify)), also recorded in its C(verification.json).
  returned: when a backup was written
  type: dict
  sample: {"ok": true, "levels_run": ["checksum"], "problems": []}
created:
  description: Whether a new backup was written.
  returned: always
  type: bool
  sample: true
removed:
  description: Backup ids removed by retention.
  returned: always
  type: list
  elements: str
  sample: ["20261101T000000Z"]
removed_partials:
  description: Directories of interrupted backups that were cleaned up.
  returned: always
  type: list
  elements: str
  sample: []
plan:
  description: In check mode, what would be done.
  returned: check mode
  type: dict
  sample: {"would_create": true, "estimated_bytes": 8601600, "free_bytes": 85899345920, "would_remove": [],
           "would_remove_partials": []}
s3:
  description: Where the S3 copy is, when O(s3_bucket) is set.
  returned: when O(s3_bucket) is set
  type: dict
  sample: {"url": "s3://acme-db-backups/runbook-recovery/chat/20261123T051200Z", "uploaded": true, "objects": 12}
refused:
  description: Set on a failure before anything was written (bad input, a database that does not exist, short space).
  returned: on such a failure
  type: bool
  sample: true
elapsed_seconds:
  description: Wall-clock seconds the module took.
  returned: always
  type: float
  sample: 4.2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import aws_argument_spec, client, describe_error
from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore, S3Store
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    parse_duration,
    parse_size,
)
from ansible_collections.runbook.recovery.plugins.module_utils.pg_backup import BackupOptions, run_backup
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    failures_reported,
    postgres_argument_spec,
)


def options_from(params: dict) -> BackupOptions:
    return BackupOptions(
        database=params["database"], jobs=params["jobs"], compress_level=params["compress_level"],
        min_free_space=parse_size(params["min_free_space"]), free_space_margin=params["free_space_margin"],
        skip_if_newer_than=(parse_duration(params["skip_if_newer_than"])
                            if params["skip_if_newer_than"] not in (None, "") else None),
        keep_last=params["keep_last"], max_age_days=params["max_age_days"],
        lock_wait_timeout=parse_duration(params["lock_wait_timeout"]), verify=params["verify"],
        plan_first=tuple(params["plan_first"]), run_id=params["run_id"] or None)


def copy_to_s3(params: dict, store: LocalStore, result: dict, check_mode: bool) -> None:
    s3 = S3Store(client("s3", params), params["s3_bucket"], params["s3_prefix"], params["s3_sse"],
                 params["s3_kms_key_id"], params["s3_signing_key"])
    backup_id = result.get("backup", {}).get("id")
    if not backup_id:
        return
    url = f"s3://{params['s3_bucket']}/{s3._key(params['database'], backup_id)}"
    if s3.has(params["database"], backup_id):
        result["s3"] = {"url": url, "uploaded": False}
        return
    if check_mode:
        result.update(changed=True, s3={"url": url, "uploaded": False, "would_upload": True})
        return
    objects = s3.upload(store.resolve(params["database"], backup_id))
    result.update(changed=True, s3={"url": url, "uploaded": True, "objects": objects})


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(aws_argument_spec())
    argument_spec.update(
        database=dict(type="str", required=True),
        backup_root=dict(type="path", required=True),
        jobs=dict(type="int", default=2),
        compress_level=dict(type="int", default=1),
        min_free_space=dict(type="str", default="0"),
        free_space_margin=dict(type="float", default=1.1),
        skip_if_newer_than=dict(type="str"),
        keep_last=dict(type="int"),
        max_age_days=dict(type="float"),
        lock_wait_timeout=dict(type="str", default="60s"),
        verify=dict(type="str", choices=["checksum", "catalog", "restore"], default="checksum"),
        plan_first=dict(type="list", elements="str", default=[]),
        run_id=dict(type="str"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default="runbook-recovery"),
        s3_sse=dict(type="str", choices=["AES256", "aws:kms"], default="AES256"),
        s3_kms_key_id=dict(type="str"),
        s3_signing_key=dict(type="str", no_log=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    store = LocalStore(module.params["backup_root"])
    with failures_reported(module):
        result = run_backup(ConnParams.from_params(module.params), store, options_from(module.params),
                            module.check_mode)
        if module.params["s3_bucket"]:  # empty string (a role default) means no S3 copy
            try:
                copy_to_s3(module.params, store, result, module.check_mode)
            except RunbookError:
                raise
            except Exception as exc:
                raise RunbookError(describe_error(exc, f"copying the backup to s3://{module.params['s3_bucket']}")
                                   + " The local backup is complete.", **result) from exc
    module.exit_json(**result)


if __name__ == "__main__":
    main()
