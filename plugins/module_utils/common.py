# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain helpers shared by every module: the one error type, input validation, durations, sizes, time."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import unicodedata

IDENTIFIER_MAX = 63
# Never part of a name we act on: they end a quoted identifier or a statement, or separate paths.
_REFUSED_IN_NAMES = frozenset("'\"`;/\\")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}


class RunbookError(Exception):
    """A failure with a message written for the person at the keyboard: what is wrong, what to do.

    `details` carries structured facts (for example what was rolled back) into the module result.
    """

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


def failure_details(*sources: dict) -> dict:
    """Facts to return with a failure: merged, without a 'msg' that would clash with the message."""
    merged = {}
    for source in sources:
        merged.update(source)
    merged.pop("msg", None)
    return merged


def validate_name(value: str, what: str = "database name", max_length: int = IDENTIFIER_MAX) -> str:
    """Accept what PostgreSQL accepts as a name (any letters, `données` too, spaces and dots), but
    refuse what could never be intended or could escape quoting elsewhere: quotes, semicolons, slashes,
    control characters, '.' and '..' (they are directory names in the backup store), and more than
    `max_length` bytes (PostgreSQL would silently truncate the name, and act on another database).

    Names are also quoted with psycopg.sql.Identifier wherever they reach SQL and passed as separate
    arguments, never through a shell; this check keeps a typo or an injected string from going anywhere.
    """
    if not isinstance(value, str) or not value:
        raise RunbookError(f"{what} is empty: name the database to act on (for example -e database=chat).")
    refused = sorted({ch for ch in value if ch in _REFUSED_IN_NAMES or unicodedata.category(ch) == "Cc"})
    if refused or value in (".", "..") or value != value.strip():
        shown = ", ".join(repr(ch) for ch in refused) or "leading/trailing spaces or a bare '.'/'..'"
        raise RunbookError(
            f"{what} {value!r} is not accepted: it contains {shown}. Quotes, semicolons, slashes, backslashes "
            "and control characters are refused in names; check the spelling.")
    size = len(value.encode())
    if size > max_length:
        raise RunbookError(f"{what} {value!r} is {size} bytes long in UTF-8; PostgreSQL names hold at most "
                           f"{max_length} bytes (a longer one is silently cut, and would name another database).")
    return value


def derived_name(base: str, suffix: str) -> str:
    """`base` + `suffix` as one PostgreSQL name of at most 63 bytes.

    When it would not fit, `base` is cut on a character boundary and a short hash of the whole of it
    is added, so two long names never share derived names and the same base always gives the same one.
    """
    if len(base.encode()) + len(suffix.encode()) <= IDENTIFIER_MAX:
        return base + suffix
    tag = "_" + hashlib.sha256(base.encode()).hexdigest()[:8]
    room = IDENTIFIER_MAX - len(suffix.encode()) - len(tag)
    cut = base.encode()[:room].decode(errors="ignore")
    return cut + tag + suffix


def require_non_negative(params: dict, *names: str) -> None:
    """Refuse a negative count or limit among the options named (unset ones are fine)."""
    for name in names:
        if params.get(name) is not None and params[name] < 0:
            raise RunbookError(f"{name}={params[name]} is negative: give 0 or more.")


def parse_duration(value) -> float:
    """'90', '90s', '10m', '12h', '7d', '1w' or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise RunbookError(f"duration {value!r} is not a duration: use seconds or a value like '30m', '12h', '7d'.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise RunbookError(f"duration {value!r} is not understood: use seconds or a value like '30m', '12h', '7d'.")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise RunbookError(f"duration {value!r} is negative: give a positive value like '30m'.")
    return seconds


def expires_at(duration, now: datetime.datetime, option: str) -> str | None:
    """When a change made for `duration` (30m, 24h) is lifted, as isoformat; None for none (empty, 0)."""
    if duration in (None, "", "0"):
        return None
    seconds = parse_duration(duration)
    if seconds <= 0:
        raise RunbookError(f"{option}={duration}: give a positive duration (30m, 24h). Nothing was changed.")
    return isoformat(now + datetime.timedelta(seconds=seconds))


def parse_size(value) -> int:
    """'512', '512MB', '1.5G', '10GiB' -> bytes (binary multiples)."""
    if isinstance(value, bool):
        raise RunbookError(f"size {value!r} is not a size: use bytes or a value like '512MB', '2GB'.")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise RunbookError(f"size {value!r} is not understood: use bytes or a value like '512MB', '2GB'.")
        number, unit = float(match.group(1)), (match.group(2) or "").lower()
    if number < 0:
        raise RunbookError(f"size {value!r} is negative: give a positive size like '1GB'.")
    return int(number * _SIZE_UNITS[unit[:1]])


def human_size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num_bytes) < 1024 or unit == "TiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def isoformat(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)


def compact_timestamp(moment: datetime.datetime) -> str:
    """20261123T051200Z: sortable, safe in paths and in database names."""
    return moment.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def write_json_atomic(path: str, document: dict) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)  # in order: a database's settings are ordered
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))  # a bare file name: the working directory


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
