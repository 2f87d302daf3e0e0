"""terraform-unlock.yml against the AWS emulator over HTTP, on locks written the way Terraform's S3 backend writes them:
the DynamoDB item {LockID: BUCKET/KEY, Info: LockInfo JSON} beside the state's BUCKET/KEY-md5 digest item, and the S3
native lock file KEY.tflock (use_lockfile). The plan names the holder and the lock's age; only the lock with the ID
given, older than min_age, is removed, with confirm; the digest item and the state object stay."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
from aws_world import AwsWorkspace, aws, clients

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome
from ansible_collections.runbook.recovery.plugins.module_utils.terraform_lock import (
    plan,
    read_locks,
    remove,
)
from sandbox.terraform_state import StateBackend, state_document
from sandbox.terraform_state import lock_info as terraform_lock_info

UNLOCK = "terraform-unlock.yml"
KEY = "network/terraform.tfstate"
STATE = state_document()


def lock_info(bucket: str, age: datetime.timedelta, **holder) -> dict:
    return terraform_lock_info(bucket, KEY, age, **holder)


class Backend(StateBackend):
    """A state bucket, its lock table and digest item (sandbox/terraform_state.py), in the emulator of the tests."""

    def __init__(self, env: dict):
        self.env = env
        bucket = f"tfstate-{uuid.uuid4().hex[:10]}"
        super().__init__(*clients(env, "s3", "dynamodb"), bucket, KEY, f"{bucket}-locks")
        self.create(STATE)

    def items(self, cli: bool = False) -> dict:
        """LockID -> the item's other attributes, read back from the table."""
        if cli:
            found = aws(self.env, "dynamodb", "scan", "--table-name", self.table)["Items"]
        else:
            found = self.ddb.scan(TableName=self.table)["Items"]
        return {i["LockID"]["S"]: {k: v["S"] for k, v in i.items() if k != "LockID"} for i in found}

    def objects(self, cli: bool = False) -> list[str]:
        if cli:
            listed = aws(self.env, "s3api", "list-objects-v2", "--bucket", self.bucket)
        else:
            listed = self.s3.list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def world(self) -> tuple:
        return self.items(), self.objects()


@pytest.fixture
def backend(aws_emulator):
    aws_emulator.clear_faults()
    return Backend(dict(aws_emulator))


@pytest.fixture
def ws(backend, tmp_path):
    workspace = AwsWorkspace(tmp_path, backend.env, {})
    workspace.extra = {"terraform_backends": {"network": {"bucket": backend.bucket, "key": KEY,
                                                          "use_lockfile": True}}}
    workspace.write_inventory({})
    return workspace


