# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup store: layout, manifest, listing, verification records, retention, and the S3 copy.

Layout: <root>/<database>/<backup id>/ holds the pg_dump directory-format dump, manifest.json
(written last: a directory without it is not a backup) and verification.json (results of
pg_verify_backup). A backup is written under <root>/<database>/.partial-<id>/ and renamed into
place only after its manifest is on disk, so a partial backup is never listed. Files are 0600,
directories 0700. <root>/<database>/.restored.json names the backup a recovery put into the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ansible_collections.runbook.recovery.plugins.module_utils.common import (  # noqa: F401 (re-exported)
    RunbookError,
    compact_timestamp,
    fsync_dir,
    human_size,
    isoformat,
    parse_iso,
    utc_now,
    write_json_atomic,
)
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record

MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
# Which backup a recovery put into the database: {"database" (system id:oid), "backup_id", "at"}.
RESTORED = ".restored.json"
PARTIAL_PREFIX = ".partial-"
LEVELS = ("checksum", "catalog", "restore")
BACKUP_ID_RE = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
_METADATA = (MANIFEST, VERIFICATION)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dump_files(directory: str) -> list[str]:
    """Relative paths of the dump's files (everything but our metadata), sorted."""
    found = []
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), directory)
            if rel not in _METADATA and not rel.endswith(".tmp"):
                found.append(rel)
    return sorted(found)


def checksum_files(directory: str, names: list[str], workers: int = 4) -> dict[str, dict]:
    """sha256 and size of each file; hashing releases the GIL, so threads use every core."""
    def one(name):
        path = os.path.join(directory, name)
        return name, {"size": os.path.getsize(path), "sha256": sha256_file(path)}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(pool.map(one, names))


class FollowingHasher:
    """Hashes a directory's files while another process is still appending to them.

    pg_dump writes each file of a directory-format dump front to back and never rewrites it, so
    the bytes appended since the last look can be fed to that file's hash as they arrive; hashing
    then overlaps the dump instead of following it. finish() reads what is left once the writer
    has exited; a file that shrank (never expected) is hashed again from the start.
    """

    def __init__(self, directory: str, interval: float = 0.1):
        import threading

        self.directory, self.interval = directory, interval
        self._state: dict[str, list] = {}  # name -> [hasher, bytes consumed]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FollowingHasher:
        self._thread.start()
        return self

    def _catch_up(self) -> None:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.is_file() or entry.name in _METADATA or entry.name.endswith(".tmp"):
                continue
            hasher, consumed = self._state.setdefault(entry.name, [hashlib.sha256(), 0])
            size = entry.stat().st_size
            if size < consumed:
                self._state[entry.name] = [hashlib.sha256(), 0]
                hasher, consumed = self._state[entry.name]
            if size == consumed:
                continue
            with open(entry.path, "rb") as handle:
                handle.seek(consumed)
                while consumed < size:
                    block = handle.read(min(1 << 20, size - consumed))
                    if not block:
                        break
                    hasher.update(block)
                    consumed += len(block)
            self._state[entry.name][1] = consumed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._catch_up()

    def finish(self) -> dict[str, dict]:
        self._stop.set()
        self._thread.join()
        self._catch_up()
        return {name: {"size": consumed, "sha256": hasher.hexdigest()}
                for name, (hasher, consumed) in sorted(self._state.items())}


