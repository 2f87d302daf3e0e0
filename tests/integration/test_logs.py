"""rotate-logs.yml for real: CloudWatch log groups (AWS emulator over HTTP) get the retention, named ones are
created, any value AWS accepts works and none other; logrotate rules are validated by logrotate itself before they
are installed, and really rotate a log when logrotate runs; docker's daemon.json keeps every key it had."""

from __future__ import annotations

import gzip
import json
import os
import sys

import pytest
import yaml
from aws_world import AwsWorkspace, aws, clients

ROTATE = "rotate-logs.yml"


class LogsWorkspace(AwsWorkspace):
    """An `aws` host pointed at the emulator and a `log_hosts` host whose rules, state and daemon.json live here."""

    def write_inventory(self, scopes: dict) -> None:
        super().write_inventory(scopes)
        document = yaml.safe_load(self.inventory.read_text())
        logs_host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "logrotate_config_dir": str(self.base / "logrotate.d"),
                     "logrotate_state_file": str(self.base / "logrotate.status"),
                     "logrotate_docker_daemon_json": str(self.base / "docker" / "daemon.json"),
                     **getattr(self, "log_host", {})}
        document["all"]["children"]["log_hosts"] = {"hosts": {"testlogs": logs_host}}
        self.inventory.write_text(yaml.safe_dump(document))


@pytest.fixture
def logs(aws_emulator, tmp_path):
    aws_emulator.clear_faults()
    env = dict(aws_emulator)
    tag = "/" + tmp_path.name[-16:].replace("_", "-").strip("-") + "/"
    [client] = clients(env, "logs")
    for name in ("api", "worker", "cron"):
        client.create_log_group(logGroupName=f"{tag}{name}")
    client.put_retention_policy(logGroupName=f"{tag}worker", retentionInDays=7)
    ws = LogsWorkspace(tmp_path, env, {})
    ws.extra = {"log_retention_prefixes": [tag], "log_retention_groups": [f"{tag}new-function"],
                "log_retention_days": 1096}
    ws.write_inventory({})
    return {"env": env, "tag": tag, "ws": ws}


def retention(env: dict, prefix: str) -> dict:
    groups = aws(env, "logs", "describe-log-groups", "--log-group-name-prefix", prefix)["logGroups"]
    return {g["logGroupName"][len(prefix):]: g.get("retentionInDays") for g in groups}


def test_every_group_gets_the_retention_and_the_named_one_is_created(logs):
    ws, env, tag = logs["ws"], logs["env"], logs["tag"]
    before = retention(env, tag)
    assert before == {"api": None, "cron": None, "worker": 7}

    plan = ws.play(ROTATE, check=True)
    assert plan.rc == 0 and "4 of 4 log groups would change" in plan.output, plan.output
    assert retention(env, tag) == before

    run = ws.play(ROTATE)
    assert run.rc == 0, run.output
    assert retention(env, tag) == {"api": 1096, "cron": 1096, "worker": 1096, "new-function": 1096}
    again = ws.play(ROTATE)
    assert again.rc == 0 and again.changed == 0, again.output


def test_only_unset_leaves_an_explicit_retention(logs):
    ws, env, tag = logs["ws"], logs["env"], logs["tag"]
    run = ws.play(ROTATE, log_retention_days=30, log_retention_only_unset=True)
    assert run.rc == 0, run.output
    assert retention(env, tag) == {"api": 30, "cron": 30, "worker": 7, "new-function": 30}


@pytest.mark.parametrize("days", [0, 13])
def test_a_retention_aws_refuses_is_refused_before_any_change(logs, days):
    ws, env, tag = logs["ws"], logs["env"], logs["tag"]
    run = ws.play(ROTATE, log_retention_days=days)
    assert run.rc != 0, run.output
    assert run.says(f"retention_days={days} is not a value CloudWatch Logs accepts"), run.output
    assert run.says("Nothing was changed"), run.output
    assert retention(env, tag) == {"api": None, "cron": None, "worker": 7}


def test_a_prefix_matching_nothing_is_named(logs):
    ws, env, tag = logs["ws"], logs["env"], logs["tag"]
    run = ws.play(ROTATE, log_retention_prefixes=[tag, "/aws/lamda/"], log_retention_groups=[])
    assert run.rc == 0, run.output
    assert run.says("Prefix '/aws/lamda/' matched no log group: check its spelling"), run.output
    assert retention(env, tag) == {"api": 1096, "cron": 1096, "worker": 1096}


@pytest.fixture
def app_logs(logs, tmp_path):
    """An application log directory with a 3 MB log, and a 1 MB rule for it that rotates at once."""
    log_dir = tmp_path / "chat-api"
    log_dir.mkdir()
    content = os.urandom(3 * 1024 * 1024)
    (log_dir / "app.log").write_bytes(content)
    ws = logs["ws"]
    ws.log_host = {"logrotate_run_now": True, "logrotate_rules": [
        {"name": "chat-api", "paths": [f"{log_dir}/*.log"], "size": "1M", "rotate": 2, "maxage": 30}]}
    ws.write_inventory({})
    return {"ws": ws, "dir": log_dir, "content": content}


