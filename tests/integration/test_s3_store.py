"""The second store: backups copied to S3 (the AWS emulator, over HTTP) with server-side encryption."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil

import boto3
from conftest import databases, disaster, table_fingerprints


def test_backup_is_copied_to_s3_encrypted_and_restorable_from_there(workspace, pg, chat_db, aws_emulator,
                                                                     monkeypatch):
    for key, value in aws_emulator.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="db-backups")
    # Versioned: a second upload of an object would leave a second version of it, whatever the run reports.
    s3.put_bucket_versioning(Bucket="db-backups", VersioningConfiguration={"Status": "Enabled"})
    workspace.env = aws_emulator
    before = table_fingerprints(pg, chat_db)

    run = workspace.play("backup-db.yml", pg_backup_s3_bucket="db-backups", pg_backup_s3_prefix="prod")
    assert run.rc == 0, run.output
    [backup_id] = workspace.backups(chat_db)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="db-backups", Prefix=f"prod/{chat_db}/")["Contents"]]
    assert f"prod/{chat_db}/{backup_id}/manifest.json" in keys and f"prod/{chat_db}/{backup_id}/toc.dat" in keys
    for key in keys:
        assert s3.head_object(Bucket="db-backups", Key=key)["ServerSideEncryption"] == "AES256"

    def versions() -> dict[str, int]:
        listed = s3.list_object_versions(Bucket="db-backups", Prefix=f"prod/{chat_db}/").get("Versions", [])
        return {key: sum(1 for v in listed if v["Key"] == key) for key in {v["Key"] for v in listed}}

    # A second run, whose backup is the same one (fresh enough to skip), does not upload it again: every object
    # has still one version. A third, which takes a new backup, uploads that one and leaves the first one's alone.
    again = workspace.play("backup-db.yml", pg_backup_s3_bucket="db-backups", pg_backup_s3_prefix="prod",
                           pg_backup_skip_if_newer_than="1h")
    assert again.rc == 0 and again.changed == 0, again.output
    assert set(versions()) == set(keys) and set(versions().values()) == {1}, versions()
    third = workspace.play("backup-db.yml", pg_backup_s3_bucket="db-backups", pg_backup_s3_prefix="prod",
                           pg_backup_skip_if_newer_than="0")
    assert third.rc == 0 and third.changed > 0, third.output
    newer = [b for b in workspace.backups(chat_db) if b != backup_id]
    assert len(newer) == 1 and set(versions().values()) == {1}, versions()
    assert {k for k in versions() if f"/{newer[0]}/" in k} >= {f"prod/{chat_db}/{newer[0]}/manifest.json"}

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


def test_a_tampered_s3_manifest_writes_nothing_and_a_signed_store_refuses_what_its_key_did_not_sign(
        workspace, pg, chat_db, aws_emulator, monkeypatch, tmp_path):
    """Whoever can write the bucket edits a manifest: a file path leading out of the backup is refused before
    anything is written (with or without a key); with pg_backup_s3_signing_key, a manifest changed after it was
    signed, or one never signed, is refused too, and the key's own copy is fetched."""
    for key, value in aws_emulator.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    bucket, key = f"signed-{tmp_path.name[-12:].lower().replace('_', '-')}", "k3y-only-the-inventory-holds"
    s3.create_bucket(Bucket=bucket)
    workspace.env = aws_emulator
    run = workspace.play("backup-db.yml", pg_backup_s3_bucket=bucket, pg_backup_s3_prefix="prod",
                         pg_backup_s3_signing_key=key)
    assert run.rc == 0, run.output[-3000:]
    assert key not in run.output
    [backup_id] = workspace.backups(chat_db)
    manifest_key = f"prod/{chat_db}/{backup_id}/manifest.json"
    signed = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    shutil.rmtree(workspace.backup_root / chat_db)

    # A path out of the backup: refused before any write, key or not.
    escape = tmp_path / "planted"
    tampered = json.loads(signed)
    tampered["files"][f"../../../../../../../..{escape}"] = tampered["files"].pop(next(iter(tampered["files"])))
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(tampered).encode())
    s3.put_object(Bucket=bucket, Key=f"prod/{chat_db}/{backup_id}/../../../../../../../..{escape}", Body=b"x")
    unsigned = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup=backup_id)
    assert unsigned.rc != 0 and "not a plain path inside the backup" in unsigned.output, unsigned.output[-3000:]
    assert not escape.exists() and workspace.backups(chat_db) == []

    # Signed store: the same edit is refused for its signature; so is a copy whose signature is gone.
    changed = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup=backup_id,
                             pg_backup_s3_signing_key=key)
    assert changed.rc != 0 and "is not signed with this inventory's key" in changed.output, changed.output[-3000:]
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=signed)
    s3.delete_object(Bucket=bucket, Key=manifest_key + ".sig")
    missing = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup=backup_id,
                             pg_backup_s3_signing_key=key)
    assert missing.rc != 0 and "has no signature" in missing.output, missing.output[-3000:]
    assert not escape.exists() and workspace.backups(chat_db) == []

    # The signature put back: the copy is fetched, and its checksums verified.
    s3.put_object(Bucket=bucket, Key=manifest_key + ".sig",
                  Body=hmac.new(key.encode(), signed, hashlib.sha256).hexdigest().encode())
    fetched = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup=backup_id,
                             pg_backup_s3_signing_key=key)
    assert fetched.rc == 0, fetched.output[-3000:]
    assert workspace.backups(chat_db) == [backup_id] and key not in fetched.output


def test_fetch_backup_refuses_bad_input_plans_in_check_mode_fetches_once_and_keeps_nothing_tampered(
        workspace, pg, chat_db, aws_emulator, monkeypatch, tmp_path):
    for key, value in aws_emulator.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    bucket = f"fetch-{tmp_path.name[-12:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    workspace.env = aws_emulator
    assert workspace.play("backup-db.yml", pg_backup_s3_bucket=bucket, pg_backup_s3_prefix="prod").rc == 0
    [backup_id] = workspace.backups(chat_db)
    shutil.rmtree(workspace.backup_root / chat_db)

    nameless = workspace.play("fetch-backup.yml", backup=backup_id)
    assert nameless.rc != 0 and nameless.says("Name the bucket: -e s3_bucket=NAME"), nameless.output[-3000:]
    missing = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup="20200101T000000Z")
    assert missing.rc != 0 and missing.says("20200101T000000Z"), missing.output[-3000:]
    plan = workspace.play("fetch-backup.yml", check=True, s3_bucket=bucket, s3_prefix="prod", backup=backup_id)
    assert plan.rc == 0 and plan.changed > 0, plan.output[-3000:]
    assert not (workspace.backup_root / chat_db).exists() or workspace.backups(chat_db) == [], "--check fetched"

    fetched = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup=backup_id)
    assert fetched.rc == 0 and workspace.backups(chat_db) == [backup_id], fetched.output[-3000:]
    again = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup=backup_id)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]

    # Someone who can write the bucket changes a data file: the fetch refuses it and keeps nothing.
    shutil.rmtree(workspace.backup_root / chat_db)
    key = f"prod/{chat_db}/{backup_id}/toc.dat"
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    tampered = workspace.play("fetch-backup.yml", s3_bucket=bucket, s3_prefix="prod", backup=backup_id)
    assert tampered.rc != 0 and tampered.says("differ from the backup's manifest (toc.dat)"), tampered.output[-3000:]
    assert workspace.backups(chat_db) == []
    left = [p.name for p in (workspace.backup_root / chat_db).iterdir() if p.name.startswith(".partial")
            or p.name == backup_id]
    assert left == [], "a partial copy was left"
