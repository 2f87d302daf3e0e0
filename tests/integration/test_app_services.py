"""The application side of a procedure, against a Docker daemon of the tests' own (docker_world): a compose service's
containers (found by compose's labels) stopped by recover-db before the restore and started after, also after a
rollback; emergency shutdown/resume bringing back exactly the containers that ran, at the same count; a rolling
restart, one container at a time, that stops at the first unhealthy one."""

from __future__ import annotations

import datetime
import json
import sys

import yaml
from conftest import PlaybookWorkspace, Workspace, create_chat_db, disaster, table_fingerprints
from docker_world import DockerDaemon


def state(dockerd: DockerDaemon, name: str) -> dict:
    return dockerd.client.containers.get(name).attrs["State"]


def recovery_workspace(pg, tmp_path, dockerd: DockerDaemon, services: list) -> tuple[Workspace, str]:
    database = create_chat_db(pg)
    ws = Workspace(pg, [database], tmp_path)
    ws.write_inventory(pg_app_services=services, app_docker_host=dockerd.host, app_state_dir=str(tmp_path / "app"))
    assert ws.play("backup-db.yml").rc == 0
    disaster(pg, database)
    return ws, database


def test_recover_db_stops_the_backend_before_the_restore_and_starts_exactly_it_after(pg, tmp_path, dockerd, backend):
    project, containers = backend()
    names = [c.name for c in containers]
    containers[2].stop(timeout=1)  # scaled in by hand before the incident: it stays stopped
    ws, database = recovery_workspace(pg, tmp_path, dockerd, [{"type": "compose", "project": project,
                                                               "service": "backend"}])
    recovered = table_fingerprints(pg, database)
    before = {name: state(dockerd, name) for name in names}

    run, tasks = ws.play_json("recover-db.yml", confirm=True)
    assert run.rc == 0, run.output[-3000:]
    assert table_fingerprints(pg, database) != recovered  # the rows are back
    order = list(tasks)
    assert order.index("Stop the application") < order.index("Restore into staging, validate, swap in, probe with "
                                                             "SQL") < order.index("Start the application")
    assert tasks["Stop the application"]["testdb"]["actions"] == [
        f"stopped container {name} (compose:{project}/backend)" for name in names[:2]]
    after = {name: state(dockerd, name) for name in names}
    for name in names[:2]:  # stopped during the run, then started again
        assert after[name]["Running"] and after[name]["StartedAt"] > before[name]["StartedAt"], after[name]
        assert after[name]["FinishedAt"] > before[name]["StartedAt"]
    assert not after[names[2]]["Running"] and after[names[2]]["StartedAt"] == before[names[2]]["StartedAt"]
    assert dockerd.running(project, "cache") == [f"{project}_cache_1"]  # another service: never touched
    assert not (tmp_path / "app" / f"recover-db-{database}.json").exists(), "the record was left behind"

    again = ws.play("recover-db.yml", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    assert dockerd.running(project, "backend") == sorted(names[:2])


def test_a_failed_probe_rolls_back_and_starts_the_backend_again(pg, tmp_path, dockerd, backend):
    project, containers = backend(2)
    ws, database = recovery_workspace(pg, tmp_path, dockerd, [{"type": "compose", "project": project,
                                                               "service": "backend"}])
    damaged = table_fingerprints(pg, database)
    run = ws.play("recover-db.yml", confirm=True, pg_recover_health_query="SELECT * FROM app_ready_check")
    assert run.rc != 0 and run.says("rolled back"), run.output[-3000:]
    assert table_fingerprints(pg, database) == damaged
    assert dockerd.running(project, "backend") == sorted(c.name for c in containers)
    assert ws.audit()[-1]["result"] == "rolled_back"



def test_a_backend_that_comes_back_unhealthy_fails_the_recovery_naming_it_and_rolls_back(pg, tmp_path, dockerd,
                                                                                         backend):
    """recover-db waits for what it started to be healthy: the application back, not merely started."""
    project, containers = backend(2)
    ws, database = recovery_workspace(pg, tmp_path, dockerd, [{"type": "compose", "project": project,
                                                               "service": "backend"}])
    damaged = table_fingerprints(pg, database)
    containers[1].exec_run(["touch", "/fail-on-start"])  # its next start comes up unhealthy
    run = ws.play("recover-db.yml", confirm=True)
    assert run.rc != 0, run.output[-3000:]
    assert run.says(f"container {containers[1].name} (compose:{project}/backend) was started and is not healthy: "
                    "Docker's health check says unhealthy"), run.output[-3000:]
    assert run.says("rolled back"), run.output[-3000:]
    assert table_fingerprints(pg, database) == damaged
    assert dockerd.running(project, "backend") == sorted(c.name for c in containers)
    assert ws.audit()[-1]["result"] == "rolled_back"

def test_a_service_with_no_container_or_an_unknown_type_is_refused_before_any_change(pg, tmp_path, dockerd, backend):
    project, containers = backend(1)
    ws, database = recovery_workspace(pg, tmp_path, dockerd, [])
    damaged = table_fingerprints(pg, database)
    for services, says in (
        ([{"type": "compose", "project": project, "service": "backnd"}], f"compose:{project}/backnd: no container "
                                                                          f"has the labels"),
        ([{"type": "compose", "project": f"{project}x", "service": "backend"}], "no container has the labels"),
        ([{"type": "container", "name": "no-such-container"}], "there is no container named no-such-container"),
        ([{"type": "kubernetes", "name": "backend"}], "has type 'kubernetes': the types are systemd, compose, "
                                                      "container"),
        ([{"type": "compose", "project": project}], "(compose) lacks service"),
    ):
        ws.write_inventory(pg_app_services=services, app_docker_host=dockerd.host,
                           app_state_dir=str(tmp_path / "app"))
        run = ws.play("recover-db.yml", confirm=True)
        assert run.rc != 0 and run.says(says), (services, run.output[-3000:])
        assert table_fingerprints(pg, database) == damaged
        assert dockerd.running(project, "backend") == [containers[0].name]
    assert not list((tmp_path / "app").glob("*.json")), "a refused run left a record"


class AppWorkspace(PlaybookWorkspace):
    """An inventory with one `app` host (this machine, its Docker daemon the tests' own) and an emergency scope."""

    def __init__(self, base, dockerd: DockerDaemon, services: list, app_services: list | None = None):
        super().__init__(base)
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "app_docker_host": dockerd.host, "runbook_audit_log": str(self.audit_log),
                "app_services": app_services or [], "app_state_dir": str(base / "app"),
                "emergency_shutdown_state_dir": str(base / "emergency"),
                "emergency_resume_state_dir": str(base / "emergency"),
                "emergency_scopes": {"incident": {"app_services": services}}}
        self.inventory.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"apphost": host}}}}}))
        self.inventory.chmod(0o600)


