"""The second store: backups copied to S3 (the AWS emulator, over HTTP) with server-side encryption."""

from __future__ import annotations

import shutil

import boto3
from conftest import databases, disaster, table_fingerprints


def test_backup_is_copied_to_s3_encrypted_and_restorable_from_there(workspace, pg, chat_db, aws_emulator,
                                                                     monkeypatch):
    for key, value in aws_emulator.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="db-backups")
    workspace.env = aws_emulator
    before = table_fingerprints(pg, chat_db)

    run = workspace.play("backup-db.yml", pg_backup_s3_bucket="db-backups", pg_backup_s3_prefix="prod")
    assert run.rc == 0, run.output
    [backup_id] = workspace.backups(chat_db)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="db-backups", Prefix=f"prod/{chat_db}/")["Contents"]]
    assert f"prod/{chat_db}/{backup_id}/manifest.json" in keys and f"prod/{chat_db}/{backup_id}/toc.dat" in keys
    for key in keys:
        assert s3.head_object(Bucket="db-backups", Key=key)["ServerSideEncryption"] == "AES256"

    # A second run does not upload again.
    again = workspace.play("backup-db.yml", pg_backup_s3_bucket="db-backups", pg_backup_s3_prefix="prod",
                           pg_backup_skip_if_newer_than="1h")
    assert again.rc == 0 and again.changed == 0, again.output

    # The local copy is lost; fetch it back from S3 and recover from it.
    shutil.rmtree(workspace.backup_root / chat_db)
    disaster(pg, chat_db)
    fetch = workspace.play("fetch-backup.yml", s3_bucket="db-backups", s3_prefix="prod", backup=backup_id)
    assert fetch.rc == 0, fetch.output
    assert workspace.backups(chat_db) == [backup_id]
    recover = workspace.play("recover-db.yml", confirm=True, backup=backup_id)
    assert recover.rc == 0, recover.output
    assert table_fingerprints(pg, chat_db) == before
    assert any(d.startswith(chat_db + "__pre_recovery_") for d in databases(pg))
