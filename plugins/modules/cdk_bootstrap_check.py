#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cdk_bootstrap_check
short_description: Makes sure the account and region are bootstrapped for the AWS CDK, running cdk bootstrap when not
description:
  - Checks that the CDK toolkit stack (O(stack_name)) exists in a usable state and that the bootstrap version the CDK
    CLI reads (the SSM parameter C(/cdk-bootstrap/<qualifier>/version)) is at least O(required_version).
  - When it is not, runs C(cdk bootstrap aws://ACCOUNT/REGION) if the CDK CLI (O(cdk_executable)) is installed, then
    checks again; without the CLI it fails with the exact command to run.
  - A toolkit stack left in ROLLBACK_COMPLETE (or another failed state) cannot be bootstrapped over; delete it first
    (runbook.recovery.cfn_failed_stacks does) and run this again. Check mode reports it as a needed bootstrap.
  - Credentials given as options reach the CLI through its environment, never its command line.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
attributes:
  check_mode:
    support: full
    description: Reports the problem and the command it would run; runs nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  required_version:
    description: The lowest bootstrap version the CDK app needs (the CLI says which, as in C(requires bootstrap stack
      version '6')).
    type: int
    default: 6
  qualifier:
    description: The bootstrap qualifier.
    type: str
    default: hnb659fds
  stack_name:
    description: The toolkit stack's name.
    type: str
    default: CDKToolkit
  bootstrap:
    description: Run C(cdk bootstrap) when the check fails and the CLI is installed; when false, only report.
    type: bool
    default: true
  cdk_executable:
    description: The CDK CLI, a name looked up on PATH or a path.
    type: str
    default: cdk
  cdk_args:
    description: More arguments for C(cdk bootstrap), such as V(--cloudformation-execution-policies).
    type: list
    elements: str
    default: []
  chdir:
    description: Directory to run the CLI in (the CDK app, when its cdk.json sets bootstrap options).
    type: path
"""

EXAMPLES = r"""
- name: CDK bootstrap present and recent enough
  runbook.recovery.cdk_bootstrap_check:
    required_version: 21
    chdir: /srv/chatbot/cdk
"""

RETURN = r"""
status:
  description: The toolkit stack's status before any fix (null when it does not exist).
  returned: always
  type: str
  sample: CREATE_COMPLETE
version:
  description: The bootstrap version found before any fix (null when none).
  returned: always
  type: int
  sample: 14
required_version:
  description: O(required_version).
  returned: always
  type: int
  sample: 21
problem:
  description: What is wrong, or null when the environment is bootstrapped.
  returned: always
  type: str
  sample: bootstrap version 14 is older than the 21 this app needs
command:
  description: The bootstrap command run, or that would be run (null when none is needed).
  returned: always
  type: list
  elements: str
  sample: [cdk, bootstrap, "aws://123456789012/us-east-1"]
cli_found:
  description: Whether the CDK CLI is installed on this host (when a bootstrap is needed).
  returned: when a bootstrap is needed
  type: bool
  sample: false
after:
  description: The check after running the CLI (only when it ran).
  returned: when the CLI ran
  type: dict
  sample: {"status": "UPDATE_COMPLETE", "version": 21, "problem": null}
"""

import shlex
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_argument_spec,
    aws_failures_reported,
)
from ansible_collections.runbook.recovery.plugins.module_utils.cdk_bootstrap import (
    LEFT_BEHIND,
    bootstrap_command,
    inspect,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError

# The CDK CLI (AWS SDK for JavaScript) reads AWS_REGION; Python tools it may call read AWS_DEFAULT_REGION.
_ENVIRONMENT = {"region": ("AWS_REGION", "AWS_DEFAULT_REGION"), "profile": ("AWS_PROFILE",),
                "endpoint_url": ("AWS_ENDPOINT_URL",), "access_key": ("AWS_ACCESS_KEY_ID",),
                "secret_key": ("AWS_SECRET_ACCESS_KEY",), "session_token": ("AWS_SESSION_TOKEN",)}


def main():
    argument_spec = aws_argument_spec()
    argument_spec.update(
        required_version=dict(type="int", default=6),
        qualifier=dict(type="str", default="hnb659fds"),
        stack_name=dict(type="str", default="CDKToolkit"),
        bootstrap=dict(type="bool", default=True),
        cdk_executable=dict(type="str", default="cdk"),
        cdk_args=dict(type="list", elements="str", default=[]),
        chdir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "checking the CDK bootstrap") as done:
        clients = Clients(p, 1)
        cfn, ssm = clients("cloudformation"), clients("ssm")
        found = inspect(cfn, ssm, p["stack_name"], p["qualifier"], p["required_version"])
        result = dict(found, changed=False, command=None)
        if found["problem"] is None:
            module.exit_json(**result)
        account = clients("sts").get_caller_identity()["Account"]
        command = bootstrap_command(p["cdk_executable"], account, cfn.meta.region_name, p["stack_name"],
                                    p["qualifier"], p["cdk_args"])
        result["command"] = command
        printable = shlex.join(command)
        executable = shutil.which(p["cdk_executable"])
        result["cli_found"] = executable is not None
        if module.check_mode or not p["bootstrap"]:
            result["changed"] = module.check_mode
            module.exit_json(**result)
        if found["status"] in LEFT_BEHIND:
            raise RunbookError(f"CDK bootstrap needed: {found['problem']}. Delete it first (runbook.recovery."
                               f"cfn_failed_stacks, or playbooks/bootstrap-fixes.yml), then run {printable}.", **result)
        if executable is None:
            raise RunbookError(f"CDK bootstrap needed: {found['problem']}. The CDK CLI ({p['cdk_executable']}) is not "
                               f"installed on this host: run `{printable}` where it is (npm install -g aws-cdk), "
                               f"then run this again. Nothing was changed.", **result)
        environ = {name: p[option] for option, names in _ENVIRONMENT.items() if p[option] for name in names}
        rc, out, err = module.run_command([executable] + command[1:], cwd=p["chdir"], environ_update=environ)
        done.wrote(f"`{printable}` ran (exit {rc}): it deploys the {p['stack_name']} stack, so that stack may have been "
                   "created or changed (aws cloudformation describe-stack-events shows what happened)")
        if rc != 0:
            raise RunbookError(f"`{printable}` failed (exit {rc}): {(err or out).strip()[-2000:]}", **result)
        after = inspect(cfn, ssm, p["stack_name"], p["qualifier"], p["required_version"])
        result.update(changed=True, after=after)
        if after["problem"]:
            raise RunbookError(f"`{printable}` ran, but the environment is still not bootstrapped: {after['problem']}.",
                               **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
