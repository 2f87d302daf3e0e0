"""The audit log's hash chain (module_utils/audit.py): records appended are linked; editing or deleting any line, or
adding one by hand, is found and named by its line number; a log older than the chain keeps verifying."""

from __future__ import annotations

import json

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.audit import GENESIS, append, verify_chain


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "audit" / "audit.jsonl"
    for number in range(5):
        append(str(path), {"procedure": "recover-db", "result": "recovered", "n": number, "database": "données"})
    return path


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_records_are_chained_and_verify(log):
    records = [json.loads(line) for line in lines(log)]
    assert records[0]["prev"] == GENESIS and all(r["hash"] for r in records)
    assert len({r["hash"] for r in records}) == 5
    assert verify_chain(str(log)) == {"ok": True, "records": 5, "chained": 5, "first_bad_line": None,
                                      "msg": f"{log}: 5 records, 5 chained, none changed or removed between them"}
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_an_edited_record_is_named(log):
    text = lines(log)
    record = json.loads(text[2])
    record["result"] = "unchanged"  # someone hides a recovery
    text[2] = json.dumps(record, sort_keys=True)
    log.write_text("\n".join(text) + "\n")
    result = verify_chain(str(log))
    assert not result["ok"] and result["first_bad_line"] == 3 and "was changed after it was written" in result["msg"]


def test_an_edited_record_with_its_hash_recomputed_breaks_the_next_link(log):
    from ansible_collections.runbook.recovery.plugins.module_utils.audit import record_hash

    text = lines(log)
    record = json.loads(text[1])
    record["actor"] = "someone else"
    record["hash"] = record_hash(record)
    text[1] = json.dumps(record, sort_keys=True)
    log.write_text("\n".join(text) + "\n")
    result = verify_chain(str(log))
    assert result["first_bad_line"] == 3 and "does not follow the line before it" in result["msg"]


def test_a_deleted_record_is_named(log):
    text = lines(log)
    del text[1]
    log.write_text("\n".join(text) + "\n")
    result = verify_chain(str(log))
    assert not result["ok"] and result["first_bad_line"] == 2 and "was removed" in result["msg"]


def test_a_record_added_by_hand_is_named(log):
    with open(log, "a") as handle:
        handle.write(json.dumps({"procedure": "recover-db", "result": "recovered"}) + "\n")
    result = verify_chain(str(log))
    assert result["first_bad_line"] == 6 and "has no hash" in result["msg"]


def test_a_log_older_than_the_chain_still_verifies(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps({"procedure": "backup", "result": "ok"}) + "\n")
    append(str(path), {"procedure": "recover-db", "result": "recovered"})
    append(str(path), {"procedure": "recover-db", "result": "unchanged"})
    result = verify_chain(str(path))
    assert result["ok"] and result["records"] == 3 and result["chained"] == 2
