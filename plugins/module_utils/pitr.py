# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery with Barman's cloud tools: the archive (base backups and WAL in S3), recovery
targets, the WAL a recovery needs and whether the archive holds all of it, and a throwaway cluster that
replays to a target on a private socket while the live cluster keeps serving.

The engine does the copying (barman-cloud-wal-archive, -backup, -restore, -wal-restore, -backup-delete);
this file decides what to copy and checks what came back."""

from __future__ import annotations

import bz2
import contextlib
import copy
import datetime
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    human_size,
    isoformat,
    utc_now,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import (
    ConnParams,
    pg_tool,
    tied_to_this_process,
)

try:  # boto3 itself is imported when the archive is first listed (see aws.py)
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # pragma: no cover - reported when the archive is listed
    BotoCoreError = ClientError = Exception

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
# WAL segments fetched ahead, in parallel, by each restore_command run of a recovery.
PREFETCH = 16
_WAL_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(?:\.[a-z0-9]+)?$")
_HISTORY_NAME = re.compile(r"^([0-9A-F]{8})\.history(?:\.[a-z0-9]+)?$")
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A time with a zone: 2026-11-25T14:02:00Z, 2026-11-25 14:02:00+01:00, fractions allowed.
_ZONED_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$")


# -- LSNs and WAL segment names -------------------------------------------------------------------
def lsn_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def segment_of(lsn: str | int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    return (lsn_int(lsn) if isinstance(lsn, str) else lsn) // segment_size


def segment_name(timeline: int, segment: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segment // per_id:08X}{segment % per_id:08X}"


def parse_segment(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, int] | None:
    """(timeline, segment number) of a WAL file name (compressed suffixes allowed), or None."""
    found = _WAL_NAME.match(name)
    if not found:
        return None
    per_id = 0x100000000 // segment_size
    return int(found.group(1), 16), int(found.group(2), 16) * per_id + int(found.group(3), 16)


def missing_segments(available: set[tuple[int, int]], timeline: int, first: int, last: int) -> list[int]:
    """Segments of [first, last] not in the archive on `timeline` or an earlier one (a segment of a timeline's
    ancestor is replayed up to the switch point, so either serves a recovery's range checks)."""
    by_segment: dict[int, set[int]] = {}
    for tli, segment in available:
        by_segment.setdefault(segment, set()).add(tli)
    return [segment for segment in range(first, last + 1)
            if not any(tli <= timeline for tli in by_segment.get(segment, ()))]


def ranges(numbers: list[int], timeline: int, segment_size: int) -> list[str]:
    """Consecutive segment numbers as WAL name ranges, for messages."""
    out: list[str] = []
    for number in numbers:
        name = segment_name(timeline, number, segment_size)
        if out and numbers[numbers.index(number) - 1] == number - 1:
            out[-1] = out[-1].split("..")[0] + ".." + name
        else:
            out.append(name)
    return out


# -- recovery targets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    kind: str  # time | lsn | name | latest
    value: str | None = None
    moment: datetime.datetime | None = None

    def describe(self) -> str:
        return "the end of the archived WAL (latest)" if self.kind == "latest" else f"{self.kind} {self.value}"

    @property
    def label(self) -> str:
        """What the store records as the recovered 'backup' of a database made by this target."""
        return f"pitr:{self.kind}={self.value}" if self.value else "pitr:latest"

    def settings(self) -> dict[str, str]:
        """recovery_target_* for postgresql.auto.conf."""
        if self.kind == "time":
            return {"recovery_target_time": self.moment.astimezone(datetime.UTC).strftime(
                "%Y-%m-%d %H:%M:%S.%f+00")}
        if self.kind == "lsn":
            return {"recovery_target_lsn": self.value}
        if self.kind == "name":
            return {"recovery_target_name": self.value}
        return {}


def parse_target(target_time: str | None = None, target_lsn: str | None = None, target_name: str | None = None,
                 target: str | None = None, now: datetime.datetime | None = None) -> Target:
    given = {key: value for key, value in (("target_time", target_time), ("target_lsn", target_lsn),
                                           ("target_name", target_name), ("target", target)) if value not in (None, "")}
    if len(given) != 1:
        raise RunbookError(
            ("give one recovery target, not " + " and ".join(f"{k}={v}" for k, v in given.items()) + "."
             if given else "give a recovery target: target_time, target_lsn, target_name or target=latest.")
            + " Nothing was changed.")
    key, value = next(iter(given.items()))
    value = str(value).strip()
    if key == "target":
        if value != "latest":
            raise RunbookError(f"target={value!r} is not known: use target=latest, or target_time, target_lsn or "
                               "target_name. Nothing was changed.")
        return Target("latest")
    if key == "target_lsn":
        if not _LSN.match(value):
            raise RunbookError(f"target_lsn={value!r} is not an LSN: write it as PostgreSQL prints it, two hex "
                               "numbers with a slash (for example 0/3000148, from pg_current_wal_lsn() or an audit "
                               "record's restore_point.lsn). Nothing was changed.")
        return Target("lsn", value.upper())
    if key == "target_name":
        if len(value.encode()) > 63 or any(ord(c) < 32 for c in value) or "'" in value:
            raise RunbookError(f"target_name={value!r} cannot be a restore point name (at most 63 bytes, no quotes "
                               "or control characters). Nothing was changed.")
        return Target("name", value)
    if not _ZONED_TIME.match(value):
        hint = ("it has no time zone: add Z for UTC or an offset like +01:00 (a time without a zone means "
                "different instants on different machines)"
                if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", value)
                else "it is not a date and time: write it like 2026-11-25T14:02:00Z")
        raise RunbookError(f"target_time={value!r} is refused: {hint}. Nothing was changed.")
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError as exc:
        raise RunbookError(f"target_time={value!r} is not a valid date and time ({exc}): write it like "
                           "2026-11-25T14:02:00Z. Nothing was changed.") from exc
    moment = moment.astimezone(datetime.UTC)
    now = now or utc_now()
    if moment > now:
        raise RunbookError(f"target_time={value} is in the future (it is {isoformat(now)} now): nothing can be "
                           "recovered to it. Nothing was changed.")
    return Target("time", isoformat(moment), moment)


# -- the archive ----------------------------------------------------------------------------------------
@dataclass
class ArchiveConfig:
    """Where the archive lives and how the engine reaches it. Credentials stay in files of `aws_dir`
    (`credentials`, `config` with the profile's region and endpoint_url), never on a command line."""

    destination: str  # s3://bucket/prefix
    server_name: str
    tools_dir: str
    aws_dir: str
    profile: str = "runbook-archive"
    compression: str = "gzip"

    def validate(self) -> None:
        # It goes into archive_command, which PostgreSQL runs through a shell: quoted there, and no character a
        # shell reads specially allowed here either.
        if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$", self.destination or ""):
            raise RunbookError(f"archive destination {self.destination!r} is not an S3 URL like "
                               "s3://my-bucket/postgres (a bucket name, then a prefix of letters, digits, '.', '_', "
                               "'-' and '/'): set pg_archive_destination. Nothing was changed.")
        if not _SERVER_NAME.match(self.server_name or ""):
            raise RunbookError(f"archive server name {self.server_name!r} must be letters, digits, '_', '-' or '.' "
                               "(at most 63): set pg_archive_server_name. Nothing was changed.")
        if not _PROFILE_NAME.match(self.profile or ""):
            raise RunbookError(f"AWS profile name {self.profile!r} must be letters, digits, '_', '-' or '.'.")
        if self.compression not in ("gzip", "bzip2", "snappy", "none"):
            raise RunbookError(f"compression {self.compression!r}: use gzip, bzip2, snappy or none.")
        for what, path in (("tools_dir", self.tools_dir), ("aws_dir", self.aws_dir)):
            if not path or not os.path.isabs(path) or re.search(r"[\s'\"]", path):
                raise RunbookError(f"{what} {path!r} must be an absolute path without spaces or quotes.")

    @property
    def bucket(self) -> str:
        return self.destination[5:].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        rest = self.destination[5:].split("/", 1)
        return rest[1].strip("/") if len(rest) > 1 else ""

    def server_prefix(self) -> str:
        return "/".join(p for p in (self.prefix, self.server_name) if p) + "/"

    def env(self) -> dict[str, str]:
        return {"AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.aws_dir, "credentials"),
                "AWS_CONFIG_FILE": os.path.join(self.aws_dir, "config")}

    def tool(self, name: str) -> str:
        return os.path.join(self.tools_dir, "bin", name)

    def _command(self, name: str, *args: str) -> str:
        """A command line for PostgreSQL's shell, every word quoted (%p and %f need no quotes and get none)."""
        env = " ".join(f"{key}={shlex.quote(value)}" for key, value in self.env().items())
        return " ".join([env, *(shlex.quote(word) for word in (self.tool(name), "-P", self.profile, *args))])

    def compression_args(self) -> list[str]:
        return [] if self.compression == "none" else [f"--{self.compression}"]

    def archive_command(self) -> str:
        """What PostgreSQL runs for each finished WAL segment (as its own OS user)."""
        return self._command("barman-cloud-wal-archive", *self.compression_args(), self.destination,
                             self.server_name, "%p")

    def restore_command(self, spool_dir: str | None = None, prefetch: int = PREFETCH) -> str:
        """The engine's WAL restore. With a spool directory, each run also fetches the next `prefetch` segments
        in parallel into it, and a segment already there is moved into place by the shell, without starting the
        engine (one Python start per segment is what replay time is otherwise made of)."""
        if not spool_dir:
            return self._command("barman-cloud-wal-restore", self.destination, self.server_name, "%f", "%p")
        fetch = self._command("barman-cloud-wal-restore", "-p", str(prefetch), "--spool-dir", spool_dir,
                              self.destination, self.server_name, "%f", "%p")
        spooled = shlex.quote(spool_dir)
        return f'if [ -f {spooled}/%f ]; then mv {spooled}/%f "%p"; else {fetch}; fi'


def as_user(user: str | None, command: list[str]) -> list[str]:
    """Run as the server's OS user when we are someone else (root on the database host)."""
    if user and os.geteuid() == 0 and pwd.getpwuid(os.geteuid()).pw_name != user:
        return ["runuser", "-u", user, "--", *command]
    return command


class Archive:
    """The base backups and WAL of one server in the archive, read and written with the engine's tools."""

    def __init__(self, config: ArchiveConfig, os_user: str | None = None, connection: dict | None = None):
        # `connection` (endpoint_url, region, access_key, secret_key): how to read the archive before the run has
        # written the profile in aws_dir (a check-mode plan on a server that does not archive yet).
        self.config, self.os_user, self.connection = config, os_user, connection or {}
        self._client = None
        # (server name, finished base backups): listed once per module run (each listing starts the engine), and
        # forgotten whenever the engine runs anything else, which may have taken or deleted one.
        self._listed: tuple[str, list[dict]] | None = None

    def tools_installed(self) -> bool:
        return os.access(self.config.tool("barman-cloud-backup-list"), os.X_OK)

    # -- running the engine --------------------------------------------------------------------------
    def run(self, name: str, *args: str, env: dict | None = None, timeout: float | None = None,
            as_server_user: bool = False) -> str:
        if name != "barman-cloud-backup-list":
            self._listed = None
        command = [self.config.tool(name), "-P", self.config.profile, *args]
        if not os.access(command[0], os.X_OK):
            raise RunbookError(f"{command[0]} is missing: install Barman's cloud tools on this host (the pg_archive "
                               "role does, into pg_archive_tools_dir).")
        if as_server_user:
            command = as_user(self.os_user, command)
        full_env = {**os.environ, **self.config.env(), **(env or {})}
        with tempfile.TemporaryFile() as stderr:
            try:
                result = subprocess.run(tied_to_this_process(command), env=full_env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=stderr, timeout=timeout, cwd="/", check=False)
            except subprocess.TimeoutExpired as exc:
                raise RunbookError(f"{name} did not finish within {timeout:.0f} s.") from exc
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace").strip()
        if result.returncode != 0:
            raise RunbookError(f"{name} failed (exit {result.returncode}): {errors[-1500:] or 'no message'}",
                               stderr=errors[-4000:])
        return result.stdout.decode(errors="replace")

    def backups(self) -> list[dict]:
        """Finished base backups, oldest first: id, name, status, begin/end WAL and LSN, times, timeline, size,
        system identifier. Read with the engine's tools, or from the backups' backup.info in the bucket where the
        tools are not installed yet (a check-mode plan)."""
        if self._listed is not None and self._listed[0] == self.config.server_name:
            return [dict(backup) for backup in self._listed[1]]
        if self.tools_installed() and os.path.exists(self.config.env()["AWS_CONFIG_FILE"]):
            listed = json.loads(self.run("barman-cloud-backup-list", "--format", "json", self.config.destination,
                                         self.config.server_name) or "{}")
        else:
            listed = {"backups_list": self._backup_infos()}
        out = []
        for item in listed.get("backups_list", []):
            if item.get("status") != "DONE":
                continue
            out.append({
                "id": item["backup_id"], "name": item.get("backup_name"), "timeline": int(item.get("timeline") or 1),
                "begin_wal": item.get("begin_wal"), "end_wal": item.get("end_wal"),
                "begin_lsn": item.get("begin_xlog"), "end_lsn": item.get("end_xlog"),
                "begin_time": _barman_time(item.get("begin_time_iso") or item.get("begin_time")),
                "end_time": _barman_time(item.get("end_time_iso") or item.get("end_time")),
                "size_bytes": int(item.get("cluster_size") or item.get("size") or 0),
                "systemid": str(item["systemid"]) if item.get("systemid") else None,
            })
        out.sort(key=lambda b: b["end_time"])
        self._listed = (self.config.server_name, out)
        return [dict(backup) for backup in out]

    def _backup_infos(self) -> list[dict]:
        """Each base backup's backup.info (barman's key=value file), as barman-cloud-backup-list reports it."""
        infos = []
        if not self.bucket_exists():  # a plan before the run that creates it
            return infos
        try:
            for page in self._s3().get_paginator("list_objects_v2").paginate(
                    Bucket=self.config.bucket, Prefix=self.config.server_prefix() + "base/"):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/backup.info"):
                        continue
                    body = self._s3().get_object(Bucket=self.config.bucket, Key=item["Key"])["Body"].read()
                    fields = dict(line.split("=", 1) for line in body.decode(errors="replace").splitlines()
                                  if "=" in line)
                    infos.append({**fields, "backup_id": item["Key"].rsplit("/", 2)[-2]})
        except (BotoCoreError, ClientError) as exc:
            raise RunbookError(f"cannot list the base backups at {self.config.destination}: {exc}") from exc
        return infos

    def _s3(self):
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise RunbookError("boto3 is required to list the archive: install it for the Python that runs "
                                   "the modules.") from None
            if self.connection and not os.path.exists(self.config.env()["AWS_CONFIG_FILE"]):
                c = self.connection
                self._client = boto3.client("s3", endpoint_url=c.get("endpoint_url") or None,
                                            region_name=c.get("region") or "us-east-1",
                                            aws_access_key_id=c.get("access_key") or None,
                                            aws_secret_access_key=c.get("secret_key") or None)
                return self._client
            saved = {key: os.environ.get(key) for key in self.config.env()}
            os.environ.update(self.config.env())
            try:
                self._client = boto3.Session(profile_name=self.config.profile).client("s3")
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        return self._client

    def wal_objects(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> dict:
        """Every archived segment as {(timeline, segment): last modified}, and the timelines with a .history."""
        segments: dict[tuple[int, int], datetime.datetime] = {}
        histories: set[int] = set()
        prefix = self.config.server_prefix() + "wals/"
        if not self.tools_installed() and not self.bucket_exists():  # a plan before the run that creates it
            return {"segments": segments, "histories": histories}
        try:
            for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.config.bucket,
                                                                             Prefix=prefix):
                for item in page.get("Contents", []):
                    base = item["Key"].rsplit("/", 1)[-1]
                    parsed = parse_segment(base, segment_size)
                    if parsed:
                        segments[parsed] = item["LastModified"].astimezone(datetime.UTC)
                    elif _HISTORY_NAME.match(base):
                        histories.add(int(base[:8], 16))
        except (BotoCoreError, ClientError) as exc:
            raise RunbookError(f"cannot list the WAL archive at {self.config.destination}: {exc}") from exc
        return {"segments": segments, "histories": histories}

    def check(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> dict:
        """The archive's backups and WAL: the recoverable window, and every segment missing since the oldest
        backup began (a gap: nothing after it can be recovered from an older backup)."""
        backups = self.backups()
        wal = self.wal_objects(segment_size)
        report = {"backups": backups, "segments": len(wal["segments"]), "gaps": [], "newest_wal": None,
                  "newest_wal_at": None, "window": None, "histories": sorted(wal["histories"])}
        if wal["segments"]:
            newest = max(wal["segments"], key=lambda key: (key[1], key[0]))
            report["newest_wal"] = segment_name(*newest, segment_size)
            report["newest_wal_at"] = isoformat(max(wal["segments"].values()))
        if backups and wal["segments"]:
            oldest = backups[0]
            timeline = max(t for t, _s in wal["segments"])
            first = parse_segment(oldest["begin_wal"], segment_size)[1]
            last = max(s for _t, s in wal["segments"])
            gaps = missing_segments(set(wal["segments"]), timeline, first, last)
            report["gaps"] = ranges(gaps, timeline, segment_size)
            report["window"] = {"from": isoformat(oldest["end_time"]), "to": report["newest_wal_at"]}
        return report

    # -- whose archive it is ---------------------------------------------------------------------------
    def newest_wal_system_identifier(self) -> str | None:
        """The system identifier in the first page header of the newest archived segment (every segment's first
        page carries its cluster's), or None: no segment, or a compression this reader does not open (snappy)."""
        newest = None
        try:
            for page in self._s3().get_paginator("list_objects_v2").paginate(
                    Bucket=self.config.bucket, Prefix=self.config.server_prefix() + "wals/"):
                for item in page.get("Contents", []):
                    base = item["Key"].rsplit("/", 1)[-1]
                    if _SEGMENT_OBJECT.match(base) and (newest is None or base[:24] > newest[1][:24]):
                        newest = (item["Key"], base)
            if newest is None:
                return None
            key, base = newest
            if base.endswith(".snappy"):
                return None
            ranged = {"Range": "bytes=0-1048575"} if base.endswith(".gz") else {}
            body = self._s3().get_object(Bucket=self.config.bucket, Key=key, **ranged)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise RunbookError(f"cannot read the WAL archive at {self.config.destination}: {exc}") from exc
        if base.endswith(".gz"):
            body = zlib.decompressobj(wbits=31).decompress(body, 64)
        elif base.endswith(".bz2"):
            body = bz2.decompress(body)[:64]
        return wal_page_system_identifier(body)

    def bucket_exists(self) -> bool:
        try:
            self._s3().head_bucket(Bucket=self.config.bucket)
            return True
        except (ClientError, BotoCoreError) as exc:
            # Only AWS's answer that there is no such bucket means none; a BotoCoreError (no answer) has no code.
            code = str(exc.response.get("Error", {}).get("Code")) if isinstance(exc, ClientError) else None
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise RunbookError(f"cannot reach the archive bucket {self.config.bucket}: {exc}") from exc

    def identities(self) -> dict:
        """Whose base backups and WAL this server name holds: {systemid: what of it} (empty: nothing yet, or no
        bucket yet)."""
        found: dict[str, list[str]] = {}
        if not self.bucket_exists():
            return found
        for backup in self.backups():
            if backup.get("systemid"):
                found.setdefault(backup["systemid"], []).append(f"base backup {backup['id']}")
        wal = self.newest_wal_system_identifier()
        if wal:
            found.setdefault(wal, []).append("the newest WAL")
        return found

    def bind(self, system_identifier: str | None, adopt: bool = False) -> dict:
        """Which generation of the archive this server (`system_identifier`) writes and reads, set on the config:
        the server name itself when what it holds is this server's, or nothing yet; SERVER.SYSTEMID, a generation of
        its own, when it holds another cluster's and that generation exists or `adopt` starts it. Another cluster's
        archive with no generation of this one is refused, naming both identifiers and the two ways out."""
        name = self.config.server_name
        if not system_identifier:  # a server that does not tell (no right to read its control data): as before
            return {"server_name": name, "state": "not checked (the server's system identifier is not readable)"}
        here = self.identities()
        if set(here) <= {system_identifier}:
            return {"server_name": name, "state": "this server's" if here else "empty"}
        others = {sysid: what for sysid, what in here.items() if sysid != system_identifier}
        generation = f"{name}.{system_identifier}"
        named = "; ".join(f"system {sysid} ({', '.join(what[:3])})" for sysid, what in sorted(others.items()))
        if not _SERVER_NAME.match(generation):
            raise RunbookError(
                f"the archive {self.config.destination} under server name {name} holds another cluster's WAL or base "
                f"backups ({named}), not this server's (system {system_identifier}), and a generation of its own "
                f"({generation}) would be a name longer than 63 characters: give this cluster a new, shorter "
                "server_name. Nothing was changed.")
        sibling = copy.copy(self)  # the same bucket and client, the generation's name
        sibling.config = ArchiveConfig(**{**self.config.__dict__, "server_name": generation})
        existing = sibling.identities()
        if existing or adopt:
            self.config.server_name = generation
            return {"server_name": generation,
                    "state": "this server's generation" if existing else "a new generation of this server",
                    "other_generation": {"server_name": name, "systems": sorted(others)}}
        raise RunbookError(
            f"the archive {self.config.destination} under server name {name} belongs to another cluster: it holds "
            f"{named}, and this server is system {system_identifier} (a new initdb: rebuilt, or upgraded by dump "
            "and restore). Its base backups cannot recover this server, and its WAL must not be mixed with this "
            "server's. Either give this cluster a new pg_archive server_name (or destination), or set "
            f"pg_archive_adopt=true to start a new generation, {generation}, with its own first base backup; the "
            f"old generation under {name} is kept untouched. Nothing was changed.")


# The first page of every WAL segment has the long header: XLogPageHeaderData (magic, info, timeline, page address,
# remaining length; 24 bytes aligned), then the system identifier (uint64), segment size and block size.
_XLP_LONG_HEADER = 0x0002
_SEGMENT_OBJECT = re.compile(r"^[0-9A-F]{24}(?:\.(?:gz|bz2|snappy))?$")


def wal_page_system_identifier(first_page: bytes) -> str | None:
    if len(first_page) < 32:
        return None
    info = struct.unpack_from("<H", first_page, 2)[0]
    if not info & _XLP_LONG_HEADER:
        return None
    return str(struct.unpack_from("<Q", first_page, 24)[0])


def _barman_time(text) -> datetime.datetime | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        moment = datetime.datetime.strptime(text, "%a %b %d %H:%M:%S %Y")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


# -- choosing a backup and checking the WAL a recovery needs ------------------------------------------------------
def choose_backup(backups: list[dict], target: Target) -> dict:
    """The newest base backup that ends before the target (a recovery can only stop after its backup's end)."""
    if not backups:
        raise RunbookError("the archive holds no finished base backup: take one (playbooks/base-backup.yml) before "
                           "a point-in-time recovery. Nothing was changed.")
    window = window_text(backups)
    if target.kind == "time":
        candidates = [b for b in backups if b["end_time"] <= target.moment]
        if not candidates:
            raise RunbookError(f"target_time {target.value} is before the recoverable window ({window}): the "
                               "oldest base backup ended after it. Nothing was changed.")
        return candidates[-1]
    if target.kind == "lsn":
        candidates = [b for b in backups if lsn_int(b["end_lsn"]) <= lsn_int(target.value)]
        if not candidates:
            raise RunbookError(f"target_lsn {target.value} is before the recoverable window (the oldest base backup "
                               f"ends at {backups[0]['end_lsn']}; {window}). Nothing was changed.")
        return candidates[-1]
    if target.kind == "name":
        # Our restore points are named runbook-<procedure>-<UTC time>: start from the newest backup before it.
        found = re.search(r"(\d{8}T\d{6}Z)$", target.value)
        if found:
            moment = datetime.datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
            candidates = [b for b in backups if b["end_time"] <= moment]
            if not candidates:
                raise RunbookError(f"restore point {target.value} was made before the recoverable window ({window}). "
                                   "Nothing was changed.")
            return candidates[-1]
        return backups[0]  # any other name: replay from the oldest, so a point anywhere in the window is found
    return backups[-1]


def window_text(backups: list[dict], newest_wal_at: str | None = None) -> str:
    start = isoformat(backups[0]["end_time"]) if backups else "none"
    return f"from {start} to {newest_wal_at or 'now'}"


def wal_plan(backup: dict, available: dict, last_needed: int, segment_size: int) -> dict:
    """The segments from the backup's first to `last_needed`, which of them the archive lacks (gaps), and
    which are simply not archived yet (after the newest archived one: the archiver will send them)."""
    timeline = backup["timeline"]
    first = parse_segment(backup["begin_wal"], segment_size)[1]
    archived = [s for (_t, s) in available]
    newest = max(archived) if archived else first - 1
    through = min(last_needed, newest)
    timelines = {t for t, _s in available} or {timeline}
    gaps = missing_segments(set(available), max(timelines), first, through)
    return {"from": segment_name(timeline, first, segment_size),
            "to": segment_name(max(timelines), max(last_needed, first), segment_size),
            "segments": max(last_needed, first) - first + 1,
            "missing": ranges(gaps, max(timelines), segment_size),
            "not_archived_yet": max(0, last_needed - max(newest, first - 1))}


# -- a cluster of our own for the replay --------------------------------------------------------------------------
# Settings of the restored configuration that must not reach the throwaway cluster: they would point it
# at the live cluster's directories, ports and archive, or stop it where we do not want.
_NOT_CARRIED = re.compile(
    r"^\s*(data_directory|hba_file|ident_file|config_file|external_pid_file|include\w*|port|listen_addresses|"
    r"unix_socket_\w+|archive_\w+|restore_command|recovery_\w+|primary_\w+|promote_trigger_file|ssl\w*|"
    r"log_directory|logging_collector|log_destination|synchronized_standby_slots|synchronous_standby_names|"
    r"hot_standby|shared_preload_libraries)\s*(=|\s)", re.IGNORECASE)
WORK_PREFIX = "runbook-pitr-"


def _filter_conf(path: str) -> None:
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        kept = [line if not _NOT_CARRIED.match(line) else "# (not carried into the throwaway) " + line
                for line in handle]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(kept)


def free_socket_port(directory: str) -> int:
    """A port whose socket file name is free in `directory` (the throwaway listens on no TCP address)."""
    for port in range(55432, 65000, 7):
        if not os.path.exists(os.path.join(directory, f".s.PGSQL.{port}")):
            return port
    raise RunbookError("no free socket name for the throwaway cluster")


class Throwaway:
    """A cluster restored from a base backup into `<work_dir>/runbook-pitr-<random>/`, replayed to a target and
    promoted, reachable only through its own socket directory. `destroy()` stops it and removes the directory."""

    def __init__(self, work_dir: str, os_user: str | None, login_user: str, login_password: str | None):
        self.work_dir, self.os_user = work_dir, os_user
        self.login_user, self.login_password = login_user, login_password
        self.base = None
        self.port = None

    @property
    def data(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.base, "run")

    @property
    def spool_dir(self) -> str:
        return os.path.join(self.base, "walspool")

    @property
    def log(self) -> str:
        return os.path.join(self.base, "postgres.log")

    def _chown(self, path: str) -> None:
        if self.os_user and os.geteuid() == 0:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def create(self) -> None:
        self.base, self._claim = claimed_directory(self.work_dir, WORK_PREFIX)
        os.chmod(self.base, 0o755)
        for path in (self.data, self.socket_dir, self.spool_dir):
            os.mkdir(path, 0o700)
            self._chown(path)
        self._chown(self.base)
        self.port = free_socket_port(self.socket_dir)

    def initialize(self, timeout: float = 120) -> None:
        """An empty cluster in a new claimed directory, started: initdb (the login user its superuser, trust on its
        own socket, the only way in), and no durability, since nothing of it is kept (fsync off)."""
        self.create()
        done = subprocess.run(as_user(self.os_user, [pg_tool("initdb"), "-D", self.data, "-U", self.login_user,
                                                     "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
                              capture_output=True, text=True, cwd="/", env={**os.environ, "LC_ALL": "C"}, check=False)
        if done.returncode != 0:
            raise RunbookError(f"initdb of a throwaway cluster in {self.base} failed: "
                               f"{(done.stderr or done.stdout).strip()[-800:]}")
        settings = {"port": str(self.port), "listen_addresses": "''",
                    "unix_socket_directories": f"'{self.socket_dir}'", "fsync": "off", "synchronous_commit": "off",
                    "full_page_writes": "off", "logging_collector": "off"}
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as handle:
            handle.write("\n# runbook.recovery throwaway cluster\n")
            handle.writelines(f"{key} = {value}\n" for key, value in settings.items())
        open(self.log, "a").close()
        self._chown(self.log)
        started = subprocess.run(as_user(self.os_user, [pg_tool("pg_ctl"), "start", "-D", self.data, "-l", self.log,
                                                        "-w", "-t", str(int(timeout))]),
                                 capture_output=True, text=True, cwd="/", env={**os.environ, "LC_ALL": "C"},
                                 check=False)
        if started.returncode != 0:
            raise RunbookError(f"the throwaway cluster in {self.base} did not start: {self.log_tail()}")

    def restore(self, archive: Archive, backup_id: str) -> None:
        archive.run("barman-cloud-restore", archive.config.destination, archive.config.server_name, backup_id,
                    self.data, as_server_user=True)

    def configure(self, archive: Archive, target: Target, timeline: str | None = None) -> None:
        """The restored configuration minus what points elsewhere, plus: socket only, no archiving, the
        engine's restore_command, the target, promote at it."""
        for name in ("postgresql.conf", "postgresql.auto.conf"):
            _filter_conf(os.path.join(self.data, name))
        if not os.path.exists(os.path.join(self.data, "postgresql.conf")):
            # Debian keeps the configuration outside the data directory: the backup does not have it.
            open(os.path.join(self.data, "postgresql.conf"), "w").close()
        hba = os.path.join(self.base, "pg_hba.conf")
        with open(hba, "w") as handle:
            handle.write("# the throwaway cluster: its socket directory (0700) is the only way in\n"
                         "local all all trust\n")
        settings = {
            "port": str(self.port), "listen_addresses": "''", "unix_socket_directories": f"'{self.socket_dir}'",
            "hba_file": f"'{hba}'", "ident_file": f"'{hba}'", "archive_mode": "off",
            "restore_command": "'" + archive.config.restore_command(self.spool_dir).replace("'", "''") + "'",
            "recovery_target_action": "'promote'", "logging_collector": "off",
            "hot_standby": "on",
        }
        for key, value in target.settings().items():
            settings[key] = "'" + value.replace("'", "''") + "'"
        if timeline:
            settings["recovery_target_timeline"] = f"'{timeline}'"
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as handle:
            handle.write("\n# runbook.recovery point-in-time recovery\n")
            for key, value in settings.items():
                handle.write(f"{key} = {value}\n")
        for name in ("standby.signal", "recovery.conf", "postmaster.pid", "postmaster.opts"):
            path = os.path.join(self.data, name)
            if os.path.exists(path):
                os.unlink(path)
        open(os.path.join(self.data, "recovery.signal"), "w").close()
        for path in (hba, os.path.join(self.data, "recovery.signal"), os.path.join(self.data, "postgresql.conf"),
                     os.path.join(self.data, "postgresql.auto.conf")):
            self._chown(path)

    def start(self, timeout: float) -> float:
        """Start, replay and promote; the seconds it took. A recovery that ends before its target, or a
        postmaster that dies, is an error with the server's own words."""
        open(self.log, "a").close()
        self._chown(self.log)
        started = time.monotonic()
        result = subprocess.run(as_user(self.os_user, [pg_tool("pg_ctl"), "start", "-D", self.data, "-l", self.log,
                                                       "-w", "-t", str(int(timeout))]),
                                capture_output=True, text=True, cwd="/", env={**os.environ, "LC_ALL": "C"},
                                check=False)
        deadline = started + timeout
        while True:
            state = self._state()
            if state == "promoted":
                return time.monotonic() - started
            if state == "dead" or (result.returncode != 0 and state != "recovering"):
                raise RunbookError(f"the throwaway cluster did not reach the target: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RunbookError(f"the throwaway cluster did not finish replaying within {timeout:.0f} s: "
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    def _state(self) -> str:
        pid = self.postmaster_pid()
        if pid is None or not _alive(pid):
            return "dead"
        try:
            with self.params().connect() as conn:
                recovering = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except RunbookError:
            return "starting"
        return "recovering" if recovering else "promoted"

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None

    def params(self) -> ConnParams:
        return ConnParams(unix_socket=self.socket_dir, port=self.port, user=self.login_user,
                          password=self.login_password or "", connect_timeout=5)

    def log_tail(self, lines: int = 8) -> str:
        try:
            with open(self.log, errors="replace") as handle:
                text = handle.read()[-6000:]
        except OSError:
            return "no server log"
        wanted = [line for line in text.splitlines() if re.search(
            r"FATAL|PANIC|ERROR|LOG:  (recovery|redo|last completed|selected new timeline|invalid|parameter|syntax|"
            r"could not)", line)]
        return " | ".join((wanted or text.splitlines())[-lines:]) or "no server log"

    def destroy(self) -> None:
        if not self.base:
            return
        stop_and_remove(self.base, self.os_user)
        self.base = None
        self._claim.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_and_remove(base: str, os_user: str | None) -> None:
    """Stop a throwaway cluster (immediate: nothing of it is kept) and remove its directory."""
    data = os.path.join(base, "data")
    pidfile = os.path.join(data, "postmaster.pid")
    if os.path.exists(pidfile):
        subprocess.run(as_user(os_user, [pg_tool("pg_ctl"), "stop", "-D", data, "-m", "immediate", "-w", "-t", "30"]),
                       capture_output=True, cwd="/", check=False)
        try:
            with open(pidfile) as handle:
                pid = int(handle.readline().strip())
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        except (OSError, ValueError):
            pass
    shutil.rmtree(base, ignore_errors=True)


IN_USE = ".in-use"


def check_free_space(path: str, needed: int, what: str, setting: str = "pg_pitr_work_dir") -> int | None:
    """Free bytes at `path` (or its nearest existing parent); refuses when below `needed`."""
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    if free < needed:
        raise RunbookError(f"{path} has {human_size(free)} free; {what} needs about {human_size(needed)}. Free "
                           f"space there (or set {setting} elsewhere); nothing was changed.")
    return free


def private_work_dir(work_dir: str) -> str:
    """The work directory, made by this run when missing (0711: the server's OS user may pass through to the
    throwaway cluster's folder inside, nobody else may list or add anything), and refused when it is a link, is not
    ours, or others may write in it: a directory at a predictable path (/var/tmp/runbook-pitr) that a local user
    made first would let them plant links that we, as root, would follow."""
    if not os.path.isabs(work_dir):
        raise RunbookError(f"the PITR work directory {work_dir!r} must be an absolute path. Nothing was changed.")
    os.makedirs(os.path.dirname(work_dir.rstrip("/")) or "/", exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(work_dir, 0o711)
    found = os.lstat(work_dir)
    problem = ("is a symbolic link" if stat.S_ISLNK(found.st_mode) else
               "is not a directory" if not stat.S_ISDIR(found.st_mode) else
               f"belongs to uid {found.st_uid}, not to this run's user (uid {os.geteuid()})"
               if found.st_uid != os.geteuid() else
               f"may be written by others (mode {stat.S_IMODE(found.st_mode):04o})" if found.st_mode & 0o022 else None)
    if problem:
        raise RunbookError(f"the PITR work directory {work_dir} {problem}: refused, nothing was changed. Remove it "
                           "(this run makes its own) or set pg_pitr_work_dir to a directory only this user writes.")
    return work_dir


def claimed_directory(work_dir: str, prefix: str):
    """A new directory under `work_dir` and the open, exclusively locked file that says it is in use: the lock
    ends with this process, however it ends, so a directory whose lock can be taken was left by a dead run."""
    # Locked under a name remove_leftovers() does not look at, then renamed: another run's clean-up never sees
    # this directory unlocked (between its creation and its lock it would have looked like a dead run's).
    claiming = tempfile.mkdtemp(prefix=".claiming-", dir=private_work_dir(work_dir))
    handle = open(os.path.join(claiming, IN_USE), "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    base = os.path.join(work_dir, prefix + os.path.basename(claiming)[len(".claiming-"):])
    os.rename(claiming, base)
    return base, handle


def remove_leftovers(work_dir: str, os_user: str | None) -> list[str]:
    """Throwaway clusters and dumps left by runs that died; a directory another live run (a drill, a recovery
    of another database) holds is left alone."""
    removed = []
    if not os.path.lexists(work_dir):
        return removed
    private_work_dir(work_dir)
    for name in sorted(os.listdir(work_dir)):
        path = os.path.join(work_dir, name)
        if not name.startswith(WORK_PREFIX) or not stat.S_ISDIR(os.lstat(path).st_mode):
            continue  # a link is never followed
        try:
            with open(os.path.join(path, IN_USE), "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stop_and_remove(path, os_user)
        except BlockingIOError:
            continue  # a live run's
        except OSError:
            stop_and_remove(path, os_user)
        removed.append(path)
    return removed