def test_emergency_shutdown_and_resume_bring_back_the_same_containers_at_the_same_count(tmp_path, dockerd, backend):
    project, containers = backend(3)
    names = [c.name for c in containers]
    containers[0].stop(timeout=1)  # not running before the incident: the resume must not start it
    single = dockerd.container(f"{project}-worker")
    ws = AppWorkspace(tmp_path, dockerd, [{"type": "compose", "project": project, "service": "backend"},
                                          {"type": "container", "name": single.name}])
    running = sorted(names[1:])

    plan_file = tmp_path / "shutdown.json"
    plan = ws.play("emergency-shutdown.yml", check=True, shutdown_scope="incident", plan_out=str(plan_file))
    assert plan.rc == 0 and plan.says(f"stopped container {names[1]}"), plan.output[-3000:]
    assert dockerd.running(project, "backend") == running and not (tmp_path / "emergency").exists()
    assert sorted(json.loads(plan_file.read_text())["resources"]) == ["app:apphost", "lambda", "services", "stages"]

    refused = ws.play("emergency-shutdown.yml", shutdown_scope="incident")
    assert refused.rc != 0 and refused.says("Not confirmed: nothing was changed"), refused.output[-3000:]
    assert dockerd.running(project, "backend") == running

    # The sealed plan listed three running containers; one more running now is not what was reviewed.
    containers[0].start()
    moved = ws.play("emergency-shutdown.yml", plan=str(plan_file), confirm=True)
    assert moved.rc != 0 and moved.says("no longer holds, so nothing was changed"), moved.output[-3000:]
    assert dockerd.running(project, "backend") == sorted(names)
    containers[0].stop(timeout=1)

    stop = ws.play("emergency-shutdown.yml", plan=str(plan_file), confirm=True)
    assert stop.rc == 0 and stop.changed > 0, stop.output[-3000:]
    assert dockerd.running(project, "backend") == [] and not state(dockerd, single.name)["Running"]
    record = json.loads((tmp_path / "emergency" / "incident.json").read_text())
    assert sorted(i["name"] for i in record["services"][f"compose:{project}/backend"]["running"]) == running
    assert record["services"][f"compose:{project}/backend"]["count"] == 3

    again = ws.play("emergency-shutdown.yml", confirm=True, shutdown_scope="incident")
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    assert json.loads((tmp_path / "emergency" / "incident.json").read_text()) == record, "the first record wins"

    resume = ws.play("emergency-resume.yml", confirm=True, shutdown_scope="incident")
    assert resume.rc == 0 and resume.changed > 0, resume.output[-3000:]
    assert dockerd.running(project, "backend") == running  # the same containers, the same count
    assert state(dockerd, single.name)["Running"] and not state(dockerd, names[0])["Running"]
    assert not (tmp_path / "emergency" / "incident.json").exists()
    second = ws.play("emergency-resume.yml", confirm=True, shutdown_scope="incident")
    assert second.rc == 0 and second.changed == 0, second.output[-3000:]
    assert [(r["procedure"], r["result"]) for r in ws.audit()] == [
        ("emergency-shutdown", "acted"), ("emergency-shutdown", "unchanged"),
        ("emergency-resume", "acted"), ("emergency-resume", "unchanged")]


