"""The application services list: what is accepted, and that every problem is named at once; compose scaling's
decisions: which containers are started, made, stopped and removed, their names, and what a clone carries."""

from __future__ import annotations

import json

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.app_services import (
    NUMBER_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    Replica,
    ScalePlan,
    Service,
    clone_config,
    fixed_host_ports,
    parse_services,
    plan_scale,
    plan_unscale,
    read_record,
    replica_name,
    replica_summary,
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


# -- compose scaling ---------------------------------------------------------------------------------------------
def replicas(*specs: str) -> list[Replica]:
    """'1' a running container chat_backend_1, '2-' a stopped one."""
    return [Replica(f"chat_backend_{s.rstrip('-')}", int(s.rstrip("-")), not s.endswith("-"), f"id{s.rstrip('-')}")
            for s in specs]


def names(items: list[Replica]) -> list[str]:
    return [r.name for r in items]


def scale(current: list[Replica], count: int) -> ScalePlan:
    return plan_scale("compose:chat/backend", current, count, lambda n: f"chat_backend_{n}")


def test_scaling_up_starts_the_stopped_containers_first_then_creates_the_next_numbers():
    plan = scale(replicas("1", "2-"), 4)
    assert names(plan.start) == ["chat_backend_2"]
    assert [(r.name, r.number, r.running) for r in plan.create] == [("chat_backend_3", 3, True),
                                                                    ("chat_backend_4", 4, True)]
    assert not plan.stop and not plan.remove
    assert plan.line("scale") == ("scale     compose service chat/backend: 2 container(s), 1 running -> 4 "
                                  "container(s), 4 running (start chat_backend_2; create chat_backend_3, "
                                  "chat_backend_4)")


def test_the_next_number_follows_the_highest_even_with_a_gap():
    assert names(scale(replicas("1", "5"), 3).create) == ["chat_backend_6"]


def test_a_stopped_container_counts_so_reaching_the_count_starts_it_and_creates_none():
    plan = scale(replicas("1", "2-"), 2)
    assert names(plan.start) == ["chat_backend_2"] and not plan.create


def test_scaling_down_removes_the_highest_numbers_first_stopped_ones_included():
    plan = scale(replicas("1", "2-", "3"), 1)
    assert names(plan.remove) == ["chat_backend_3", "chat_backend_2"]
    assert not plan.start and not plan.create and not plan.stop
    assert replica_summary(plan.after) == {"containers": 1, "running": ["chat_backend_1"], "stopped": []}


def test_at_zero_the_lowest_numbered_container_is_kept_stopped_so_there_is_one_to_clone():
    plan = scale(replicas("1", "2"), 0)
    assert names(plan.stop) == ["chat_backend_1"] and names(plan.remove) == ["chat_backend_2"]
    assert replica_summary(plan.after) == {"containers": 1, "running": [], "stopped": ["chat_backend_1"]}


def test_the_same_count_again_changes_nothing():
    plan = scale(replicas("1", "2", "3"), 3)
    assert not plan.changes
    assert plan.line("scale") == "unchanged compose service chat/backend: 3 container(s), 3 running"


def test_the_undo_removes_what_the_scaling_made_and_brings_back_what_it_removed_in_their_recorded_state():
    recorded = replicas("1", "2-", "3")
    now = [Replica("chat_backend_1", 1, True, "id1"), Replica("chat_backend_2", 2, True, "id2"),
           Replica("chat_backend_4", 4, True, "id4"), Replica("chat_backend_5", 5, True, "id5")]
    plan = plan_unscale("compose:chat/backend", now, recorded)
    assert names(plan.remove) == ["chat_backend_5", "chat_backend_4"]
    assert [(r.name, r.number, r.running) for r in plan.create] == [("chat_backend_3", 3, True)]
    assert names(plan.stop) == ["chat_backend_2"] and not plan.start
    assert [(r.name, r.running) for r in plan.after] == [("chat_backend_1", True), ("chat_backend_2", False),
                                                         ("chat_backend_3", True)]
    assert not plan_unscale("compose:chat/backend", recorded, recorded).changes


def test_a_record_entry_round_trips():
    [replica] = replicas("2-")
    assert Replica.from_dict(replica.as_dict()) == replica


def test_new_containers_are_named_as_the_existing_ones_and_a_container_name_of_its_own_is_not_scaled():
    assert replica_name("chat", "backend", 3, "chat_backend_1") == "chat_backend_3"  # compose v1
    assert replica_name("chat", "backend", 3, "chat-backend-1") == "chat-backend-3"  # compose v2
    assert replica_name("chat", "backend", 3, "chat-api") is None
    assert replica_name("chat", "backend", 3, "chat_backend_worker_1") is None


def test_only_a_fixed_host_port_stops_a_second_container():
    assert fixed_host_ports({"PortBindings": {
        "8080/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "9000/tcp": [{"HostIp": "", "HostPort": ""}], "9100/tcp": [{"HostPort": "9100-9110"}],
        "9200/tcp": [{"HostPort": "0"}]}}) == ["8080->8080/tcp", "[::]:8080->8080/tcp"]
    assert fixed_host_ports({"PortBindings": None}) == []


TEMPLATE = {
    "Id": "4f1c2a3b4c5d" + "0" * 52,
    "Name": "/chat_backend_1",
    "Image": "sha256:abc",
    "Config": {"Hostname": "4f1c2a3b4c5d", "Domainname": "", "User": "app", "Env": ["MODE=live"],
               "Cmd": ["serve"], "Entrypoint": None, "Image": "chat/backend:1.4", "WorkingDir": "/srv",
               "MacAddress": "02:42:ac:11:00:02", "ExposedPorts": {"8080/tcp": {}}, "Volumes": {"/cache": {}},
               "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://localhost:8080/health"]},
               "Labels": {PROJECT_LABEL: "chat", SERVICE_LABEL: "backend", NUMBER_LABEL: "1",
                          "com.docker.compose.replace": "chat_backend_1_old", "team": "chat"}},
    "HostConfig": {"NetworkMode": "chat_default", "RestartPolicy": {"Name": "unless-stopped"},
                   "Binds": ["chat_uploads:/uploads:rw"], "ContainerIDFile": "",
                   "PortBindings": {"8080/tcp": [{"HostPort": ""}]}},
    "NetworkSettings": {"Networks": {
        "chat_default": {"Aliases": ["chat_backend_1", "backend", "4f1c2a3b4c5d"], "IPAddress": "172.18.0.3"},
        "chat_internal": {"Aliases": ["backend"], "DriverOpts": None}}},
}


