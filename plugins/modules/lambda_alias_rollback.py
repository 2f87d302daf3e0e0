#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lambda_alias_rollback
short_description: Roll Lambda aliases back to an earlier published version, recording what they pointed at so a second rollback undoes the first
description:
  - Without O(version), each alias goes to the newest published version older than the one it points at. A weighted
    alias (part of its traffic on a second version, a canary) first loses its second version - all traffic to its
    main version. With O(version), to that version (already there, unweighted, is no change).
  - Before the change, the version (and weights) replaced and the version set are recorded on the function, in the
    tags C(runbook:rollback-previous-<alias>-version), C(runbook:rollback-previous-<alias>-weights),
    C(runbook:rollback-<alias>-version) and C(runbook:rolled-back-<alias>-at); while the alias still points at the
    version set, a second rollback goes back to the one recorded, so it undoes the first.
  - Refused for every alias before any change, with what to do - V($LATEST) as the version (the unpublished code
    that changes with every deploy, on which AWS allows neither provisioned concurrency nor weighted routing), a
    version that is not published, and no published version to go back to.
  - C(UpdateAlias) carries the alias's C(RevisionId), so an alias someone moved since the plan read it is refused by
    AWS rather than overwritten. An alias with provisioned concurrency is waited for until it is READY again on the
    new version.
  - A function or alias that does not exist fails before any change.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
extends_documentation_fragment:
  - runbook.recovery.aws
  - runbook.recovery.aws.resources
attributes:
  check_mode:
    support: full
    description: Reads every alias and the function's versions, and reports from which version to which it would go;
      refusals fail here too. Writes nothing.
  diff_mode:
    support: full
    description: Each alias's version and second version before and after.
options:
  aliases:
    description: The aliases.
    type: list
    elements: dict
    required: true
    suboptions:
      function:
        description: Function name or ARN.
        type: str
        required: true
      alias:
        description: Alias name.
        type: str
        required: true
  version:
    description:
      - The published version to go to. Unset - the previous published version, or the recorded one (undo).
      - V(recorded) - the version the last rollback set, as recorded on each function. It changes nothing while each
        alias still points at it alone (in check mode, a check that the rollback holds); an alias never rolled back
        fails.
    type: str
  wait_timeout:
    description: Seconds to wait for the provisioned concurrency of an alias to be READY on its new version; V(0) does
      not wait.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Roll the live alias back to the previous published version
  runbook.recovery.lambda_alias_rollback:
    aliases:
      - {function: sake-sensei-recommendation, alias: live}

- name: Point it at version 4
  runbook.recovery.lambda_alias_rollback:
    aliases:
      - {function: sake-sensei-recommendation, alias: live}
    version: "4"
"""

RETURN = r"""
resources:
  description: One entry per alias.
  returned: always
  type: list
  elements: dict
  sample: [{"resource": "sake-sensei-recommendation:live", "action": "rollback", "changed": true,
            "arn": "arn:aws:lambda:us-east-1:123456789012:function:sake-sensei-recommendation",
            "before": {"version": "2", "second_version": null}, "after": {"version": "1", "second_version": null},
            "note": "the newest PUBLISHED one before 2; version 2 recorded for undo"}]
counts:
  description: Aliases per action (rollback, undo, unchanged, failed).
  returned: always
  type: dict
  sample: {"rollback": 1}
failed_resources:
  description: The aliases that failed.
  returned: always
  type: list
  elements: str
  sample: []
lines:
  description: One line per alias, as a person reads a plan.
  returned: always
  type: list
  elements: str
  sample: ["rollback        Lambda alias sake-sensei-recommendation:live: version=2, second_version=not set -> version=1, ..."]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    Clients,
    aws_failures_reported,
    resources_argument_spec,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import AliasVersion, resolve_aliases
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import finish, run


def main():
    argument_spec = resources_argument_spec(
        states=(),
        aliases=dict(type="list", elements="dict", required=True, options=dict(
            function=dict(type="str", required=True),
            alias=dict(type="str", required=True),
        )),
        version=dict(type="str"),
        wait_timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    with aws_failures_reported(module, "finding the Lambda aliases"):
        require_non_negative(p, "wait_timeout")
        clients = Clients(p, p["workers"])
        aliases = resolve_aliases(clients, p["aliases"])
    kind = AliasVersion(clients, p["version"], p["wait_timeout"])
    finish(module, run(kind, aliases, "rolled_back", module.check_mode, decide=kind.plan))


if __name__ == "__main__":
    main()
