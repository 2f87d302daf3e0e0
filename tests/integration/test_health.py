"""health-sweep and redis-fix on real servers; bad input and check mode for the issue-3 playbooks."""

from __future__ import annotations

import datetime
import json

import pytest
from conftest import Workspace, databases, flip_one_byte, tree_state


@pytest.fixture
def sweep(pg, chat_db, redis_server, tmp_path):
    """A sweep of a database and a Redis; backups are not watched here (the tests that watch them back up)."""
    workspace = Workspace(pg, [chat_db], tmp_path, redis_port=redis_server.port)
    workspace.write_inventory(health_sweep_backup_root="")
    return workspace


def report(workspace) -> dict:
    return json.loads((workspace.base / "reports" / "health-latest.json").read_text())


def by_check(document: dict, check: str) -> list[dict]:
    return [f for f in document["findings"] if f["check"] == check]


def test_healthy_sweep_passes_and_writes_one_report(sweep, chat_db):
    sweep.write_inventory()  # backups watched, as by default
    assert sweep.play("backup-db.yml").rc == 0
    run = sweep.play("health-sweep.yml")
    assert run.rc == 0 and run.changed == 0, run.output
    document = report(sweep)
    assert document["worst"] == "ok", [f for f in document["findings"] if f["severity"] != "ok"]
    assert {f["target"].split("/")[-1] for f in by_check(document, "dead_tuple_ratio")} == {chat_db}
    assert [f["severity"] for f in by_check(document, "backup_age_hours")] == ["ok"]
    assert [f["severity"] for f in by_check(document, "backup_space_ratio")] == ["ok"]
    assert by_check(document, "redis_ping")[0]["value"] is True
    assert "SEVERITY" in run.output and "redis_memory_ratio" in run.output  # the readable summary


def test_warning_passes_and_critical_fails(sweep):
    warn = sweep.play("health-sweep.yml", health_sweep_thresholds={"connection_ratio": {"warning": 0.0}})
    assert warn.rc == 0, warn.output
    assert report(sweep)["worst"] == "warning"
    assert by_check(report(sweep), "connection_ratio")[0]["severity"] == "warning"

    strict = sweep.play("health-sweep.yml", health_sweep_fail_on="warning",
                        health_sweep_thresholds={"connection_ratio": {"warning": 0.0}})
    assert strict.rc != 0 and "worst finding is WARNING" in strict.output

    crit = sweep.play("health-sweep.yml", health_sweep_thresholds={"xid_age": {"critical": 1}})
    assert crit.rc != 0 and "worst finding is CRITICAL" in crit.output
    assert by_check(report(sweep), "xid_age")[0]["severity"] == "critical"


def test_redis_near_maxmemory_is_reported(sweep, redis_server):
    client = redis_server.client()
    client.config_set("maxmemory", "8mb")
    limit = 8 * 1024 * 1024
    i = 0
    while client.info("memory")["used_memory"] < 0.9 * limit:
        client.set(f"session:{i}", "x" * 4000)
        i += 1
    run = sweep.play("health-sweep.yml")
    [memory] = by_check(report(sweep), "redis_memory_ratio")
    assert memory["value"] >= 0.9 and memory["severity"] in ("warning", "critical")
    assert (run.rc != 0) == (memory["severity"] == "critical")


def test_unreachable_servers_are_critical_findings(pg, chat_db, tmp_path):
    from conftest import free_port

    workspace = Workspace(pg, [chat_db], tmp_path, redis_port=free_port())  # nothing listens there
    run = workspace.play("health-sweep.yml")
    assert run.rc != 0
    ping = by_check(report(workspace), "redis_ping")[0]
    assert ping["severity"] == "critical" and "does not answer" in ping["message"]


def test_redis_fix_sets_persists_and_is_idempotent(sweep, redis_server):
    client = redis_server.client()
    check = sweep.play("redis-fix.yml", check=True, redis_maxmemory="512mb", redis_maxmemory_policy="allkeys-lru")
    assert check.rc == 0 and check.changed == 1
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction", "--check set nothing"

    run = sweep.play("redis-fix.yml", redis_maxmemory="512mb", redis_maxmemory_policy="allkeys-lru")
    assert run.rc == 0 and run.changed == 1, run.output
    assert client.config_get("maxmemory")["maxmemory"] == str(512 * 1024 * 1024)
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    config = redis_server.config.read_text()
    assert "maxmemory-policy allkeys-lru" in config and "maxmemory 512mb" in config  # survives a restart

    again = sweep.play("redis-fix.yml", redis_maxmemory="512mb", redis_maxmemory_policy="allkeys-lru")
    assert again.rc == 0 and again.changed == 0


def test_a_refused_config_rewrite_says_the_live_change_stays(sweep, redis_server):
    """The outcome seam for Redis: CONFIG SET took, CONFIG REWRITE failed (the configuration file's directory is gone,
    as when its volume is lost): the failure says the running server has the new value and the file does not."""
    client = redis_server.client()
    moved = redis_server.dir.with_name(redis_server.dir.name + "-moved")
    redis_server.dir.rename(moved)
    try:
        run = sweep.play("redis-fix.yml", redis_maxmemory="256mb")
    finally:
        moved.rename(redis_server.dir)
    assert run.rc != 0 and run.says(f"Redis refused CONFIG REWRITE of {redis_server.config}"), run.output[-3000:]
    assert run.says(f"Changed before the failure and still in place: maxmemory set to {256 * 1024 ** 2} (was "
                    f"{64 * 1024 ** 2}) on the running server."), run.output[-3000:]
    assert client.config_get("maxmemory")["maxmemory"] == str(256 * 1024 ** 2)
    assert "maxmemory 64mb" in redis_server.config.read_text(), "the file was rewritten after all"