def test_a_clone_carries_the_config_with_the_next_number_and_nothing_of_the_templates_own():
    body, more_networks = clone_config(TEMPLATE, 3, "chat/backend:1.4")
    assert body["Image"] == "chat/backend:1.4"
    assert body["Labels"] == {PROJECT_LABEL: "chat", SERVICE_LABEL: "backend", NUMBER_LABEL: "3", "team": "chat"}
    assert (body["Cmd"], body["Env"], body["User"], body["WorkingDir"], body["Healthcheck"], body["Volumes"]) == (
        ["serve"], ["MODE=live"], "app", "/srv", TEMPLATE["Config"]["Healthcheck"], {"/cache": {}})
    assert "Hostname" not in body and "MacAddress" not in body  # its own, from Docker
    assert body["HostConfig"] == {"NetworkMode": "chat_default", "RestartPolicy": {"Name": "unless-stopped"},
                                  "Binds": ["chat_uploads:/uploads:rw"],
                                  "PortBindings": {"8080/tcp": [{"HostPort": ""}]}}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"chat_default": {"Aliases": ["backend"],
                                                                             "DriverOpts": None}}}
    assert more_networks == {"chat_internal": {"Aliases": ["backend"], "DriverOpts": None}}
    assert TEMPLATE["Config"]["Labels"][NUMBER_LABEL] == "1"  # the template's inspect is not changed


def test_a_host_name_the_service_sets_is_kept_and_a_container_network_gets_no_endpoint():
    template = {**TEMPLATE, "Config": {**TEMPLATE["Config"], "Hostname": "api"},
                "HostConfig": {"NetworkMode": "container:vpn"}}
    body, more_networks = clone_config(template, 2, "sha256:abc")
    assert body["Hostname"] == "api" and body["Image"] == "sha256:abc"
    assert "NetworkingConfig" not in body and more_networks == {}
