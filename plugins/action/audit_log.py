# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""audit_log on the controller, in the worker that runs the task: the same record as the module writes, without
starting a Python process and loading a module for one line of JSON (every procedure writes one or two)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.runbook.recovery.plugins.module_utils.audit import ARGUMENT_SPEC, append, make_record


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        if self._task.delegate_to not in (None, "localhost", "127.0.0.1"):
            # Delegated elsewhere on purpose: the module runs there.
            return self._execute_module(module_name="runbook.recovery.audit_log", task_vars=task_vars)
        validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del validation
        record = make_record(params)
        if not self._play_context.check_mode:
            try:
                record = append(params["path"], record)
            except OSError as exc:
                return {**result, "failed": True, "record": record,
                        "msg": f"cannot append to the audit log {params['path']}: {exc}"}
        return {**result, "changed": False, "record": record}
