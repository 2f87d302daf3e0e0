import datetime
import json
import os

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.backups import Backup, LocalStore, retention_plan
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


def fake(backup_id, days_old, verified=True):
    finished = NOW - datetime.timedelta(days=days_old)
    verification = {"levels": {"checksum": {"ok": verified}}} if verified is not None else {}
    return Backup("chat", backup_id, f"/x/{backup_id}", {"finished_at": isoformat(finished)}, verification)


def ids(backups):
    return [b.backup_id for b in backups]


def test_no_rule_removes_nothing():
    backups = [fake(f"b{i}", 10 - i) for i in range(5)]
    assert retention_plan(backups, None, None, now=NOW) == []


def test_keep_last_removes_the_oldest():
    backups = [fake(f"b{i}", 10 - i) for i in range(5)]
    assert ids(retention_plan(backups, 2, None, now=NOW)) == ["b0", "b1", "b2"]


def test_both_rules_must_agree():
    backups = [fake(f"b{i}", 10 - i) for i in range(5)]  # ages 10, 9, 8, 7, 6 days
    assert ids(retention_plan(backups, 1, 8.5, now=NOW)) == ["b0", "b1"]


def test_max_age_alone():
    backups = [fake(f"b{i}", 10 - i) for i in range(5)]
    assert ids(retention_plan(backups, None, 7.5, now=NOW)) == ["b0", "b1", "b2"]


def test_newest_verified_is_never_removed():
    backups = [fake("old-good", 30), fake("new-bad", 1, verified=False), fake("newer-bad", 0, verified=False)]
    assert ids(retention_plan(backups, 1, None, now=NOW)) == ["new-bad"]


def test_protected_ids_stay():
    backups = [fake(f"b{i}", 10 - i) for i in range(3)]
    assert ids(retention_plan(backups, 1, None, now=NOW, protect=("b0",))) == ["b1"]


def test_failed_level_makes_backup_unverified():
    backup = fake("b", 0)
    backup.verification["levels"]["restore"] = {"ok": False}
    assert not backup.verified and backup.level is None


def write_backup(root, database, backup_id, complete=True, verified=None):
    """A backup directory; `verified` True or False records its checksum verification as passed or failed."""
    path = root / database / backup_id
    path.mkdir(parents=True)
    (path / "toc.dat").write_bytes(b"x")
    if complete:
        (path / "manifest.json").write_text(json.dumps({"finished_at": isoformat(NOW), "tables": [], "size_bytes": 1}))
    if verified is not None:
        (path / "verification.json").write_text(json.dumps({"levels": {"checksum": {"ok": verified}}}))
    return path


def test_partial_and_manifestless_directories_are_never_listed(tmp_path):
    write_backup(tmp_path, "chat", "20261123T000000Z", verified=True)
    write_backup(tmp_path, "chat", "20261123T010000Z", complete=False)
    write_backup(tmp_path, "chat", ".partial-20261123T020000Z")
    store = LocalStore(str(tmp_path))
    assert [b.backup_id for b in store.list("chat")] == ["20261123T000000Z"]
    assert store.resolve("chat", "latest").backup_id == "20261123T000000Z"
    assert [os.path.basename(p) for p in store.stale_partials("chat")] == [".partial-20261123T020000Z"]


def test_resolve_explains_what_exists(tmp_path):
    write_backup(tmp_path, "chat", "20261123T000000Z")
    store = LocalStore(str(tmp_path))
    with pytest.raises(RunbookError, match="20261123T000000Z"):
        store.resolve("chat", "20201010T000000Z")
    with pytest.raises(RunbookError, match="not a backup id"):
        store.resolve("chat", "../../etc")
    with pytest.raises(RunbookError, match="no verified backup"):
        store.resolve("chat", "latest-verified")
    with pytest.raises(RunbookError, match="no verified backup of database 'other'"):
        store.resolve("other", "latest")


def test_latest_is_the_newest_verified_backup(tmp_path):
    """A newer backup that failed its verification, or was never verified, is not `latest`; its id still names it."""
    write_backup(tmp_path, "chat", "20261123T000000Z", verified=True)
    write_backup(tmp_path, "chat", "20261123T010000Z", verified=False)
    write_backup(tmp_path, "chat", "20261123T020000Z")
    store = LocalStore(str(tmp_path))
    assert store.resolve("chat", "latest").backup_id == "20261123T000000Z"
    assert store.resolve("chat", "latest-verified").backup_id == "20261123T000000Z"
    assert store.resolve("chat", "20261123T020000Z").backup_id == "20261123T020000Z"
    write_backup(tmp_path, "lonely", "20261123T000000Z", verified=False)
    with pytest.raises(RunbookError, match=r"no verified backup of database 'lonely'.*1 unverified: 20261123T000000Z"):
        store.resolve("lonely", "latest")


def test_backup_ids_do_not_collide(tmp_path):
    store = LocalStore(str(tmp_path))
    write_backup(tmp_path, "chat", "20261123T120000Z")
    assert store.new_backup_id("chat", NOW) == "20261123T120000Z-1"