def started(dockerd: DockerDaemon, name: str) -> datetime.datetime:
    stamp = state(dockerd, name)["StartedAt"]  # RFC 3339 with nanoseconds
    return datetime.datetime.fromisoformat(stamp[:26] + "+00:00" if stamp.endswith("Z") else stamp)


def test_a_rolling_restart_goes_one_container_at_a_time_and_stops_at_an_unhealthy_one(tmp_path, dockerd, backend):
    project, containers = backend(3)
    names = [c.name for c in containers]
    ws = AppWorkspace(tmp_path, dockerd, [], app_services=[
        {"type": "compose", "project": project, "service": "backend"}, "chat-worker.service"])
    first = {name: started(dockerd, name) for name in names}

    plan = ws.play("restart-app.yml", check=True, service="backend")
    assert plan.rc == 0 and plan.says(f"restarted container {names[2]} (compose:{project}/backend)"), plan.output
    refused = ws.play("restart-app.yml", service="backend")
    assert refused.rc != 0 and refused.says("Not confirmed, nothing was changed"), refused.output[-3000:]
    assert {name: started(dockerd, name) for name in names} == first

    run = ws.play("restart-app.yml", service=f"{project}/backend", confirm=True)
    assert run.rc == 0, run.output[-3000:]
    second = {name: started(dockerd, name) for name in names}
    assert all(second[name] > first[name] for name in names)
    # One at a time: each started once the one before had been healthy and running for the settle time (2 s).
    assert second[names[1]] - second[names[0]] >= datetime.timedelta(seconds=2)
    assert second[names[2]] - second[names[1]] >= datetime.timedelta(seconds=2)
    assert dockerd.running(project, "backend") == sorted(names)
    healthy = ws.play("restart-app.yml", check=True, service="backend", verify=True)  # the restart_app DAG's verify
    assert healthy.rc == 0 and healthy.changed == 0, healthy.output[-3000:]
    assert {name: started(dockerd, name) for name in names} == second, "the check restarted something"

    containers[1].exec_run(["touch", "/fail-on-start"])  # its next start comes up unhealthy
    broken = ws.play("restart-app.yml", service="backend", confirm=True)
    assert broken.rc != 0 and broken.says(f"{names[1]} is not healthy after its restart"), broken.output[-3000:]
    service = f"compose:{project}/backend"
    assert broken.says(f"Changed before the failure and still in place: container {names[0]} ({service}) restarted; "
                       f"container {names[1]} ({service}) restarted."), broken.output[-3000:]
    assert started(dockerd, names[0]) > second[names[0]] and started(dockerd, names[1]) > second[names[1]]
    assert started(dockerd, names[2]) == second[names[2]], "the one after the unhealthy one was restarted"
    sick = ws.play("restart-app.yml", check=True, service="backend", verify=True)
    assert sick.rc != 0 and sick.says(f"container {names[1]} (compose:{project}/backend) is unhealthy"), sick.output
    assert [(r["result"], r.get("unhealthy")) for r in ws.audit()] == [
        ("refused", None), ("restarted", None), ("failed", names[1])]

    now = {name: started(dockerd, name) for name in names}
    for name in ("frontend", "back;rm -rf /"):
        unknown = ws.play("restart-app.yml", service=name, confirm=True)
        assert unknown.rc != 0 and unknown.says(f"No application service is named {name!r}"), unknown.output[-3000:]
    assert {name: started(dockerd, name) for name in names} == now


