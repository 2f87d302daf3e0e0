#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_log_verify
short_description: Check the hash chain of the audit log and name the first record that does not match
description:
  - Each record that M(runbook.recovery.audit_log) appends carries C(prev), the SHA-256 of the line before it, and
    C(hash), the SHA-256 of its own content. This module reads the whole file and checks both for every line.
  - Fails naming the first line that was changed, or that follows a removed or inserted line. Lines written before
    the chain existed (no C(prev), no C(hash)) are accepted only before the first chained one.
  - Removing the last lines leaves a valid, shorter chain; compare the record count with a copy kept elsewhere.
  - With O(s3_bucket), checks the shared trail in S3 instead (C(runbook_audit_s3), one record per object, each
    written once under Object Lock), record by record in order.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed.
extends_documentation_fragment:
  - runbook.recovery.aws
options:
  path:
    description: The audit log file (JSON lines). One of O(path) and O(s3_bucket) is required.
    type: path
  s3_bucket:
    description: The bucket of the shared S3 trail.
    type: str
  s3_prefix:
    description: The key prefix of the trail in O(s3_bucket).
    type: str
    default: runbook-audit
"""

EXAMPLES = r"""
- name: Check that no audit record was changed or removed
  runbook.recovery.audit_log_verify:
    path: /var/log/runbook-recovery/audit.jsonl
  delegate_to: localhost
"""

RETURN = r"""
records:
  description: Lines in the file.
  returned: always
  type: int
  sample: 42
chained:
  description: Records that carry the hash chain.
  returned: always
  type: int
  sample: 40
first_bad_line:
  description: The first line (from 1) that does not match, or null.
  returned: always
  type: int
  sample: 17
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.audit import S3Trail, verify_chain, verify_lines
from ansible_collections.runbook.recovery.plugins.module_utils.aws import aws_argument_spec, client, describe_error


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(path=dict(type="path"), s3_bucket=dict(type="str"),
                         s3_prefix=dict(type="str", default="runbook-audit"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("path", "s3_bucket")], mutually_exclusive=[("path", "s3_bucket")])
    p = module.params
    try:
        if p["s3_bucket"]:
            trail = S3Trail(client("s3", p), p["s3_bucket"], p["s3_prefix"])
            result = verify_lines(trail.lines(), f"s3://{p['s3_bucket']}/{trail.prefix}")
        else:
            result = verify_chain(p["path"])
    except OSError as exc:
        module.fail_json(msg=f"cannot read the audit log {p['path']}: {exc}")
    except Exception as exc:  # boto3's errors, named
        module.fail_json(msg=describe_error(exc, f"reading the audit trail s3://{p['s3_bucket']}"))
    ok = result.pop("ok")
    if not ok:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
