#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sealed_plan
short_description: Write the plan of a destructive procedure as a sealed document, or read one back and check it
description:
  - With O(state=written) (a playbook's C(--check -e plan_out=FILE)), writes the plan as one JSON document (0600)
    holding the procedure, the inputs, the hosts, every resource as read (before) and as it would be written (after),
    when, and the SHA-256 digest of its canonical form. It writes in check mode too, since the plan is what check
    mode is for.
  - With O(state=read) (C(-e plan=FILE -e confirm=true)), reads the document and refuses, before anything changes,
    a file that is not a plan, a digest that does not match its content (an edited file), a plan of another
    procedure, a plan made for other O(inputs), or one older than O(max_age). The playbook then acts only on what
    the plan lists, as the plan read it, and refuses a resource that changed since.
  - With O(state=compared), also refuses the plan when O(resources), what this run's check-mode plan read and
    resolved just now, differ from the plan's (a resource changed, appeared or went away, or resolved to something
    else, such as another revision or another lock). Keys that change between two reads of an untouched resource (when it was
    read, an age, the sentences written from them, and O(ignore)) are left out of the comparison. The difference is
    named in the failure.
  - It runs on the controller, as an action plugin.
version_added: 0.1.0
author: runbook.recovery maintainers (@runbook-recovery)
attributes:
  check_mode:
    support: full
    description: O(state=written) writes the plan file in check mode (that is its purpose); nothing else is changed.
  diff_mode:
    support: none
    description: A plan file is not managed state.
options:
  state:
    description:
      - V(written) seals and writes a plan; V(read) reads and checks one; V(compared) reads and checks one and compares
        its resources with O(resources).
    type: str
    choices: [written, read, compared]
    required: true
  path:
    description: The plan file.
    type: path
    required: true
  procedure:
    description: The procedure, for example V(recover-db); a plan of another procedure is refused.
    type: str
    required: true
  inputs:
    description:
      - O(state=written), the validated inputs of the run. O(state=read), the inputs of this run; each one given must
        equal the plan's.
    type: dict
    default: {}
  hosts:
    description: The hosts the plan covers (O(state=written)).
    type: list
    elements: str
    default: []
  resources:
    description:
      - Every resource the plan read and resolved, by kind (O(state=written)); with O(state=compared), what this run
        read and resolved, in the same shape.
    type: dict
    default: {}
  ignore:
    description: With O(state=compared), more keys to leave out of the comparison, at any depth.
    type: list
    elements: str
    default: []
  partial:
    description:
      - With O(state=compared), compare only the kinds (top-level keys of O(resources)) given, for a play that goes
        host by host and compares each host's part of the plan when it reaches it.
    type: bool
    default: false
  max_age:
    description: How long after it was made a plan may be applied (V(1h), V(30m)).
    type: str
    default: 1h
"""

EXAMPLES = r"""
- name: Write the plan
  runbook.recovery.sealed_plan:
    state: written
    path: "{{ plan_out }}"
    procedure: emergency-shutdown
    inputs: {shutdown_scope: chatbot}
    hosts: "{{ ansible_play_hosts }}"
    resources: {lambda: "{{ plan_lambda.resources }}"}
  when: plan_out is defined

- name: Read the plan to apply
  runbook.recovery.sealed_plan:
    state: read
    path: "{{ plan }}"
    procedure: emergency-shutdown
    max_age: 1h
  register: sealed

- name: Refuse the plan if what it read has changed since
  runbook.recovery.sealed_plan:
    state: compared
    path: "{{ plan }}"
    procedure: terraform-unlock
    resources: {locks: "{{ replan.locks }}"}
"""

RETURN = r"""
plan:
  description: The plan document, as written or read.
  returned: success
  type: dict
  sample: {"format": 1, "procedure": "emergency-shutdown", "inputs": {"shutdown_scope": "chatbot"},
           "hosts": ["localhost"], "made_at": 1796606859.14, "made_at_utc": "2026-12-07T03:00:59Z",
           "resources": {}, "digest": "sha256:9f2c..."}
resources:
  description:
    - O(state=read), the plan's resources as the apply passes them to its modules (each read marked C(sealed), so
      it is read again and compared before a write).
  returned: when O(state=read)
  type: dict
  sample: {"lambda": [{"kind": "Lambda function", "resource": "chat-api", "read": {"sealed": true}}]}
digest:
  description: The plan's SHA-256 digest.
  returned: success
  type: str
  sample: sha256:9f2c4e1b0a7d...
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.sealed_plan import ARGUMENT_SPEC, handle


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = handle(module.params)
    except (RunbookError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
