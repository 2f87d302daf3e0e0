# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""sealed_plan on the controller, where the person who runs the playbook keeps the plan file: written under --check
(the plan is what check mode is for), read and checked before the apply acts."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.sealed_plan import ARGUMENT_SPEC, handle


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del validation
        try:
            return {**result, **handle(params)}
        except (RunbookError, OSError) as exc:
            return {**result, "failed": True, "msg": str(exc)}
