# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis: one connection helper and the idempotent maxmemory / policy change (CONFIG SET, then
CONFIG REWRITE when the server was started from a config file, so a restart keeps it)."""

from __future__ import annotations

import re

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record

try:
    import redis

    HAS_REDIS = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_REDIS = False

POLICIES = ["noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
            "volatile-random", "volatile-ttl"]
# Redis's own units: k/m/g are powers of 1000, kb/mb/gb powers of 1024.
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}
_MEMORY_RE = re.compile(r"^\s*(\d+)\s*([kmg]?b?)\s*$", re.IGNORECASE)


def redis_argument_spec() -> dict:
    return dict(
        login_host=dict(type="str", default="127.0.0.1"),
        login_port=dict(type="int", default=6379),
        login_password=dict(type="str", no_log=True),
        login_user=dict(type="str"),
        tls=dict(type="bool", default=False),
        connect_timeout=dict(type="float", default=5.0),
    )


def connect(params: dict):
    if not HAS_REDIS:
        raise RunbookError("the Python library redis is required on the managed host: pip install redis")
    return redis.Redis(host=params["login_host"], port=params["login_port"], password=params.get("login_password"),
                       username=params.get("login_user"), ssl=params.get("tls", False),
                       socket_connect_timeout=params.get("connect_timeout", 5.0),
                       socket_timeout=params.get("connect_timeout", 5.0), decode_responses=True)


def parse_memory(value) -> int:
    match = _MEMORY_RE.match(str(value))
    if not match:
        raise RunbookError(f"maxmemory {value!r} is not understood: use bytes or Redis units like 512mb, 2gb "
                           "(kb/mb/gb are powers of 1024; k/m/g powers of 1000); negative values are refused.")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def configure(client, maxmemory, policy: str | None, rewrite: bool, check_mode: bool) -> dict:
    if policy is not None and policy not in POLICIES:
        raise RunbookError(f"maxmemory_policy {policy!r} is not a Redis policy; use one of {', '.join(POLICIES)}.")
    wanted = {}
    if maxmemory is not None:
        wanted["maxmemory"] = str(parse_memory(maxmemory))
    if policy is not None:
        wanted["maxmemory-policy"] = policy
    if not wanted:
        raise RunbookError("nothing to set: give maxmemory and/or maxmemory_policy.")
    try:
        before = {key: client.config_get(key)[key] for key in wanted}
        config_file = client.info("server").get("config_file") or ""
    except redis.RedisError as exc:
        raise RunbookError(f"cannot read the Redis configuration: {exc}") from exc
    changes = {key: value for key, value in wanted.items() if before[key] != value}
    result = {"changed": bool(changes), "diff": {"before": before, "after": {**before, **changes}},
              "config_file": config_file or None, "rewritten": False}
    if not changes or check_mode:
        return result
    call = ""
    try:
        for key, value in changes.items():
            call = f"CONFIG SET {key} {value}"
            client.config_set(key, value)
            record(f"{key} set to {value} (was {before[key]}) on the running server")
        if rewrite and config_file:
            call = f"CONFIG REWRITE of {config_file}"
            client.config_rewrite()
            record(f"{config_file} rewritten with it (kept across a restart)")
            result["rewritten"] = True
    except redis.RedisError as exc:
        raise RunbookError(f"Redis refused {call}: {exc}.") from exc
    return result
