#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: terraform_lock
short_description: Shows who holds a Terraform S3-backend state lock and since when, and removes a stale one by its ID
description:
  - Reads the lock on the Terraform state at s3://O(bucket)/O(key) where Terraform's S3 backend keeps it - the item
    C(LockID=BUCKET/KEY) of the DynamoDB table O(lock_table) (the backend's C(dynamodb_table)), and the object
    C(KEY.tflock) in the bucket (C(use_lockfile = true), Terraform 1.10 and later) - and reports who holds it, for
    which operation, since when and how long ago, from the lock's LockInfo (ID, Operation, Who, Version, Created,
    Path).
  - With O(state=absent) it removes the lock, like C(terraform force-unlock LOCK_ID), only when every lock found has
    the ID O(lock_id) and is older than O(min_age). Otherwise it fails naming the holder, and nothing is removed.
  - The removal is conditional on what was read - the DynamoDB delete on the exact C(Info) attribute, the S3 delete on
    the lock file's ETag (C(If-Match)) - so a lock taken again by another run in between is never removed.
  - The C(BUCKET/KEY-md5) item of the table (the state's checksum) and the state object are never touched.
  - With no lock present it changes nothing. With no lock and no state object either, it fails, since the bucket or
    key is most likely mistyped.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reads the lock and reports its holder, its age and whether it would be removed (RV(refused) says why
      not); removes nothing and fails on no refusal.
  diff_mode:
    support: none
    description: RV(locks) lists every lock and what happens to it.
options:
  bucket:
    description: The state's bucket (the backend's C(bucket); the part of Terraform's C(Path) line before the first /).
    type: str
    required: true
  key:
    description:
      - The state's key (the backend's C(key); the rest of the C(Path) line). For a workspace other than C(default),
        the key Terraform uses, such as V(env:/staging/network/terraform.tfstate).
    type: str
    required: true
  lock_table:
    description: The DynamoDB lock table (the backend's C(dynamodb_table)). Without it only the S3 lock file is read.
    type: str
    aliases: [dynamodb_table]
  use_lockfile:
    description: Also read the S3 lock file C(KEY.tflock). Harmless for a backend that does not use it.
    type: bool
    default: true
  lock_id:
    description:
      - The ID of the lock to remove, as Terraform's "Error acquiring the state lock" message or the check-mode run
        shows it. Required to remove a lock; a lock with any other ID is kept.
    type: str
  min_age:
    description: A lock younger than this is kept (its run may still be going). Seconds or a value like V(30m), V(1h),
      V(2d); V(0) removes a lock of any age.
    type: str
    default: 1h
  state:
    description: V(absent) removes the lock (check mode only shows it).
    type: str
    choices: [absent]
    default: absent
"""

EXAMPLES = r"""
- name: Who holds the lock of the network state, and since when (changes nothing)
  runbook.recovery.terraform_lock:
    bucket: acme-terraform-state
    key: network/terraform.tfstate
    lock_table: terraform-locks
  check_mode: true
  register: network_lock

- name: Remove that lock, if it is still the same one and older than two hours
  runbook.recovery.terraform_lock:
    bucket: acme-terraform-state
    key: network/terraform.tfstate
    lock_table: terraform-locks
    lock_id: 9db590f1-b6fe-c5f2-2678-8804f089deba
    min_age: 2h
    state: absent
"""

RETURN = r"""
locks:
  description: One row per lock found (none when the state is not locked), with its LockInfo and what happened to it.
  returned: always
  type: list
  elements: dict
  sample: [{"store": "dynamodb", "location": "DynamoDB table terraform-locks item acme-terraform-state/network/terraform.tfstate",
            "id": "9db590f1-b6fe-c5f2-2678-8804f089deba", "who": "alice@ci-runner-7",
            "operation": "OperationTypeApply", "created": "2026-05-02T03:04:05Z", "age": "3h 12m",
            "age_seconds": 11520, "version": "1.9.5", "path": "acme-terraform-state/network/terraform.tfstate",
            "info": null, "action": "remove", "reason": null, "result": "removed"}]
lines:
  description: One line per lock for a person, or the message when there is none.
  returned: always
  type: list
  elements: str
  sample: ["DynamoDB table terraform-locks item acme-terraform-state/network/terraform.tfstate: held by alice@ci-runner-7
            (ID 9db590f1-b6fe-c5f2-2678-8804f089deba, OperationTypeApply since 2026-05-02T03:04:05Z, 3h 12m ago),
            Terraform 1.9.5 -> removed"]
refused:
  description: Why the lock may not be removed (a different lock ID, younger than O(min_age), unreadable), or null.
  returned: always
  type: str
  sample: "the lock at s3://acme-terraform-state/network/terraform.tfstate.tflock, held by bob@laptop (ID 0c1d...,
    OperationTypePlan since 2026-05-02T06:10:00Z, 6m ago), is younger than min_age=1h: ..."
needs_lock_id:
  description: A lock was found and no O(lock_id) was given (a removal would be refused for that alone).
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.terraform_lock import (
    check_backend,
    outcome,
    parse_min_age,
    plan,
    read_locks,
    refusal,
    remove,
    searched,
    state_exists,
)


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        bucket=dict(type="str", required=True),
        key=dict(type="str", required=True, no_log=False),
        lock_table=dict(type="str", aliases=["dynamodb_table"]),
        use_lockfile=dict(type="bool", default=True),
        lock_id=dict(type="str"),
        min_age=dict(type="str", default="1h"),
        state=dict(type="str", choices=["absent"], default="absent"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    bucket, key, table = p["bucket"], p["key"], p["lock_table"] or None
    with aws_failures_reported(module, "reading the Terraform state lock") as done:
        check_backend(bucket, key)
        min_age = parse_min_age(p["min_age"])
        if not table and not p["use_lockfile"]:
            raise RunbookError("Nowhere to look: give lock_table (the backend's dynamodb_table), use_lockfile=true, "
                               "or both. Nothing was removed.")
        clients = Clients(p, 1)
        ddb, s3 = clients("dynamodb") if table else None, clients("s3")
        found = read_locks(ddb, s3, bucket, key, table, p["use_lockfile"])
        rows = plan(found, p["lock_id"], min_age, utc_now())
        if not found and not state_exists(s3, bucket, key):
            raise RunbookError(f"No lock and no state object at {searched(bucket, key, table, p['use_lockfile'])}: "
                               "check bucket and key (Terraform's Path line is BUCKET/KEY) and the region.")
        if found and not module.check_mode:
            if refusal(rows):
                raise RunbookError(refusal(rows), locks=rows)
            rows = remove(ddb, s3, found, rows, bucket, key, table, done)
    module.exit_json(**outcome(rows, module.check_mode, searched(bucket, key, table, p["use_lockfile"])))


if __name__ == "__main__":
    main()
