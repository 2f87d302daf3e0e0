import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.health import merge_thresholds, severity, worst
from ansible_collections.runbook.recovery.plugins.module_utils.pg_sessions import blocking_chains
from ansible_collections.runbook.recovery.plugins.module_utils.redis_ops import parse_memory

DEFAULTS = merge_thresholds({})


@pytest.mark.parametrize("metric, value, expected", [
    ("connection_ratio", 0.5, "ok"), ("connection_ratio", 0.8, "warning"), ("connection_ratio", 0.97, "critical"),
    ("cache_hit_ratio", 0.99, "ok"), ("cache_hit_ratio", 0.90, "warning"), ("cache_hit_ratio", 0.5, "critical"),
    ("cache_hit_ratio", None, "ok"), ("invalid_indexes", 0, "ok"), ("invalid_indexes", 3, "warning"),
    ("database_size_bytes", 10 ** 12, "ok"),
])
def test_severity(metric, value, expected):
    assert severity(metric, value, DEFAULTS) == expected


def test_overrides_and_their_validation():
    merged = merge_thresholds({"connection_ratio": {"warning": 0.5}})
    assert merged["connection_ratio"] == ("above", 0.5, 0.95)
    with pytest.raises(RunbookError, match="unknown threshold"):
        merge_thresholds({"conections": {"warning": 1}})
    with pytest.raises(RunbookError, match=">= 0"):
        merge_thresholds({"xid_age": {"critical": -1}})
    with pytest.raises(RunbookError, match="must be a dict"):
        merge_thresholds({"xid_age": 5})


def test_worst():
    assert worst([{"severity": "ok"}, {"severity": "critical"}, {"severity": "warning"}]) == "critical"
    assert worst([]) == "ok"


def test_blocking_chain_puts_the_root_blocker_first():
    rows = [
        {"pid": 1, "blocked_by": [], "usename": "migration", "query": "LOCK users"},
        {"pid": 2, "blocked_by": [1], "usename": "app", "query": "UPDATE users"},
        {"pid": 3, "blocked_by": [2], "usename": "app", "query": "SELECT users"},
        {"pid": 4, "blocked_by": [], "usename": "app", "query": "SELECT 1"},
    ]
    [chain] = blocking_chains(rows)
    assert chain["blocker"]["pid"] == 1
    assert [w["pid"] for w in chain["waiting"]] == [2, 3]


@pytest.mark.parametrize("value, size", [("512mb", 512 * 1024 ** 2), ("1gb", 1024 ** 3), ("1g", 10 ** 9),
                                         ("100", 100), ("64kb", 65536)])
def test_redis_memory_units(value, size):
    assert parse_memory(value) == size


@pytest.mark.parametrize("value", ["-1", "lots", "1tb"])
def test_redis_memory_refused(value):
    with pytest.raises(RunbookError):
        parse_memory(value)
