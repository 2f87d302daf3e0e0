"""A WAL archive that knows whose it is. A cluster archives and has a base backup, then is lost and rebuilt (a new
initdb) with the same inventory: setting up archiving is refused before any change, naming both system identifiers;
a recovery and the health sweep refuse the other cluster's base backups; pg_archive_adopt=true starts a generation
of the new cluster's own, whose point-in-time recovery works while the old generation stays untouched. And
setup-archiving.yml --check on a server with no tools yet shows its plan instead of failing."""

from __future__ import annotations

import json
import shutil
import time
import uuid

import pytest
from conftest import connect
from pitr_world import ArchivedCluster, archive_now, open_world, server_now, utc_iso


@pytest.fixture(scope="module")
def lost(aws_emulator, tmp_path_factory):
    """The cluster that archived first, then was lost: stopped once its archive and first base backup exist."""
    for world in open_world(aws_emulator, tmp_path_factory, "identity"):
        world.cluster.stop()
        yield world


def system_identifier(world: ArchivedCluster) -> str:
    return str(world.rows("postgres", "SELECT system_identifier FROM pg_control_system()")[0][0])


def objects(world: ArchivedCluster, prefix: str) -> dict[str, str]:
    pages = world.s3().get_paginator("list_objects_v2").paginate(Bucket=world.bucket, Prefix=prefix)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def setting(world: ArchivedCluster, name: str) -> str:
    return world.rows("postgres", f"SELECT current_setting('{name}')")[0][0]


def identity_finding(world: ArchivedCluster) -> dict:
    report = json.loads((world.workspace.base / "reports" / "health-latest.json").read_text())
    [found] = [f for f in report["findings"] if f["check"] == "archive_identity"]
    return found


def test_a_rebuilt_cluster_is_refused_the_old_archive_and_adopt_starts_a_generation_of_its_own(lost, aws_emulator,
                                                                                               tmp_path):
    old_objects = objects(lost, "pg/identity/")
    assert any(key.endswith("/backup.info") for key in old_objects), old_objects
    rebuilt = ArchivedCluster(aws_emulator, tmp_path, "identity")
    try:
        rebuilt.bucket, rebuilt.archive = lost.bucket, {**lost.archive, "aws_dir": str(rebuilt.cluster.base / "aws")}
        rebuilt.inventory()
        new_id = system_identifier(rebuilt)
        # The lost cluster is down: its identifier is read from its base backup's backup.info.
        info = lost.s3().get_object(Bucket=lost.bucket, Key=next(k for k in old_objects
                                                                 if k.endswith("/backup.info")))["Body"].read()
        old_id = dict(line.split("=", 1) for line in info.decode().splitlines() if "=" in line)["systemid"]
        assert old_id != new_id

        refused = rebuilt.workspace.play("setup-archiving.yml")
        assert refused.rc != 0 and refused.says(f"this server is system {new_id}"), refused.output[-4000:]
        assert refused.says(f"system {old_id}") and refused.says("pg_archive_adopt=true"), refused.output[-4000:]
        assert setting(rebuilt, "archive_mode") == "off" and objects(lost, "pg/identity") == old_objects
        assert not (rebuilt.cluster.base / "aws").exists(), "the profile was written before the refusal"

        # Archiving switched on by hand, with the old profile, into the old archive (what a rebuild left as it was
        # did before): the recovery refuses the old cluster's base backups, and the health sweep says this server
        # has no recovery.
        shutil.copytree(lost.cluster.base / "aws", rebuilt.cluster.base / "aws")
        with connect(rebuilt.cluster) as conn:
            conn.execute("ALTER SYSTEM SET archive_mode = 'on'")
            conn.execute("ALTER SYSTEM SET archive_command = '/bin/true'")
        rebuilt.cluster.stop()
        rebuilt.cluster.start()
        name = f"rebuilt_{uuid.uuid4().hex[:6]}"
        with connect(rebuilt.cluster) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with connect(rebuilt.cluster, name) as conn:
            conn.execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        plan = rebuilt.workspace.play("recover-db.yml", check=True, database=name,
                                      target_time=utc_iso(server_now(rebuilt)))
        assert plan.rc != 0 and plan.says(f"system {old_id}") and plan.says(f"this server is system {new_id}"), \
            plan.output[-4000:]
        sweep = rebuilt.workspace.play("health-sweep.yml")
        assert sweep.rc != 0 and identity_finding(rebuilt)["severity"] == "critical", sweep.output[-4000:]

        adopted = rebuilt.workspace.play("setup-archiving.yml", pg_archive_adopt=True)
        assert adopted.rc == 0, adopted.output[-4000:]
        generation = f"identity.{new_id}"
        assert generation in setting(rebuilt, "archive_command")
        mine = objects(rebuilt, f"pg/{generation}/")
        assert any(key.endswith("/backup.info") for key in mine), "no first base backup of its own"
        assert objects(lost, "pg/identity/") == old_objects, "the old generation was touched"
        again = rebuilt.workspace.play("setup-archiving.yml")  # the generation is found without adopt
        assert again.rc == 0 and again.changed == 0, again.output[-4000:]
        rebuilt.workspace.play("health-sweep.yml")
        found = identity_finding(rebuilt)
        assert found["severity"] == "ok" and generation in found["message"], found

        # A point-in-time recovery of one database of the rebuilt cluster, from its own generation.
        time.sleep(1.1)
        moment = utc_iso(server_now(rebuilt))
        time.sleep(1.1)
        with connect(rebuilt.cluster, name) as conn:
            conn.execute("INSERT INTO t VALUES (2)")
        archive_now(rebuilt)
        run = rebuilt.workspace.play("recover-db.yml", database=name, target_time=moment, confirm=True)
        assert run.rc == 0, run.output[-4000:]
        assert rebuilt.rows(name, "SELECT n FROM t") == [(1,)]
        assert objects(lost, "pg/identity/") == old_objects
    finally:
        rebuilt.destroy()


def test_check_mode_on_a_server_without_the_tools_plans_instead_of_failing(aws_emulator, tmp_path):
    fresh = ArchivedCluster(aws_emulator, tmp_path, "fresh")
    try:
        tools = tmp_path / "no-tools-yet"
        fresh.archive = {**fresh.archive, "tools_dir": str(tools)}
        fresh.inventory()
        plan = fresh.workspace.play("setup-archiving.yml", check=True)
        assert plan.rc == 0, plan.output[-4000:]
        for words in (f"would install Barman's cloud tools into {tools}", "would set archive_command",
                      "would restart the server", f"s3://{fresh.bucket}/pg (fresh) is empty",
                      f"would create bucket {fresh.bucket}"):
            assert plan.says(words), (words, plan.output[-4000:])
        assert not tools.exists() and setting(fresh, "archive_mode") == "off"
        assert fresh.bucket not in [b["Name"] for b in fresh.s3().list_buckets()["Buckets"]]
    finally:
        fresh.destroy()
