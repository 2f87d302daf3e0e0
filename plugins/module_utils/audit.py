# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log: one JSON line per run of a procedure, appended under an exclusive lock to a 0600 file. Shared by
the audit_log module and its action plugin (which writes on the controller without starting a module)."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket

from ansible_collections.runbook.recovery.plugins.module_utils.common import isoformat, utc_now

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    procedure=dict(type="str", required=True),
    result=dict(type="str", required=True),
    actor=dict(type="str"),
    details=dict(type="dict", default={}),
)


def actor(explicit: str | None) -> str:
    if explicit:
        return explicit
    for variable in ("RUNBOOK_ACTOR", "SUDO_USER"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for our uid
        return str(os.getuid())


def make_record(params: dict) -> dict:
    record = {**params["details"], "at": isoformat(utc_now()), "actor": actor(params["actor"]),
              "controller": socket.gethostname(), "procedure": params["procedure"], "result": params["result"]}
    if os.environ.get("RUNBOOK_REASON"):  # why the run was made, as given in the Airflow trigger form
        record["reason"] = os.environ["RUNBOOK_REASON"]
    # An Airflow apply: who asked, who approved (checked by the apply before it ran), and the plan they approved.
    if os.environ.get("RUNBOOK_REQUESTER"):
        record["requester"] = os.environ["RUNBOOK_REQUESTER"]
    if os.environ.get("RUNBOOK_APPROVERS"):
        record["approvers"] = os.environ["RUNBOOK_APPROVERS"].split(",")
    if os.environ.get("RUNBOOK_PLAN_DIGEST"):
        record["plan_digest"] = os.environ["RUNBOOK_PLAN_DIGEST"]
    return record


def append(path: str, record: dict) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (json.dumps(record, sort_keys=True, default=str) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
