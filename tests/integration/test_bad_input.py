"""Bad input is refused before any change, with a message that names the problem."""

from __future__ import annotations

import pytest
from conftest import Workspace, create_chat_db, databases, disaster, table_fingerprints, tree_state

# Refused: quotes, semicolons, slashes, control characters, more than 63 bytes (PostgreSQL would cut it).
BAD_NAMES = ["chat'; DROP TABLE users; --", "chat;vacuum", '"chat"', "../etc", "a/b", "chat\nx", "é" * 32]


@pytest.fixture(scope="module")
def module_db(pg):
    return create_chat_db(pg)


@pytest.fixture(scope="module")
def backed_up(pg, module_db, tmp_path_factory):
    """One backup, then a disaster, shared by every test here: each checks that nothing of it changed."""
    workspace = Workspace(pg, [module_db], tmp_path_factory.mktemp("bad-input"))
    assert workspace.play("backup-db.yml").rc == 0
    disaster(pg, module_db)
    return workspace


@pytest.fixture
def chat_db(module_db):
    return module_db


def unchanged(workspace, pg, chat_db):
    return table_fingerprints(pg, chat_db), databases(pg), tree_state(workspace.backup_root)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_database_names_are_refused(backed_up, pg, chat_db, name):
    before = unchanged(backed_up, pg, chat_db)
    for playbook, extra in (("backup-db.yml", {}), ("verify-backups.yml", {}), ("recover-db.yml", {"confirm": True})):
        run = backed_up.play(playbook, database=name, **extra)
        assert run.rc != 0, f"{playbook} accepted {name!r}"
        assert ("is not accepted" in run.output and "are refused in names" in run.output) or \
            "64 bytes long in UTF-8" in run.output, run.output
    assert unchanged(backed_up, pg, chat_db) == before


def test_unknown_database_is_refused(backed_up, pg, chat_db):
    before = unchanged(backed_up, pg, chat_db)
    run = backed_up.play("backup-db.yml", database="no_such_db")
    assert run.rc != 0 and "database 'no_such_db' does not exist" in run.output
    assert unchanged(backed_up, pg, chat_db) == before


@pytest.mark.parametrize("backup_id, message", [
    ("20200101T000000Z", "does not exist"),
    ("yesterday", "is not a backup id"),
])
def test_unknown_backup_id_is_refused(backed_up, pg, chat_db, backup_id, message):
    before = unchanged(backed_up, pg, chat_db)
    recover = backed_up.play("recover-db.yml", confirm=True, backup=backup_id)
    assert recover.rc != 0 and message in recover.output, recover.output
    assert "backup=latest" in recover.output  # and says what to do
    verify = backed_up.play("verify-backups.yml", backup=backup_id)
    assert verify.rc != 0 and message in verify.output
    assert unchanged(backed_up, pg, chat_db) == before


@pytest.mark.parametrize("extra, message", [
    ({"pg_backup_keep_last": -1}, "keep_last=-1 is not allowed"),
    ({"pg_backup_keep_last": 0}, "keep_last=0 is not allowed"),
    ({"pg_backup_max_age_days": -3}, "max_age_days=-3.0 is negative"),
    ({"pg_backup_skip_if_newer_than": "-5m"}, "is not understood"),
    ({"pg_backup_min_free_space": "lots"}, "size 'lots' is not understood"),
])
def test_bad_retention_and_sizes_are_refused(backed_up, pg, chat_db, extra, message):
    before = unchanged(backed_up, pg, chat_db)
    run = backed_up.play("backup-db.yml", **extra)
    assert run.rc != 0 and message in run.output, run.output
    assert unchanged(backed_up, pg, chat_db) == before


def test_bad_types_fail_argument_validation(backed_up, pg, chat_db):
    before = unchanged(backed_up, pg, chat_db)
    run = backed_up.play("recover-db.yml", confirm="maybe")
    assert run.rc != 0 and "pg_recover_confirm" in run.output
    run = backed_up.play("verify-backups.yml", verify_level="thorough")
    assert run.rc != 0 and "pg_verify_level" in run.output and "checksum, catalog, restore" in run.output
    assert unchanged(backed_up, pg, chat_db) == before


def test_recover_without_confirm_is_refused(backed_up, pg, chat_db):
    before = unchanged(backed_up, pg, chat_db)
    run = backed_up.play("recover-db.yml")
    assert run.rc != 0
    assert "Not confirmed, nothing was changed" in run.output and "-e confirm=true" in run.output
    assert run.changed == 0
    assert unchanged(backed_up, pg, chat_db) == before
    assert backed_up.audit()[-1]["result"] == "refused"


def test_recover_needs_a_database_when_inventory_has_several(backed_up, pg, chat_db):
    before = unchanged(backed_up, pg, chat_db)
    backed_up.write_inventory(pg_databases=[chat_db, "other"])
    try:
        run = backed_up.play("recover-db.yml", confirm=True)
    finally:
        backed_up.write_inventory()
    assert run.rc != 0 and "Name the database to recover" in run.output
    assert unchanged(backed_up, pg, chat_db) == before