@pytest.mark.parametrize("playbook, extra, message", [
    ("db-maintenance.yml", {"pg_maintenance_vacuum_threshold": -1}, "vacuum_threshold=-1 is negative"),
    ("db-maintenance.yml", {"database": "chat'; DROP TABLE users; --"}, "is not accepted"),
    ("db-maintenance.yml", {"database": "no_such_db"}, 'database "no_such_db" does not exist'),
    ("db-maintenance.yml", {"pg_maintenance_lock_timeout": "soon"}, "is not understood"),
    ("integrity-check.yml", {"database": "my;db"}, "is not accepted"),
    ("kill-long-queries.yml", {"pg_sessions_max_duration": "-5m", "confirm": True}, "is not understood"),
    ("kill-long-queries.yml", {"pg_sessions_max_duration": "10m", "pg_sessions_terminate_after": "1m",
                               "confirm": True}, "is shorter than max_duration"),
    ("health-sweep.yml", {"health_sweep_thresholds": {"connection_ratio": {"warning": -1}}}, "must be a number >= 0"),
    ("health-sweep.yml", {"health_sweep_thresholds": {"conection_ratio": {"warning": 1}}}, "unknown threshold"),
    ("redis-fix.yml", {"redis_maxmemory": "-1"}, "is not understood"),
    ("redis-fix.yml", {"redis_maxmemory_policy": "lru"}, "redis_config_maxmemory_policy"),
    ("redis-fix.yml", {}, "Nothing to set"),
])
def test_bad_input_is_refused_before_any_change(sweep, pg, redis_server, playbook, extra, message):
    before = (databases(pg), redis_server.client().config_get("maxmemory"), tree_state(sweep.base / "reports"))
    run = sweep.play(playbook, **extra)
    assert run.rc != 0 and message in run.output, run.output
    assert run.changed == 0
    assert (databases(pg), redis_server.client().config_get("maxmemory"), tree_state(sweep.base / "reports")) == before


@pytest.mark.parametrize("playbook", ["db-maintenance.yml", "integrity-check.yml", "kill-long-queries.yml",
                                      "health-sweep.yml"])
def test_check_mode_writes_nothing(sweep, pg, chat_db, playbook):
    run = sweep.play(playbook, check=True)
    assert run.rc == 0, run.output
    assert not (sweep.base / "reports").exists() and not sweep.audit_log.exists()


def age_newest_backup(workspace, database: str, hours: float) -> None:
    """Make the newest backup look `hours` old, as one would after the backup job has failed silently since."""
    newest = workspace.backup_root / database / workspace.backups(database)[-1] / "manifest.json"
    manifest = json.loads(newest.read_text())
    finished = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours)
    manifest["finished_at"] = finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    newest.write_text(json.dumps(manifest))


def backup_severity(workspace, check: str) -> str:
    [found] = by_check(report(workspace), check)
    return found["severity"]


def test_backups_are_watched_age_verification_and_space(pg, chat_db, tmp_path):
    workspace = Workspace(pg, [chat_db], tmp_path)
    nothing = workspace.play("health-sweep.yml")
    assert nothing.rc != 0 and "worst finding is CRITICAL" in nothing.output
    [missing] = by_check(report(workspace), "backup_age_hours")
    assert missing["severity"] == "critical" and f"no verified backup of {chat_db}" in missing["message"]

    assert workspace.play("backup-db.yml").rc == 0
    assert workspace.play("health-sweep.yml").rc == 0
    assert backup_severity(workspace, "backup_age_hours") == "ok"

    age_newest_backup(workspace, chat_db, 30)  # past the default warning (26 h): the sweep still passes
    warned = workspace.play("health-sweep.yml")
    assert warned.rc == 0 and backup_severity(workspace, "backup_age_hours") == "warning", warned.output
    age_newest_backup(workspace, chat_db, 51)  # past the default critical (50 h): the sweep fails
    failed = workspace.play("health-sweep.yml")
    assert failed.rc != 0 and backup_severity(workspace, "backup_age_hours") == "critical"
    assert "backup_age_hours" in failed.output

    # Thresholds come from the inventory.
    workspace.write_inventory(health_sweep_thresholds={"backup_age_hours": {"warning": 100, "critical": 200}})
    assert workspace.play("health-sweep.yml").rc == 0 and backup_severity(workspace, "backup_age_hours") == "ok"
    workspace.write_inventory(health_sweep_thresholds={"backup_space_ratio": {"critical": 10 ** 9}})
    short = workspace.play("health-sweep.yml")
    assert short.rc != 0 and backup_severity(workspace, "backup_space_ratio") == "critical"
    assert "the next one needs about" in json.dumps(by_check(report(workspace), "backup_space_ratio"))


def test_a_newest_backup_failing_verification_is_critical(pg, chat_db, tmp_path):
    workspace = Workspace(pg, [chat_db], tmp_path)
    for _ in range(2):
        assert workspace.play("backup-db.yml", pg_backup_skip_if_newer_than="0").rc == 0
    newest = workspace.backups(chat_db)[-1]
    flip_one_byte(workspace.backup_root / chat_db / newest)
    assert workspace.play("verify-backups.yml", backup=newest).rc != 0
    run = workspace.play("health-sweep.yml")
    assert run.rc != 0 and "worst finding is CRITICAL" in run.output
    [failed] = by_check(report(workspace), "backup_verification_failed")
    assert failed["severity"] == "critical" and f"newest backup {newest} failed its checksum" in failed["message"]
    # The older backup is still verified and fresh: its age is fine; the failure alone is the alarm.
    assert backup_severity(workspace, "backup_age_hours") == "ok"
