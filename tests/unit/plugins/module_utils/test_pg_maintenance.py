from ansible_collections.runbook.recovery.plugins.module_utils.pg_maintenance import Thresholds, decide

LIMITS = Thresholds()


def stats(reltuples=10000, dead=0, modified=0, age=1000):
    return {"reltuples": reltuples, "n_dead_tup": dead, "n_mod_since_analyze": modified, "xid_age": age}


def test_quiet_table_needs_nothing():
    assert decide(stats(), LIMITS) == []


def test_dead_tuples_over_autovacuum_threshold():
    assert decide(stats(dead=2050), LIMITS) == []  # 50 + 0.2 * 10000 = 2050: not over
    assert decide(stats(dead=2051), LIMITS) == ["dead_tuples"]


def test_modified_rows_call_for_analyze_only():
    assert decide(stats(modified=1051), LIMITS) == ["modified_since_analyze"]


def test_old_xids_call_for_freeze():
    assert decide(stats(age=200_000_000), LIMITS) == ["xid_age"]


def test_never_analyzed_table_counts_as_empty():
    assert decide(stats(reltuples=-1, dead=51), LIMITS) == ["dead_tuples"]