def test_a_procedure_with_no_host_to_act_on_fails_naming_the_groups_and_the_inventory(tmp_path):
    """An empty app group used to skip the play ("no hosts matched") and end green having restarted nothing."""
    ws = PlaybookWorkspace(tmp_path)
    ws.inventory.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {}}, "aws": {"hosts": {}}}}}))
    for playbook, extra, says in (
            ("restart-app.yml", {"service": "backend", "confirm": True},
             "restart-app acts on the hosts of group app, and the inventory"),
            ("emergency-shutdown.yml", {"shutdown_scope": "incident", "confirm": True},
             "emergency-shutdown acts on the hosts of groups aws or app, and the inventory")):
        run = ws.play(playbook, **extra)
        assert run.rc != 0 and run.says(says) and run.says(f"({ws.inventory}) has none there"), run.output[-3000:]
        assert run.says("Nothing was changed.") and "PLAY [Rolling restart" not in run.output
    assert not ws.audit_log.exists()


def test_a_sealed_restart_plan_restarts_the_containers_it_listed_and_refuses_when_they_differ(tmp_path, dockerd,
                                                                                               backend):
    """--check -e plan_out=FILE lists each host's containers by ID; -e plan=FILE restarts exactly those. A container
    of the plan that is no longer running refuses the apply with nothing restarted; running again, the same plan
    restarts both, with no service typed."""
    project, containers = backend(2)
    names = [c.name for c in containers]
    ws = AppWorkspace(tmp_path, dockerd, [],
                      app_services=[{"type": "compose", "project": project, "service": "backend"}])
    plan_file = tmp_path / "restart.json"
    made = ws.play("restart-app.yml", check=True, service="backend", plan_out=str(plan_file))
    assert made.rc == 0, made.output[-3000:]
    document = json.loads(plan_file.read_text())
    [host] = document["hosts"]
    assert sorted(c["id"] for c in document["resources"][host][0]["containers"]) == sorted(c.id for c in containers)

    containers[1].stop(timeout=1)
    first = started(dockerd, names[0])
    refused = ws.play("restart-app.yml", plan=str(plan_file), confirm=True)
    assert refused.rc != 0 and refused.says("no longer holds, so nothing was changed"), refused.output[-3000:]
    assert refused.says(names[1]), refused.output[-3000:]
    assert started(dockerd, names[0]) == first and not state(dockerd, names[1])["Running"]

    containers[1].start()
    before = {name: started(dockerd, name) for name in names}
    applied = ws.play("restart-app.yml", plan=str(plan_file), confirm=True)
    assert applied.rc == 0, applied.output[-3000:]
    assert all(started(dockerd, name) > before[name] for name in names)
    assert [r["result"] for r in ws.audit()] == ["restarted"]


def test_docker_log_options_never_restart_dockerd_unless_asked_and_never_without_live_restore(tmp_path, dockerd):
    ws = PlaybookWorkspace(tmp_path)
    daemon_json = tmp_path / "docker" / "daemon.json"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "runbook_audit_log": str(ws.audit_log), "logrotate_config_dir": str(tmp_path / "logrotate.d"),
            "logrotate_state_file": str(tmp_path / "logrotate.status"), "logrotate_docker_manage": True,
            "logrotate_docker_daemon_json": str(daemon_json), "logrotate_docker_host": dockerd.host,
            "logrotate_docker_restart_command": ["false"]}  # it must never run here
    ws.inventory.write_text(yaml.safe_dump({"all": {"children": {"log_hosts": {"hosts": {"logs": host}}}}}))
    pid = dockerd.daemon.pid()

    # Asked to restart, confirmed: refused before daemon.json changes, since live-restore is off on this daemon.
    asked = ws.play("rotate-logs.yml", logrotate_docker_restart=True, confirm=True)
    assert asked.rc != 0 and asked.says("live-restore is off on the Docker daemon"), asked.output[-3000:]
    assert not daemon_json.exists()
    unconfirmed = ws.play("rotate-logs.yml", logrotate_docker_restart=True)
    assert unconfirmed.rc != 0 and unconfirmed.says("run again with -e confirm=true"), unconfirmed.output[-3000:]

    # By default: daemon.json gets the options, dockerd keeps running, and the run says what that reaches.
    run = ws.play("rotate-logs.yml")
    assert run.rc == 0 and run.says("was not restarted"), run.output[-3000:]
    assert run.says("a running container keeps the log options it was created with until it is recreated")
    assert json.loads(daemon_json.read_text())["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert dockerd.daemon.pid() == pid
    dockerd.client.ping()