def test_logrotate_really_rotates_and_compresses(app_logs):
    ws, log_dir = app_logs["ws"], app_logs["dir"]
    plan = ws.play(ROTATE, "--limit", "testlogs", check=True)
    assert plan.rc == 0 and plan.says("chat-api: ") and plan.says("(would be installed)"), plan.output
    assert not (ws.base / "logrotate.d").exists() and sorted(p.name for p in log_dir.iterdir()) == ["app.log"]

    run = ws.play(ROTATE, "--limit", "testlogs")
    assert run.rc == 0, run.output
    rule = (ws.base / "logrotate.d" / "runbook-chat-api").read_text()
    assert "size 1M" in rule and "rotate 2" in rule and "compress" in rule
    assert sorted(p.name for p in log_dir.iterdir()) == ["app.log.1.gz"]
    assert gzip.decompress((log_dir / "app.log.1.gz").read_bytes()) == app_logs["content"]

    again = ws.play(ROTATE, "--limit", "testlogs")
    assert again.rc == 0 and again.changed == 0, again.output


def test_copytruncate_keeps_the_open_file(app_logs):
    ws, log_dir = app_logs["ws"], app_logs["dir"]
    ws.log_host["logrotate_rules"][0]["copytruncate"] = True
    ws.write_inventory({})
    with open(log_dir / "app.log", "ab") as still_open:
        run = ws.play(ROTATE, "--limit", "testlogs")
        assert run.rc == 0, run.output
        still_open.write(b"after the rotation\n")
    assert "copytruncate" in (ws.base / "logrotate.d" / "runbook-chat-api").read_text()
    assert sorted(p.name for p in log_dir.iterdir()) == ["app.log", "app.log.1.gz"]
    assert (log_dir / "app.log").read_bytes().endswith(b"after the rotation\n")
    assert len((log_dir / "app.log").read_bytes()) < 1024 * 1024


def test_a_broken_rule_is_refused_by_logrotate_and_the_installed_one_stays(app_logs):
    ws = app_logs["ws"]
    ws.log_host["logrotate_run_now"] = False
    ws.write_inventory({})
    assert ws.play(ROTATE, "--limit", "testlogs").rc == 0
    installed = (ws.base / "logrotate.d" / "runbook-chat-api").read_text()

    ws.log_host["logrotate_rules"][0]["su"] = "nosuchuser nosuchgroup"
    ws.write_inventory({})
    run = ws.play(ROTATE, "--limit", "testlogs")
    assert run.rc != 0, run.output
    assert run.says("unknown user 'nosuchuser'"), run.output
    assert (ws.base / "logrotate.d" / "runbook-chat-api").read_text() == installed


def test_a_malformed_rule_is_refused_before_anything_is_installed(app_logs):
    ws = app_logs["ws"]
    ws.log_host["logrotate_rules"] = [{"name": "chat api", "paths": "relative/*.log", "size": "lots"}]
    ws.write_inventory({})
    run = ws.play(ROTATE, "--limit", "testlogs")
    assert run.rc != 0 and run.says("is malformed: nothing was changed"), run.output
    assert not (ws.base / "logrotate.d").exists()


def test_daemon_json_keeps_its_other_keys(logs):
    ws = logs["ws"]
    daemon = ws.base / "docker" / "daemon.json"
    daemon.parent.mkdir()
    daemon.write_text(json.dumps({"data-root": "/srv/docker", "registry-mirrors": ["https://mirror.example"],
                                  "log-opts": {"labels": "service"}}))
    ws.log_host = {"logrotate_docker_manage": True, "logrotate_docker_log_opts": {"max-size": "10m", "max-file": 3}}
    ws.write_inventory({})

    plan = ws.play(ROTATE, "--limit", "testlogs", check=True)
    assert plan.rc == 0, plan.output
    assert json.loads(daemon.read_text())["log-opts"] == {"labels": "service"}

    run = ws.play(ROTATE, "--limit", "testlogs")
    assert run.rc == 0, run.output
    assert json.loads(daemon.read_text()) == {
        "data-root": "/srv/docker", "registry-mirrors": ["https://mirror.example"], "log-driver": "json-file",
        "log-opts": {"labels": "service", "max-size": "10m", "max-file": "3"}}
    again = ws.play(ROTATE, "--limit", "testlogs")
    assert again.rc == 0 and again.changed == 0, again.output


def test_a_daemon_json_that_is_not_json_is_left_alone(logs):
    ws = logs["ws"]
    daemon = ws.base / "docker" / "daemon.json"
    daemon.parent.mkdir()
    daemon.write_text('{"data-root": "/srv/docker",}')
    ws.log_host = {"logrotate_docker_manage": True}
    ws.write_inventory({})
    run = ws.play(ROTATE, "--limit", "testlogs")
    assert run.rc != 0 and run.says("is not valid JSON"), run.output
    assert daemon.read_text() == '{"data-root": "/srv/docker",}'


def test_journald_gets_its_size_limit_when_asked(logs):
    ws = logs["ws"]
    dropin = ws.base / "journald.conf.d" / "runbook-recovery.conf"
    ws.log_host = {"logrotate_journald_system_max_use": "500M", "logrotate_journald_dropin": str(dropin)}
    ws.write_inventory({})
    run = ws.play(ROTATE, "--limit", "testlogs")
    assert run.rc == 0, run.output
    assert "[Journal]\nSystemMaxUse=500M\n" in dropin.read_text()
    again = ws.play(ROTATE, "--limit", "testlogs")
    assert again.rc == 0 and again.changed == 0, again.output

    ws.log_host["logrotate_journald_system_max_use"] = "half"
    ws.write_inventory({})
    bad = ws.play(ROTATE, "--limit", "testlogs")
    assert bad.rc != 0 and bad.says("is not a size journald reads"), bad.output
    assert "SystemMaxUse=500M" in dropin.read_text()
