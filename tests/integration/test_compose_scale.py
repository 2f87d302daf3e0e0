"""Compose replicas through scale.yml and scale-undo.yml, against a Docker daemon of the tests' own (docker_world):
`docker compose up -d --scale backend=3` without the compose file (new containers cloned from the running one,
named and labelled as compose does, each healthy), a plan that changes nothing, a second run that changes nothing,
an undo that leaves exactly the original container, and bad input refused before any change."""

from __future__ import annotations

import sys
import uuid

import pytest
import yaml
from conftest import PlaybookWorkspace
from docker_world import IMAGE, NUMBER_LABEL, PROJECT_LABEL, SERVICE_LABEL, DockerDaemon

SCALE, UNDO = "scale.yml", "scale-undo.yml"


@pytest.fixture
def project(dockerd):
    """A compose project with one healthy backend container and one container of another service; removed after
    the test (their health checks cost CPU while they run)."""
    name = f"chat{uuid.uuid4().hex[:6]}"
    dockerd.wait_healthy(dockerd.compose_service(name, "backend", 1))
    dockerd.compose_service(name, "cache", 1, healthcheck=False)
    yield name
    dockerd.remove_project(name)


class ScaleWorkspace(PlaybookWorkspace):
    """An inventory with one `app` host (this machine, its Docker daemon the tests' own) and scale targets."""

    def __init__(self, base, dockerd: DockerDaemon, targets: dict):
        super().__init__(base)
        self.records = base / "scale"
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "app_docker_host": dockerd.host, "runbook_audit_log": str(self.audit_log),
                "scale_compose_state_dir": str(self.records), "scale_targets_inventory": targets}
        self.inventory.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"apphost": host}}}}}))
        self.inventory.chmod(0o600)


def ps(dockerd: DockerDaemon, project: str, service: str = "backend") -> list[dict]:
    """The service's containers as `docker ps -a --filter label=...` shows them, by name."""
    found = dockerd.client.containers.list(all=True, filters={"label": [f"{PROJECT_LABEL}={project}",
                                                                        f"{SERVICE_LABEL}={service}"]})
    return sorted(({"name": c.name, "id": c.id, "status": c.status, "image": c.attrs["Config"]["Image"],
                    "command": c.attrs["Config"]["Cmd"], "started_at": c.attrs["State"]["StartedAt"],
                    "health": c.attrs["State"].get("Health", {}).get("Status"),
                    "healthcheck": c.attrs["Config"].get("Healthcheck"),
                    "labels": {k: v for k, v in c.labels.items() if k.startswith("com.docker.compose.")}}
                   for c in found), key=lambda c: c["name"])


def test_compose_scale_to_three_then_undo_back_to_the_original_one(tmp_path, dockerd, project):
    ws = ScaleWorkspace(tmp_path, dockerd, {"backend": {"compose_services": [{"project": project,
                                                                              "service": "backend"}]}})
    [original] = before = ps(dockerd, project)
    cache = ps(dockerd, project, "cache")
    new = [f"{project}_backend_2", f"{project}_backend_3"]

    plan = ws.play(SCALE, check=True, scale_target="backend", compose_replicas=3)
    assert plan.rc == 0 and plan.says(f"1 container(s), 1 running -> 3 container(s), 3 running (create "
                                      f"{new[0]}, {new[1]})"), plan.output[-3000:]
    refused = ws.play(SCALE, scale_target="backend", compose_replicas=3)
    assert refused.rc != 0 and refused.says("Not confirmed: nothing was changed"), refused.output[-3000:]
    assert ps(dockerd, project) == before and not ws.records.exists()

    # Through a sealed plan: made, then the service's containers change (one stopped by hand): refused, nothing
    # created; running again as planned, the same plan scales.
    plan_file = tmp_path / "scale.json"
    assert ws.play(SCALE, check=True, scale_target="backend", compose_replicas=3, plan_out=str(plan_file)).rc == 0
    dockerd.client.containers.get(original["name"]).stop(timeout=1)
    moved = ws.play(SCALE, plan=str(plan_file), confirm=True)
    assert moved.rc != 0 and moved.says("no longer holds, so nothing was changed"), moved.output[-3000:]
    assert [c["name"] for c in ps(dockerd, project)] == [original["name"]] and not ws.records.exists()
    restarted = dockerd.client.containers.get(original["name"])
    restarted.start()
    dockerd.wait_healthy([restarted])
    [original] = before = ps(dockerd, project)

    scaled = ws.play(SCALE, plan=str(plan_file), confirm=True)
    assert scaled.rc == 0 and scaled.changed > 0, scaled.output[-3000:]
    after = ps(dockerd, project)
    assert [c["name"] for c in after] == [original["name"], *new]
    assert after[0] == original  # the original one is left as it was
    for number, container in enumerate(after, start=1):
        assert container["status"] == "running" and container["health"] == "healthy", container
        assert container["labels"] == {**original["labels"], NUMBER_LABEL: str(number)}
        assert (container["image"], container["command"], container["healthcheck"]) == (
            IMAGE, original["command"], original["healthcheck"])
    assert ps(dockerd, project, "cache") == cache  # another service of the project: never touched

    again = ws.play(SCALE, confirm=True, scale_target="backend", compose_replicas=3)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]

    undo_plan = ws.play(UNDO, check=True, scale_target="backend")
    assert undo_plan.rc == 0 and undo_plan.says(f"(remove {new[1]}, {new[0]})"), undo_plan.output[-3000:]
    assert ps(dockerd, project) == after

    undo = ws.play(UNDO, confirm=True, scale_target="backend")
    assert undo.rc == 0 and undo.changed > 0, undo.output[-3000:]
    assert ps(dockerd, project) == before  # the same container, never restarted
    assert ps(dockerd, project, "cache") == cache
    assert not list(ws.records.iterdir()), "the record was left behind"
    second = ws.play(UNDO, confirm=True, scale_target="backend")
    assert second.rc == 0 and second.changed == 0, second.output[-3000:]
    assert [(r["procedure"], r["result"]) for r in ws.audit()] == [
        ("scale", "acted"), ("scale", "unchanged"), ("scale-undo", "acted"), ("scale-undo", "unchanged")]


def test_bad_input_is_refused_before_any_change(tmp_path, dockerd, project):
    backend = {"project": project, "service": "backend"}
    ws = ScaleWorkspace(tmp_path, dockerd, {"backend": {"compose_services": [backend]},
                                            "typo": {"compose_services": [{**backend, "service": "backnd"}]}})
    before = ps(dockerd, project)
    for target, replicas, says in (
        ("backend", -1, "replicas=-1 is negative: give 0 or more"),
        ("backend", "three", "scale_compose_replicas"),
        ("typo", 3, f"compose:{project}/backnd: no container has the labels {PROJECT_LABEL}={project} and "
                    f"{SERVICE_LABEL}=backnd"),
    ):
        run = ws.play(SCALE, confirm=True, scale_target=target, compose_replicas=replicas)
        assert run.rc != 0 and run.says(says), (target, replicas, run.output[-3000:])
        assert ps(dockerd, project) == before
    assert not ws.records.exists(), "a refused run left a record"
