"""What pg_backup decides without a server: refusals before any write (and that they say so), and the verification
of a backup it has just published, recorded as pg_verify_backup records it."""

import json
import os

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.backups import LocalStore, sha256_file
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.pg_backup import (
    BackupOptions,
    BackupRun,
    verification_failure,
    verify_backup,
)
from ansible_collections.runbook.recovery.plugins.module_utils.postgres import ConnParams

# Nothing listens there: a test that reached a connection would fail on it, not pass by accident.
NOWHERE = ConnParams(host="127.0.0.1", port=1, connect_timeout=1)


def published(tmp_path, files=None):
    """A backup as pg_backup publishes it: the dump's files, then the manifest with their sizes and sha256."""
    store = LocalStore(str(tmp_path / "backups"))
    partial = store.partial_dir("chat", "20261123T051200Z")
    os.makedirs(partial, mode=0o700)
    for name, data in (files or {"toc.dat": b"toc", "3001.dat.gz": b"rows" * 1000}).items():
        with open(os.path.join(partial, name), "wb") as handle:
            handle.write(data)
    manifest = {"finished_at": isoformat(utc_now()), "started_at": isoformat(utc_now()), "tables": [],
                "size_bytes": 0,
                "files": {name: {"size": os.path.getsize(os.path.join(partial, name)),
                                 "sha256": sha256_file(os.path.join(partial, name))} for name in os.listdir(partial)}}
    return store, store.publish("chat", "20261123T051200Z", manifest)


@pytest.mark.parametrize("options, message", [
    (BackupOptions("chat", verify="quick"), "verify='quick' is not a verification level"),
    (BackupOptions("chat", plan_first=("chat", "x'; DROP DATABASE chat; --")), "are refused in names"),
    (BackupOptions("chat", keep_last=0), "keep_last=0 is not allowed"),
])
def test_bad_input_is_refused_before_any_connection_and_says_so(tmp_path, options, message):
    with pytest.raises(RunbookError, match=message) as refused:
        BackupRun(NOWHERE, LocalStore(str(tmp_path)), options, check_mode=False).run()
    assert refused.value.details["refused"] is True
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_a_refusal_too(tmp_path):
    with pytest.raises(RunbookError, match="cannot connect to PostgreSQL at 127.0.0.1:1") as refused:
        BackupRun(NOWHERE, LocalStore(str(tmp_path)), BackupOptions("chat"), check_mode=False).run()
    assert refused.value.details["refused"] is True


def test_checksum_verification_passes_and_is_recorded(tmp_path):
    store, backup = published(tmp_path)
    result = verify_backup(store, backup, "checksum", NOWHERE, jobs=2)
    assert result["ok"] and result["levels_run"] == ["checksum"] and result["changed"]
    assert store.resolve("chat", "latest").verified and store.resolve("chat", "latest").level == "checksum"


def test_a_changed_file_fails_the_verification_and_unverifies_the_backup(tmp_path):
    store, backup = published(tmp_path)
    with open(os.path.join(backup.path, "3001.dat.gz"), "r+b") as handle:
        handle.write(b"ROWS")
    result = verify_backup(store, backup, "restore", NOWHERE, jobs=2)  # stops at the first level that fails
    assert not result["ok"] and result["levels_run"] == ["checksum"]
    assert result["problems"][0].startswith("3001.dat.gz: sha256")
    record = json.loads(open(os.path.join(backup.path, "verification.json")).read())
    assert record["levels"]["checksum"]["ok"] is False and not store.resolve("chat", backup.backup_id).verified
    with pytest.raises(RunbookError, match="no verified backup"):  # and it is no longer `latest`
        store.resolve("chat", "latest")
    message = verification_failure(backup.backup_id, "chat", result)
    assert message.startswith("backup 20261123T051200Z of chat FAILED checksum verification: 3001.dat.gz")
    assert "Do not restore it" in message


def test_check_mode_records_nothing(tmp_path):
    store, backup = published(tmp_path)
    result = verify_backup(store, backup, "checksum", NOWHERE, jobs=2, check_mode=True)
    assert result["ok"] and result["levels_run"] == ["checksum"]
    assert not result["changed"] and not os.path.exists(os.path.join(backup.path, "verification.json"))
