# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log: one JSON line per run of a procedure, appended under an exclusive lock to a 0600 file. Shared by
the audit_log module and its action plugin (which writes on the controller without starting a module).

A hash chain makes an edit or a deletion visible: each record carries `prev`, the SHA-256 of the line before it
(64 zeros for the first), and `hash`, the SHA-256 of its own canonical JSON without `hash`. verify_chain() reads
the file and names the first line that does not match. (Removing the last lines leaves a shorter valid chain: the
S3 copy with Object Lock, or any copy kept elsewhere, is what shows that.)"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
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


GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def record_hash(record: dict) -> str:
    """The SHA-256 of a record's canonical JSON, its own `hash` left out."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def chained(record: dict, previous_line: bytes | None) -> bytes:
    """The line to append after `previous_line`: the record with `prev` and `hash`."""
    # Through JSON once, so the hash is of exactly what a reader parses back (default=str turned into strings).
    linked = json.loads(json.dumps({**record, "prev": line_hash(previous_line) if previous_line else GENESIS},
                                   default=str))
    linked["hash"] = record_hash(linked)
    return (json.dumps(linked, sort_keys=True) + "\n").encode()


def last_line(fd: int) -> bytes | None:
    """The last line of the open file (read from its end; the log may be long)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    chunk, data = 65536, b""
    position = size
    while position > 0 and data.count(b"\n") < 2:
        step = min(chunk, position)
        position -= step
        data = os.pread(fd, step, position) + data
    lines = data.rstrip(b"\n").split(b"\n")
    return lines[-1] if lines and lines[-1] else None


def append(path: str, record: dict) -> dict:
    """Append the record, chained to the line before it; returns it as written (with prev and hash)."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        line = chained(record, last_line(fd))
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return json.loads(line)


def verify_chain(path: str) -> dict:
    """{ok, records, chained, first_bad_line, msg}: every line parses, each chained record's hash is its own, and
    its prev is the hash of the line before. Lines written before the chain existed (no prev, no hash) are
    accepted only before the first chained one."""
    with open(path, "rb") as handle:
        lines = handle.read().splitlines()
    previous, seen_chain, count = None, False, 0
    for number, line in enumerate(lines, start=1):
        problem = None
        try:
            record = json.loads(line)
        except ValueError:
            record, problem = None, "is not a JSON record"
        if record is not None and not isinstance(record, dict):
            problem = "is not a JSON record"
        elif record is not None and ("hash" in record or "prev" in record):
            seen_chain = True
            if record.get("hash") != record_hash(record):
                problem = "was changed after it was written (its hash does not match its content)"
            elif record.get("prev") != (line_hash(previous) if previous is not None else GENESIS):
                problem = ("does not follow the line before it: a record before it was removed, or inserted, or "
                           "changed")
        elif record is not None and seen_chain:
            problem = "has no hash, after the chain began: it was added or rewritten by hand"
        if problem:
            return {"ok": False, "records": len(lines), "chained": count, "first_bad_line": number,
                    "msg": f"{path}: line {number} {problem}. The lines before it are intact; keep the file as it "
                           "is and compare it with the S3 copy of the audit trail, if there is one."}
        count += seen_chain
        previous = line
    return {"ok": True, "records": len(lines), "chained": count, "first_bad_line": None,
            "msg": f"{path}: {len(lines)} records, {count} chained, none changed or removed between them"}
