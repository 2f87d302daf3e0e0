# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""audit_log on the controller, in the worker that runs the task: the same record as the module writes, without
starting a Python process and loading a module for one line of JSON (every procedure writes one or two)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.runbook.recovery.plugins.module_utils.audit import (
    ARGUMENT_SPEC,
    S3Trail,
    make_record,
    record_or_spool,
    spool_dir,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws import client, describe_error


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
                written = record_or_spool(params["path"], record)
            except OSError as exc:
                return {**result, "failed": True, "record": record,
                        "msg": f"cannot append to the audit log {params['path']}, nor keep the record in the spool "
                               f"{spool_dir()}: {exc}"}
            record = written["record"]
            result.update(spooled=written["spooled"], flushed=written["flushed"])
            if written["spooled"]:
                self._display.warning(
                    f"AUDIT RECORD NOT WRITTEN: {written['error']}. It is kept in {written['spooled']} and will be "
                    "appended, before its own, by the next record written to that log: fix the log, then run any "
                    "procedure (or playbooks/verify-audit.yml). What this run did is done; it was not undone.")
            trail = self._templar.template((task_vars or {}).get("runbook_audit_s3") or {})
            if trail:
                result["s3"] = self._to_s3(trail, record, task_vars)
        return {**result, "changed": False, "record": record}

    def _to_s3(self, trail: dict, record: dict, task_vars: dict) -> dict:
        """The same record on the shared S3 trail (runbook_audit_s3). A failure there is reported loudly, never a
        failure of the task: the record is in the local log, and the run it records must not be undone for it."""
        connection = self._templar.template(task_vars.get("aws_connection") or {})
        try:
            s3 = client("s3", connection)
            key = S3Trail(s3, trail["bucket"], trail.get("prefix", "runbook-audit"), int(trail.get("retention_days",
                          400)), trail.get("mode", "COMPLIANCE")).append({k: v for k, v in record.items()
                                                                         if k not in ("prev", "hash")})
            return {"written": True, "url": f"s3://{trail['bucket']}/{key}"}
        except Exception as exc:
            message = describe_error(exc, f"writing the audit record to s3://{trail.get('bucket')}")
            self._display.warning(f"{message}. The record is in the local audit log only.")
            return {"written": False, "error": message}
