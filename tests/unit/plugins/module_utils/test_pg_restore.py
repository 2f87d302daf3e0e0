import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.backups import Backup
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.pg_restore import (
    count_problems,
    database_state_statements,
    kept_prefix,
    scratch_name,
    staging_name,
    state_to_carry,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import split_setting_list


def test_count_problems_names_each_mismatch():
    expected = {("public", "users"): 500, ("public", "chat_messages"): 8000}
    actual = {("public", "users"): 499}
    assert count_problems(expected, actual) == [
        "public.chat_messages: missing, manifest says 8000",
        "public.users: 499 rows, manifest says 500",
    ]
    assert count_problems(expected, dict(expected)) == []


def test_derived_names_fit_postgres_identifier_limit():
    for name in ("d" * 63, "é" * 31, "données"):
        for derived in (staging_name(name), kept_prefix(name) + "20261123T051200Z", scratch_name(name)):
            assert len(derived.encode()) <= 63
    assert kept_prefix("chat") == "chat__pre_recovery_"


def texts(statements):
    return [statement.as_string(None) for statement in statements]


STATE = {
    "owner": "owner_role", "connection_limit": 40,
    "settings": {"work_mem": "8MB", "search_path": '"$user", public, "Odd ""Schema"""',
                 "runbook.restored_backup": "20261101T000000Z"},
    "role_settings": {"app": {"statement_timeout": "5s"}, "gone": {"work_mem": "1MB"}},
    "comment": "chat's data",
    "acl": [
        {"grantor": "owner_role", "grantee": None, "privilege": "TEMPORARY", "grantable": False},
        {"grantor": "owner_role", "grantee": "owner_role", "privilege": "CREATE", "grantable": False},
        {"grantor": "owner_role", "grantee": "owner_role", "privilege": "TEMPORARY", "grantable": False},
        {"grantor": "owner_role", "grantee": "owner_role", "privilege": "CONNECT", "grantable": False},
        {"grantor": "owner_role", "grantee": "app", "privilege": "CONNECT", "grantable": True},
        {"grantor": "app", "grantee": "reader", "privilege": "CONNECT", "grantable": False},
        {"grantor": "owner_role", "grantee": "gone", "privilege": "CONNECT", "grantable": False},
    ],
}


def test_database_state_is_replayed_grant_by_grant_in_order():
    statements, skipped = database_state_statements("données__recovery_staging", STATE,
                                                    {"owner_role", "app", "reader"})
    target = '"données__recovery_staging"'
    assert texts(statements) == [
        f"ALTER DATABASE {target} CONNECTION LIMIT 40",
        f"ALTER DATABASE {target} SET \"work_mem\" = '8MB'",
        f"ALTER DATABASE {target} SET \"search_path\" = '$user', 'public', 'Odd \"Schema\"'",
        f"ALTER ROLE \"app\" IN DATABASE {target} SET \"statement_timeout\" = '5s'",
        f"COMMENT ON DATABASE {target} IS 'chat''s data'",
        f"REVOKE ALL ON DATABASE {target} FROM PUBLIC",
        f"REVOKE ALL ON DATABASE {target} FROM \"owner_role\"",
        f"GRANT TEMPORARY ON DATABASE {target} TO PUBLIC",
        f"GRANT CREATE, TEMPORARY, CONNECT ON DATABASE {target} TO \"owner_role\"",
        f"GRANT CONNECT ON DATABASE {target} TO \"app\" WITH GRANT OPTION",
        'SET ROLE "app"',
        f"GRANT CONNECT ON DATABASE {target} TO \"reader\"",
        "RESET ROLE",
    ]
    assert skipped == ["settings of role 'gone' in the database (no such role on this server)",
                       "GRANT CONNECT to gone (no role 'gone' on this server)"]


def test_a_non_superuser_login_skips_what_it_may_not_do_and_says_so():
    statements, skipped = database_state_statements("x", STATE, {"owner_role", "app", "reader"},
                                                    can_act_as={"owner_role"})
    assert 'SET ROLE "app"' not in texts(statements)
    assert "settings of role 'app' in the database (the login may not change that role)" in skipped
    assert "GRANT CONNECT to reader (granted by 'app', as which the login may not act)" in skipped


def test_an_empty_search_path_is_restored_as_empty():
    state = {"settings": {"search_path": '""'}, "role_settings": {"app": {"search_path": ""}}}
    assert texts(database_state_statements("x", state, {"app"})[0]) == [
        """ALTER DATABASE "x" SET "search_path" = ''""",
        """ALTER ROLE "app" IN DATABASE "x" SET "search_path" = ''""",
    ]


def test_default_acl_and_no_comment_leave_postgres_defaults():
    statements, skipped = database_state_statements("x", {"acl": None, "comment": None, "settings": {}}, set())
    assert statements == [] and skipped == []


def test_a_damaged_manifest_cannot_smuggle_sql_through_a_privilege_name():
    acl = [{"grantor": "o", "grantee": None, "privilege": "CONNECT; DROP DATABASE x", "grantable": False}]
    with pytest.raises(RunbookError, match="unknown database privileges"):
        database_state_statements("x", {"owner": "o", "acl": acl}, {"o"})


def test_setting_lists_split_as_postgres_writes_them():
    assert split_setting_list('"$user", public') == ["$user", "public"]
    assert split_setting_list('a,"b,c" , "d""e"') == ["a", "b,c", 'd"e']


def backup_with(properties):
    return Backup("chat", "20261101T000000Z", "/nowhere", {"database_properties": properties, "tables": []})


def test_a_backup_that_recorded_the_state_is_its_source():
    state, source, cannot = state_to_carry(backup_with({**STATE}), {"acl": [], "comment": "now"})
    assert source == "backup" and state["comment"] == "chat's data" and cannot == []


def test_an_older_backup_takes_the_state_of_the_current_database_and_says_so():
    old = {"encoding": "UTF8", "owner": "o", "settings": {}}
    current = {**STATE, "comment": "current"}
    state, source, cannot = state_to_carry(backup_with(old), current)
    assert source == "current database" and state["comment"] == "current"
    assert any(item.startswith("comment: not recorded by backup 20261101T000000Z") for item in cannot)
    state, source, cannot = state_to_carry(backup_with(old), None)
    assert state == old and "PostgreSQL's defaults apply" in cannot[0]