def test_dynamodb_lock_plan_refuse_unlock_once(backend, ws):
    info = lock_info(backend.bucket, datetime.timedelta(hours=3, minutes=12))
    backend.lock_dynamodb(info)
    before = backend.world()
    path = f"{backend.bucket}/{KEY}"

    shown = ws.play(UNLOCK, check=True, lock_path=path, lock_table=backend.table)
    assert shown.rc == 0, shown.output
    for fact in (f"held by alice@ci-runner-7 (ID {info['ID']}, OperationTypeApply since {info['Created'][:19]}Z, "
                 "3h 12m ago), Terraform 1.9.5", f"DynamoDB table {backend.table} item {path}",
                 f"To remove it once its run is gone: lock_id={info['ID']} with confirm=true"):
        assert shown.says(fact), (fact, shown.output)
    assert backend.world() == before

    unconfirmed = ws.play(UNLOCK, lock_path=path, lock_table=backend.table, lock_id=info["ID"])
    assert unconfirmed.rc != 0 and unconfirmed.says("Not confirmed: nothing was removed"), unconfirmed.output
    assert backend.world() == before and ws.audit() == []

    removed = ws.play(UNLOCK, lock_path=path, lock_table=backend.table, lock_id=info["ID"], confirm=True)
    assert removed.rc == 0, removed.output
    assert removed.says(f"Removed the lock held by alice@ci-runner-7 (ID {info['ID']}"), removed.output
    # Only the lock item went: the state's digest item and the state object are as they were.
    assert backend.items(cli=True) == {f"{path}-md5": before[0][f"{path}-md5"]}
    assert backend.objects(cli=True) == [KEY]
    [record] = ws.audit()
    assert record["procedure"] == "terraform-unlock" and record["result"] == "removed"
    assert record["held_by"] == "alice@ci-runner-7" and record["lock_id"] == info["ID"]
    assert [(r["store"], r["id"], r["who"], r["result"]) for r in record["locks"]] == [
        ("dynamodb", info["ID"], "alice@ci-runner-7", "removed")]

    again = ws.play(UNLOCK, lock_path=path, lock_table=backend.table, lock_id=info["ID"], confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output
    assert again.says(f"No lock on {path}"), again.output
    assert ws.audit()[-1]["result"] == "unchanged"


def test_s3_lockfile_of_an_inventory_backend(backend, ws):
    info = lock_info(backend.bucket, datetime.timedelta(hours=2), who="runner@gitlab-ci-42",
                     operation="OperationTypePlan")
    backend.lock_s3(info)
    before = backend.world()

    shown = ws.play(UNLOCK, check=True, backend="network", lock_id=info["ID"])
    assert shown.rc == 0 and shown.changed == 1, shown.output
    assert shown.says(f"s3://{backend.bucket}/{KEY}.tflock: held by runner@gitlab-ci-42 (ID {info['ID']}, "
                      "OperationTypePlan since"), shown.output
    assert shown.says("-> will be removed"), shown.output
    assert backend.world() == before and ws.audit() == []

    removed = ws.play(UNLOCK, backend="network", lock_id=info["ID"], confirm=True)
    assert removed.rc == 0 and removed.changed == 1, removed.output
    assert backend.objects(cli=True) == [KEY]
    assert backend.items() == before[0]
    [record] = ws.audit()
    assert record["result"] == "removed" and record["held_by"] == "runner@gitlab-ci-42"


@pytest.mark.parametrize("case", ["young", "other_id", "no_state", "not_named"])
def test_bad_input_is_refused_before_any_change(backend, ws, case):
    """Each refusal names the problem and what to do; the lock, the digest item and the state stay."""
    info = lock_info(backend.bucket, datetime.timedelta(minutes=5) if case == "young" else datetime.timedelta(days=1))
    backend.lock_dynamodb(info)
    backend.lock_s3(info)  # both locks, as Terraform takes them with dynamodb_table and use_lockfile
    before = backend.world()
    target = {"bucket": backend.bucket, "key": KEY, "lock_table": backend.table}
    if case == "young":
        run = ws.play(UNLOCK, **target, lock_id=info["ID"], confirm=True)
        expected = ["is younger than min_age=1h: its Terraform run may still be going. Nothing was removed.",
                    f"held by alice@ci-runner-7 (ID {info['ID']}, OperationTypeApply since"]
    elif case == "other_id":
        stale = str(uuid.uuid4())  # the ID a plan showed earlier; the lock was released and taken again since
        run = ws.play(UNLOCK, **target, lock_id=stale, confirm=True)
        expected = [f"is now held by alice@ci-runner-7 (ID {info['ID']}", f"not by lock_id={stale}: nothing was "
                    "removed"]
    elif case == "no_state":
        run = ws.play(UNLOCK, bucket=backend.bucket, key="netwrok/terraform.tfstate", lock_table=backend.table,
                      lock_id=info["ID"], confirm=True)
        expected = [f"No lock and no state object at {backend.bucket}/netwrok/terraform.tfstate",
                    "check bucket and key"]
    else:
        run = ws.play(UNLOCK, lock_id=info["ID"], confirm=True)
        expected = ["No Terraform state named: nothing was removed", "-e lock_path=BUCKET/KEY",
                    "this inventory defines network"]
    assert run.rc != 0, run.output
    for text in expected:
        assert run.says(text), (text, run.output)
    assert backend.world() == before
    assert ws.audit() == []


@pytest.mark.parametrize("store", ["dynamodb", "s3"])
def test_a_lock_taken_again_after_the_read_is_kept(backend, store):
    """The race between the read and the delete: Terraform released the stale lock and another run took it. The
    conditional delete (DynamoDB on Info, S3 on the lock file's ETag) keeps the new lock and names its holder."""
    old = lock_info(backend.bucket, datetime.timedelta(hours=5))
    take = backend.lock_dynamodb if store == "dynamodb" else backend.lock_s3
    take(old)
    table = backend.table if store == "dynamodb" else None
    found = read_locks(backend.ddb, backend.s3, backend.bucket, KEY, table, store == "s3")
    rows = plan(found, old["ID"], 3600, datetime.datetime.now(datetime.UTC))
    assert [r["action"] for r in rows] == ["remove"]

    new = lock_info(backend.bucket, datetime.timedelta(0), who="bob@laptop")
    take(new, replace=True)
    done = Outcome()
    with pytest.raises(RunbookError, match=f"now held by bob@laptop \\(ID {new['ID']}.*was kept"):
        remove(backend.ddb, backend.s3, found, rows, backend.bucket, KEY, table, done)
    assert done.sentence() == "Nothing was changed."
    still = read_locks(backend.ddb, backend.s3, backend.bucket, KEY, table, store == "s3")
    assert [json.loads(lock.raw)["ID"] for lock in still] == [new["ID"]]


def test_a_sealed_plan_removes_the_lock_it_read_and_refuses_one_taken_again(backend, ws, tmp_path):
    """--check -e plan_out=FILE pins the lock it found (no lock_id typed: the plan resolves it); -e plan=FILE removes
    exactly that lock. A lock released and taken again after the plan, by another run, is refused with nothing
    removed, as is an edited plan file."""
    first = lock_info(backend.bucket, datetime.timedelta(hours=4))
    backend.lock_dynamodb(first)
    plan_file = tmp_path / "unlock.json"
    planned = ws.play(UNLOCK, check=True, backend="network", lock_table=backend.table, plan_out=str(plan_file))
    assert planned.rc == 0, planned.output
    document = json.loads(plan_file.read_text())
    assert document["procedure"] == "terraform-unlock" and document["inputs"]["lock_id"] == first["ID"]
    assert [lock["who"] for lock in document["resources"]["locks"]] == ["alice@ci-runner-7"]

    # Released and taken again by another run (old enough too): not the lock anybody reviewed.
    second = lock_info(backend.bucket, datetime.timedelta(hours=2), who="bob@laptop")
    backend.lock_dynamodb(second, replace=True)
    before = backend.world()
    refused = ws.play(UNLOCK, plan=str(plan_file), confirm=True)
    assert refused.rc != 0, refused.output
    assert refused.says("no longer holds, so nothing was changed"), refused.output
    assert refused.says(first["ID"]) and refused.says(second["ID"]), refused.output
    assert backend.world() == before and ws.audit() == []

    # The lock the plan read is back: the sealed plan applies, with no lock_id or state typed.
    backend.lock_dynamodb(first, replace=True)
    edited = tmp_path / "edited.json"
    edited.write_text(plan_file.read_text().replace(backend.table, backend.table + "x"))
    tampered = ws.play(UNLOCK, plan=str(edited), confirm=True)
    assert tampered.rc != 0 and tampered.says("was changed after it was made"), tampered.output
    applied = ws.play(UNLOCK, plan=str(plan_file), confirm=True)
    assert applied.rc == 0 and applied.changed == 1, applied.output
    path = f"{backend.bucket}/{KEY}"
    assert backend.items(cli=True) == {f"{path}-md5": before[0][f"{path}-md5"]}
    [record] = ws.audit()
    assert (record["result"], record["lock_id"], record["held_by"]) == ("removed", first["ID"], "alice@ci-runner-7")
