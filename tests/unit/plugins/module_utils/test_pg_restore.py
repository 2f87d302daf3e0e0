from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import (
    MAX_DATABASE_NAME,
    count_problems,
    scratch_name,
)


def test_count_problems_names_each_mismatch():
    expected = {("public", "users"): 500, ("public", "chat_messages"): 8000}
    actual = {("public", "users"): 499}
    assert count_problems(expected, actual) == [
        "public.chat_messages: missing, manifest says 8000",
        "public.users: 499 rows, manifest says 500",
    ]
    assert count_problems(expected, dict(expected)) == []


def test_derived_names_fit_postgres_identifier_limit():
    longest = "d" * MAX_DATABASE_NAME
    assert len(f"{longest}__pre_recovery_20261123T051200Z") <= 63
    assert len(scratch_name("x" * 63)) <= 63
