"""The application services list: what is accepted, and that every problem is named at once."""

from __future__ import annotations

import json

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.app_services import (
    Service,
    parse_services,
    read_record,
    write_record,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


def test_plain_unit_names_are_systemd_units_and_dicts_name_their_type():
    assert parse_services(["chat-worker.service", {"type": "compose", "project": "chat", "service": "backend"},
                           {"type": "container", "name": "redis"}]) == [
        Service("systemd", name="chat-worker.service"), Service("compose", project="chat", service="backend"),
        Service("container", name="redis")]


def test_every_problem_is_reported_at_once():
    with pytest.raises(RunbookError) as caught:
        parse_services([{"type": "kubernetes", "name": "x"}, {"type": "compose", "project": "chat"}, 7,
                        {"type": "container", "name": "a", "image": "b"}, "a.service", "a.service"])
    message = str(caught.value)
    for part in ("#1 has type 'kubernetes': the types are systemd, compose, container",
                 "#2 (compose) lacks service", "#3 is 7", "#4 (container) has unknown keys image",
                 "systemd:a.service is listed twice"):
        assert part in message, message


def test_a_record_from_before_typed_services_is_read_as_systemd_units(tmp_path):
    path = tmp_path / "incident.json"
    path.write_text(json.dumps({"running": ["chat-worker.service"], "scope": "incident"}))
    assert read_record(str(path))["services"] == {"systemd:chat-worker.service": {"type": "systemd",
                                                                                  "running": True}}
    assert read_record(str(tmp_path / "none.json")) is None


def test_a_record_is_private_and_replaced_whole(tmp_path):
    path = tmp_path / "state" / "r.json"
    write_record(str(path), {"services": {}})
    assert oct(path.stat().st_mode & 0o777) == "0o600" and json.loads(path.read_text()) == {"services": {}}
    assert not list(path.parent.glob("*.tmp"))
