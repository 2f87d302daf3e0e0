#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup_info
short_description: List the backups of a PostgreSQL database and resolve C(latest)
description:
  - Lists the complete backups of one database (those with a manifest), newest first, with their
    time, size, and verification state. Interrupted backups are never listed.
  - With O(backup), resolves V(latest), V(latest-verified) or an id to one backup, and fails with the
    list of available ids when it does not exist.
  - With O(s3_bucket), lists the copies in S3 instead; with O(fetch=true), also copies the backup
    named by O(backup) from S3 into O(backup_root) so it can be verified and restored.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.postgres.BACKUP_STORE
attributes:
  check_mode:
    support: full
    description: Read-only, except O(fetch=true), which downloads nothing in check mode.
  diff_mode:
    support: none
    description: There is no file-like state to diff; the result's before and after describe the change.
options:
  database:
    description: Database whose backups to list.
    type: str
    required: true
  backup:
    description: V(latest), V(latest-verified) or a backup id (for example V(20261123T051200Z)) to resolve.
    type: str
  s3_bucket:
    description: List (or fetch from) this S3 bucket instead of the local store.
    type: str
  s3_prefix:
    description: Key prefix inside O(s3_bucket).
    type: str
    default: runbook-recovery
  fetch:
    description:
      - Copy the backup named by O(backup) from O(s3_bucket) into O(backup_root). Every path the manifest names must
        stay inside the backup's directory, and, with O(s3_signing_key), the manifest must carry its signature;
        otherwise nothing is written.
    type: bool
    default: false
  s3_signing_key:
    description:
      - The key C(runbook.recovery.pg_backup) signed the copies' manifests with (O(runbook.recovery.pg_backup#module:s3_signing_key)).
        With it, a copy whose manifest is unsigned, signed with another key or changed is refused before anything
        is fetched.
    type: str
seealso:
  - module: runbook.recovery.pg_backup
"""

EXAMPLES = r"""
- name: Which backup would "latest" restore?
  runbook.recovery.pg_backup_info:
    database: chat
    backup_root: /var/backups/postgresql
    backup: latest
  register: chat_backups

- name: Show them
  ansible.builtin.debug:
    msg: "{{ chat_backups.backups | map(attribute='id') | list }} -> {{ chat_backups.backup.id }}"
"""

RETURN = r"""
backups:
  description: Complete backups, newest first.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "20261123T051200Z", "time": "2026-11-23T05:12:03.123456Z", "size_bytes": 1048576,
            "size": "1.0 MiB", "verified": true, "level": "restore", "tables": 3, "rows": 10500}]
backup:
  description: The backup O(backup) resolved to.
  returned: when O(backup) is given
  type: dict
  sample: {"id": "20261123T051200Z", "verified": true, "level": "checksum"}
fetched:
  description: Whether O(fetch=true) copied the backup from S3.
  returned: when O(fetch=true)
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import aws_argument_spec, client, describe_error
from ansible_collections.runbook.recovery.plugins.module_utils.backups import BACKUP_ID_RE, LocalStore, S3Store
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    validate_name,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import failures_reported


def from_s3(params: dict, store: LocalStore, check_mode: bool) -> dict:
    s3 = S3Store(client("s3", params), params["s3_bucket"], params["s3_prefix"],
                 signing_key=params["s3_signing_key"])
    listed = list(reversed(s3.list(params["database"])))
    result = {"changed": False, "backups": listed}
    wanted = params["backup"]
    if not wanted:
        return result
    if wanted in ("latest", "latest-verified"):
        if not listed:
            raise RunbookError(f"there is no backup of {params['database']!r} in s3://{params['s3_bucket']}.")
        wanted = listed[0]["id"]
    match = [b for b in listed if b["id"] == wanted]
    if not match:
        raise RunbookError(f"backup {wanted!r} of {params['database']!r} is not in s3://{params['s3_bucket']} "
                           f"(newest: {', '.join(b['id'] for b in listed[:5]) or 'none'}).")
    result["backup"] = match[0]
    if params["fetch"]:
        local = [b for b in store.list(params["database"]) if b.backup_id == wanted]
        result["fetched"] = not local
        if not local and not check_mode:
            result["backup"] = s3.download(params["database"], wanted, store).summary()
        result["changed"] = result["fetched"]
    return result


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        database=dict(type="str", required=True),
        backup_root=dict(type="path", required=True),
        backup=dict(type="str"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default="runbook-recovery"),
        fetch=dict(type="bool", default=False),
        s3_signing_key=dict(type="str", no_log=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    with failures_reported(module):
        if params["fetch"] and not (params["s3_bucket"] and params["backup"]):
            raise RunbookError("fetch=true copies one backup from S3: give s3_bucket and backup too.")
        validate_name(params["database"])
        store = LocalStore(params["backup_root"])
        if params["s3_bucket"]:
            if params["backup"] and params["backup"] not in ("latest", "latest-verified") \
                    and not BACKUP_ID_RE.match(params["backup"]):
                raise RunbookError(f"backup id {params['backup']!r} is not a backup id (they look like 20261123T051200Z).")
            try:
                result = from_s3(params, store, module.check_mode)
            except RunbookError:
                raise
            except Exception as exc:
                raise RunbookError(describe_error(exc, f"listing s3://{params['s3_bucket']}")) from exc
        else:
            result = {"changed": False,
                      "backups": [b.summary() for b in reversed(store.list(params["database"]))]}
            if params["backup"]:
                result["backup"] = store.resolve(params["database"], params["backup"]).summary()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
