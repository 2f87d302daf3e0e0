# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain helpers shared by every module: the one error type, input validation, durations, sizes, time."""

from __future__ import annotations

import datetime
import re

IDENTIFIER_MAX = 63
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
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
    """Refuse names that could never be intended: quotes, semicolons, spaces, slashes, dots.

    Names are also quoted with psycopg.sql.Identifier wherever they reach SQL; this check keeps a
    typo or an injected string from reaching the server or a backup path at all.
    """
    if not isinstance(value, str) or not value:
        raise RunbookError(f"{what} is empty: name the database to act on (for example -e database=chat).")
    if not _NAME_RE.match(value):
        raise RunbookError(
            f"{what} {value!r} is not accepted: use letters, digits, '_' and '-' only, starting with a "
            "letter or '_' (quotes, semicolons, spaces, dots and slashes are refused). Check the spelling.")
    if len(value) > max_length:
        raise RunbookError(f"{what} {value!r} is {len(value)} characters long; at most {max_length} are allowed here.")
    return value


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
