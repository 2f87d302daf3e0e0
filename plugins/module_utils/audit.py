# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log: one JSON line per run of a procedure, appended under an exclusive lock to a 0600 file. Shared by
the audit_log module and its action plugin (which writes on the controller without starting a module).

A hash chain makes an edit or a deletion visible: each record carries `prev`, the SHA-256 of the line before it
(64 zeros for the first), and `hash`, the SHA-256 of its own canonical JSON without `hash`. verify_chain() reads
the file and names the first line that does not match. (Removing the last lines leaves a shorter valid chain: the
S3 copy with Object Lock, or any copy kept elsewhere, is what shows that.)

The S3 trail (`runbook_audit_s3` in the inventory: {bucket, prefix, retention_days, mode}) is one chain for every
controller (a fleet's Airflow workers each keep a local file): record N is the object <prefix>/<N, 12 digits>.json,
written only if absent (S3's conditional write), under Object Lock retention, its `prev` the hash of record N-1's
body. Two writers racing for N: one wins, the other chains after it. Nobody can rewrite or delete a record before
its retention ends, not even whoever can write the bucket (COMPLIANCE mode)."""

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
    return _append(path, record, flush=False)[0]


def _append(path: str, record: dict, flush: bool) -> tuple[dict, int]:
    """append(); with `flush`, the spool's records for this log first (under the same lock), then out of the spool.
    Returns the record as written and how many spooled ones were appended before it."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        previous = last_line(fd)
        late = spooled(path) if flush else []
        for _spool_file, kept in late:
            previous = chained(kept, previous)
            os.write(fd, previous)
        line = chained(record, previous)
        os.write(fd, line)
        os.fsync(fd)
        for name, _kept in late:  # in the log now: out of the spool
            os.unlink(name)
    finally:
        os.close(fd)
    return json.loads(line), len(late)


# -- the spool: a record that could not be appended ----------------------------------------------------------------
# A procedure that worked is never undone because its record could not be written (a full or read-only disk, a
# log whose directory was removed): the record goes to the spool instead, the run says so loudly, and the next
# record appended to that log appends the spooled ones first, in order, each marked with why it was late.

def spool_dir() -> str:
    return os.environ.get("RUNBOOK_AUDIT_SPOOL") or os.path.join(os.path.expanduser("~"), ".local", "state",
                                                                 "runbook-recovery", "audit-spool")


def spool(path: str, record: dict, reason: str) -> str:
    """Keep the record for `path` in the spool (0600, in a 0700 directory); returns the spool file."""
    directory = spool_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = os.path.join(directory, f"{utc_now().strftime('%Y%m%dT%H%M%S%f')}-{os.urandom(4).hex()}.json")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"path": os.path.abspath(path), "record": {**record, "spooled": reason}}, handle, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    return name


def spooled(path: str) -> list[tuple[str, dict]]:
    """The spool's records for `path`, oldest first: (spool file, record)."""
    directory, found = spool_dir(), []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                kept = json.load(handle)
        except (OSError, ValueError):
            continue
        if kept.get("path") == os.path.abspath(path):
            found.append((os.path.join(directory, name), kept["record"]))
    return found


def record_or_spool(path: str, record: dict) -> dict:
    """Append the record (after any spooled for the same log); if the log cannot be written, spool it.
    {"record", "flushed": how many spooled records were appended first, "spooled": the spool file or None,
    "error": why the log could not be written}. Raises OSError only when neither the log nor the spool can be."""
    try:
        written, flushed = _append(path, record, flush=True)
        return {"record": written, "spooled": None, "error": None, "flushed": flushed}
    except OSError as exc:
        reason = f"cannot append to the audit log {path}: {exc}"
        return {"record": record, "spooled": spool(path, record, reason), "error": reason, "flushed": 0}


S3_TRAIL_SPEC = dict(bucket=dict(type="str", required=True), prefix=dict(type="str", default="runbook-audit"),
                     retention_days=dict(type="int", default=400),
                     mode=dict(type="str", choices=["GOVERNANCE", "COMPLIANCE"], default="COMPLIANCE"))


# S3's answers to a conditional write that another writer won.
RACE_LOST = ("PreconditionFailed", "ConditionalRequestConflict")


class S3Trail:
    """The shared audit trail in an S3 bucket with Object Lock (see the module's docstring)."""

    def __init__(self, s3, bucket: str, prefix: str = "runbook-audit", retention_days: int = 400,
                 mode: str = "COMPLIANCE"):
        self.s3, self.bucket, self.prefix = s3, bucket, prefix.strip("/")
        self.retention_days, self.mode = retention_days, mode

    def key(self, number: int) -> str:
        return f"{self.prefix}/{number:012d}.json"

    def last(self) -> tuple[int, bytes | None]:
        """The number of the newest record and its body (0, None for an empty trail)."""
        newest = None
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if name.endswith(".json") and name[:-5].isdigit() and (newest is None or item["Key"] > newest):
                    newest = item["Key"]
        if newest is None:
            return 0, None
        body = self.s3.get_object(Bucket=self.bucket, Key=newest)["Body"].read()
        return int(newest.rsplit("/", 1)[-1][:-5]), body

    def append(self, record: dict, attempts: int = 20) -> str:
        """Write the record as the next one of the chain; its key."""
        import datetime

        from botocore.exceptions import ClientError

        for _attempt in range(attempts):
            number, previous = self.last()
            line = chained(record, previous)
            until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=self.retention_days)
            try:
                self.s3.put_object(Bucket=self.bucket, Key=self.key(number + 1), Body=line.rstrip(b"\n"),
                                   ContentType="application/json", IfNoneMatch="*", ObjectLockMode=self.mode,
                                   ObjectLockRetainUntilDate=until)
                return self.key(number + 1)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in RACE_LOST:
                    raise
        raise OSError(f"s3://{self.bucket}/{self.prefix}: {attempts} writers raced for the next record")

    def lines(self) -> list[bytes]:
        """Every record's body, in order (for verify_lines)."""
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(".json")]
        return [self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read() for key in sorted(keys)]


def verify_chain(path: str) -> dict:
    """{ok, records, chained, first_bad_line, msg}: every line parses, each chained record's hash is its own, and
    its prev is the hash of the line before. Lines written before the chain existed (no prev, no hash) are
    accepted only before the first chained one."""
    with open(path, "rb") as handle:
        lines = handle.read().splitlines()
    return verify_lines(lines, path)


def verify_lines(lines: list[bytes], path: str) -> dict:
    """verify_chain over records already read (a file's lines, or an S3 trail's records in order)."""
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