def free_bytes(path: str) -> int:
    """Free space where `path` is, or would be once created."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def secure_tree(path: str) -> None:
    os.chmod(path, 0o700)
    for dirpath, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(dirpath, name), 0o700)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o600)


@dataclass
class Backup:
    database: str
    backup_id: str
    path: str
    manifest: dict
    verification: dict = field(default_factory=dict)

    @property
    def finished_at(self):
        return parse_iso(self.manifest["finished_at"])

    @property
    def verified(self) -> bool:
        """Verified when at least one level has passed and none has failed since."""
        results = self.verification.get("levels", {})
        return bool(results) and all(r.get("ok") for r in results.values())

    @property
    def level(self) -> str | None:
        if not self.verified:
            return None
        passed = self.verification["levels"]
        return max(passed, key=LEVELS.index)

    def table_counts(self) -> dict[tuple[str, str], int]:
        return {(t["schema"], t["name"]): t["rows"] for t in self.manifest["tables"]}

    def summary(self) -> dict:
        return {
            "id": self.backup_id,
            "database": self.database,
            "path": self.path,
            "time": self.manifest["finished_at"],
            "started_at": self.manifest["started_at"],
            "size_bytes": self.manifest["size_bytes"],
            "size": human_size(self.manifest["size_bytes"]),
            "tables": len(self.manifest["tables"]),
            "rows": sum(t["rows"] for t in self.manifest["tables"]),
            "verified": self.verified,
            "level": self.level,
            "verification": self.verification.get("levels", {}),
        }


class LocalStore:
    def __init__(self, root: str):
        if not root:
            raise RunbookError("backup_root is empty: set the directory that holds backups (pg_backup_root).")
        self.root = os.path.abspath(os.path.expanduser(root))

    def database_dir(self, database: str) -> str:
        return os.path.join(self.root, database)

    def _load(self, database: str, backup_id: str) -> Backup | None:
        path = os.path.join(self.database_dir(database), backup_id)
        try:
            with open(os.path.join(path, MANIFEST)) as handle:
                manifest = json.load(handle)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError as exc:
            raise RunbookError(
                f"the manifest of backup {path} is unreadable ({exc}); move that directory aside.") from exc
        verification = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            with open(os.path.join(path, VERIFICATION)) as handle:
                verification = json.load(handle)
        return Backup(database, backup_id, path, manifest, verification)

    def list(self, database: str) -> list[Backup]:
        """Complete backups, oldest first. Partial ones (no manifest) are never listed."""
        directory = self.database_dir(database)
        if not os.path.isdir(directory):
            return []
        backups = []
        for name in os.listdir(directory):
            if BACKUP_ID_RE.match(name):
                backup = self._load(database, name)
                if backup is not None:
                    backups.append(backup)
        return sorted(backups, key=lambda b: (b.manifest["finished_at"], b.backup_id))

    def resolve(self, database: str, wanted: str = "latest") -> Backup:
        """'latest' (the newest verified backup; 'latest-verified' is the same), or a backup id -> the backup, or
        an error that lists what exists. A backup whose verification failed, or that was never verified, is never
        'latest': name it by its id to act on it anyway."""
        backups = self.list(database)
        if wanted in ("latest", "latest-verified"):
            candidates = [b for b in backups if b.verified]
            if candidates:
                return candidates[-1]
            unverified = f" ({len(backups)} unverified: {', '.join(b.backup_id for b in backups[-3:])})" \
                if backups else ""
            raise RunbookError(f"there is no verified backup of database {database!r} in "
                               f"{self.database_dir(database)}{unverified}: run playbooks/backup-db.yml (it verifies "
                               "what it writes), or check pg_backup_root and the database name.")
        if not BACKUP_ID_RE.match(str(wanted)):
            raise RunbookError(f"backup id {wanted!r} is not a backup id (they look like 20261123T051200Z); "
                               "use backup=latest or an id listed by playbooks/verify-backups.yml.")
        for backup in backups:
            if backup.backup_id == wanted:
                return backup
        available = ", ".join(b.backup_id for b in reversed(backups[-5:])) or "none"
        raise RunbookError(f"backup {wanted!r} of database {database!r} does not exist in "
                           f"{self.database_dir(database)} (newest available: {available}). "
                           "Use backup=latest or one of those ids.")

    @contextlib.contextmanager
    def locked(self, database: str, create: bool = True):
        """An exclusive lock per database directory: one backup or retention pass at a time."""
        directory = self.database_dir(database)
        if create:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        elif not os.path.isdir(directory):
            yield
            return
        fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def record_restored(self, database: str, identity: str, backup_id: str) -> None:
        """The database `identity` (server system identifier and database oid: a rename keeps it, a new
        database or another server has another) holds this backup."""
        os.makedirs(self.database_dir(database), mode=0o700, exist_ok=True)
        write_json_atomic(os.path.join(self.database_dir(database), RESTORED),
                          {"database": identity, "backup_id": backup_id, "at": isoformat(utc_now())})

    def restored_backup(self, database: str, identity: str) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(self.database_dir(database), RESTORED)) as handle:
                record = json.load(handle)
            if record.get("database") == identity:
                return record.get("backup_id")
        return None

    def new_backup_id(self, database: str, moment) -> str:
        base = compact_timestamp(moment)
        candidate, suffix = base, 0
        while os.path.exists(os.path.join(self.database_dir(database), candidate)):
            suffix += 1
            candidate = f"{base}-{suffix}"
        return candidate

    def partial_dir(self, database: str, backup_id: str) -> str:
        return os.path.join(self.database_dir(database), PARTIAL_PREFIX + backup_id)

    def publish(self, database: str, backup_id: str, manifest: dict) -> Backup:
        """Write the manifest last, then make the backup visible with one rename."""
        partial = self.partial_dir(database, backup_id)
        write_json_atomic(os.path.join(partial, MANIFEST), manifest)
        secure_tree(partial)
        final = os.path.join(self.database_dir(database), backup_id)
        os.rename(partial, final)
        fsync_dir(self.database_dir(database))
        record(f"backup {backup_id} of {database} written to {final}")
        return Backup(database, backup_id, final, manifest)

    def stale_partials(self, database: str) -> list[str]:
        """Left by an interrupted backup; only safe to remove while holding the database lock."""
        directory = self.database_dir(database)
        if not os.path.isdir(directory):
            return []
        return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.startswith(PARTIAL_PREFIX))

    def remove(self, path: str) -> None:
        shutil.rmtree(path)

    def record_verification(self, backup: Backup, level: str, ok: bool, message: str) -> bool:
        """Store a verification result; returns True when the recorded state changed."""
        previous = backup.verification.get("levels", {}).get(level)
        entry = {"ok": ok, "at": isoformat(utc_now()), "message": message}
        document = dict(backup.verification)
        document.setdefault("levels", {})
        document["levels"] = {**document["levels"], level: entry}
        write_json_atomic(os.path.join(backup.path, VERIFICATION), document)
        backup.verification = document
        return previous is None or previous.get("ok") != ok


def retention_plan(backups: list[Backup], keep_last: int | None, max_age_days: float | None,
                   now=None, protect: tuple[str, ...] = ()) -> list[Backup]:
    """Backups that retention removes, oldest first.

    A backup goes only when every rule that is set lets it go: it is not among the newest
    `keep_last`, and it is older than `max_age_days`. The newest verified backup and the ids in
    `protect` always stay. With no rule set, nothing goes.
    """
    if keep_last is None and max_age_days is None:
        return []
    now = now or utc_now()
    verified = [b for b in backups if b.verified]
    keep = set(protect) | ({verified[-1].backup_id} if verified else set())
    doomed = []
    for rank, backup in enumerate(reversed(backups)):
        if backup.backup_id in keep:
            continue
        beyond_count = keep_last is None or rank >= keep_last
        too_old = max_age_days is None or (now - backup.finished_at).total_seconds() > max_age_days * 86400
        if beyond_count and too_old:
            doomed.append(backup)
    return list(reversed(doomed))


SIGNATURE = MANIFEST + ".sig"


def confined(directory: str, name: str) -> str:
    """`directory`/`name` for a file a manifest names, refused unless it is a plain relative path that stays inside
    `directory` (a manifest read from S3 is only as trustworthy as whoever can write the bucket)."""
    parts = name.split("/") if isinstance(name, str) else []
    if (not parts or name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts)
            or any(ord(c) < 32 for c in name)):
        raise RunbookError(f"the manifest names the file {name!r}, which is not a plain path inside the backup: "
                           "refused, and nothing was written. The manifest was changed by someone; do not use it.")
    target = os.path.join(directory, *parts)
    if not os.path.realpath(target).startswith(os.path.realpath(directory) + os.sep):
        raise RunbookError(f"the manifest's file {name!r} leads outside the backup: refused, nothing was written.")
    return target


def manifest_signature(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class S3Store:
    """The second store: s3://bucket/prefix/<database>/<backup id>/..., manifest uploaded last,
    every object written with server-side encryption.

    With a signing key (from the inventory, never stored with the backups), the manifest is signed (HMAC-SHA256,
    <backup>/manifest.json.sig) and a download refuses a manifest without a valid signature before it writes
    anything: the manifest holds every file's SHA-256, which the restore checks, so whoever can write the bucket
    but does not hold the key cannot make a backup of theirs be restored. Every path a manifest names is confined
    to the backup's directory either way."""

    def __init__(self, client, bucket: str, prefix: str = "", sse: str = "AES256", kms_key_id: str | None = None,
                 signing_key: str | None = None):
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.sse, self.kms_key_id, self.signing_key = sse, kms_key_id, signing_key or None

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _extra(self) -> dict:
        extra = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        return extra

    def has(self, database: str, backup_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(database, backup_id, MANIFEST))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def upload(self, backup: Backup) -> int:
        names = sorted(backup.manifest["files"])
        for name in names:
            self.client.upload_file(os.path.join(backup.path, name), self.bucket,
                                    self._key(backup.database, backup.backup_id, name), ExtraArgs=self._extra())
        body = json.dumps(backup.manifest, indent=2).encode()
        if self.signing_key:
            self.client.put_object(Bucket=self.bucket, Key=self._key(backup.database, backup.backup_id, SIGNATURE),
                                   Body=manifest_signature(self.signing_key, body).encode(), **self._extra())
        self.client.put_object(Bucket=self.bucket, Key=self._key(backup.database, backup.backup_id, MANIFEST),
                               Body=body, **self._extra())
        return len(names) + 1 + bool(self.signing_key)

    def _authentic_manifest(self, database: str, backup_id: str) -> dict:
        """The manifest of an S3 backup, its signature checked when this store has a key; refused before anything
        is written when it is missing or wrong, when it names another backup, or names a path outside."""
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{self._key(database, backup_id)}"
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(database, backup_id, MANIFEST))["Body"].read()
        if self.signing_key:
            try:
                signature = self.client.get_object(Bucket=self.bucket,
                                                   Key=self._key(database, backup_id, SIGNATURE))["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
                signature = b""
            if not hmac.compare_digest(signature.decode(errors="replace").strip(),
                                       manifest_signature(self.signing_key, body)):
                why = "has no signature" if not signature else "is not signed with this inventory's key, or changed"
                raise RunbookError(f"the manifest of {where} {why}: refused, nothing was fetched. A backup is trusted "
                                   "only when its manifest is signed with pg_backup_s3_signing_key.")
        manifest = json.loads(body)
        if manifest.get("database") not in (None, database) or manifest.get("backup_id") not in (None, backup_id):
            raise RunbookError(f"the manifest of {where} describes {manifest.get('database')}/"
                               f"{manifest.get('backup_id')}, not {database}/{backup_id}: refused, nothing was "
                               "fetched.")
        return manifest

    def list(self, database: str) -> list[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(database) + "/"):
            for item in page.get("Contents", []):
                parts = item["Key"].rsplit("/", 2)
                if len(parts) == 3 and parts[2] == MANIFEST and BACKUP_ID_RE.match(parts[1]):
                    manifest = json.loads(self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read())
                    found.append({"id": parts[1], "database": database, "time": manifest["finished_at"],
                                  "size_bytes": manifest["size_bytes"], "size": human_size(manifest["size_bytes"]),
                                  "store": f"s3://{self.bucket}/{self._key(database, parts[1])}"})
        return sorted(found, key=lambda b: (b["time"], b["id"]))

    def download(self, database: str, backup_id: str, store: LocalStore) -> Backup:
        """Copy a backup from S3 into the local store. Every file is checked against the manifest's size and sha256
        before the backup is published: an object changed in the bucket leaves nothing in the store."""
        with store.locked(database):
            existing = store._load(database, backup_id)
            if existing is not None:
                return existing
            manifest = self._authentic_manifest(database, backup_id)
            partial = store.partial_dir(database, backup_id)
            targets = {name: confined(partial, name) for name in manifest["files"]}  # all checked before any write
            os.makedirs(partial, mode=0o700, exist_ok=True)
            try:
                for name, target in targets.items():
                    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
                    confined(partial, name)  # no link planted among the folders made meanwhile
                    self.client.download_file(self.bucket, self._key(database, backup_id, name), target)
                actual = checksum_files(partial, sorted(targets))
                differ = [name for name, facts in actual.items()
                          if (facts["sha256"], facts["size"]) != (manifest["files"][name]["sha256"],
                                                                  manifest["files"][name]["size"])]
                if differ:
                    raise RunbookError(
                        f"{len(differ)} file(s) of s3://{self.bucket}/{self._key(database, backup_id)} differ from "
                        f"the backup's manifest ({', '.join(differ[:3])}): changed in the bucket after the backup "
                        "was written. Nothing was kept in the local store; fetch another backup, and find out who "
                        "can write the bucket.", differ=differ)
                return store.publish(database, backup_id, manifest)
            finally:
                shutil.rmtree(partial, ignore_errors=True)  # published: renamed away; otherwise incomplete
