# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application side of a procedure: one typed list of services (systemd units, docker compose services,
single containers), stopped with a record of exactly what was running, started back from that record, and
restarted one container at a time with a health check between steps; and a compose service scaled to N
containers, with a record of which containers there were, so an undo puts back exactly those.

Docker is driven through its API (the docker SDK). A compose service is found by the labels compose v1 and v2
both set (com.docker.compose.project / com.docker.compose.service), so no compose file is needed. Scaling follows
`docker compose up --scale`: stopped containers count and are started first, new ones are cloned from an existing
container of the service (its API config: image, command, env, labels, health check, mounts, networks, restart
policy) with the next container number, and a scale-down removes the highest numbers. The decisions
(`plan_scale`, `plan_unscale`, `clone_config`) are pure functions over what the daemon reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ansible.module_utils.urls import open_url

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    isoformat,
    utc_now,
    write_json_atomic,
)
from ansible_collections.runbook.recovery.plugins.module_utils.journal import crash_point
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import record as say_changed

try:
    import docker
    from docker.errors import DockerException, NotFound
except ImportError:  # pragma: no cover - reported by Docker.client
    docker = None
    DockerException = NotFound = Exception

TYPES = ("systemd", "compose", "container")
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
RECORD_VERSION = 1


@dataclass(frozen=True)
class Service:
    """One entry of the list: {type: systemd, name}, {type: compose, project, service} or {type: container, name}."""

    type: str
    name: str = ""
    project: str = ""
    service: str = ""

    @property
    def key(self) -> str:
        if self.type == "compose":
            return f"compose:{self.project}/{self.service}"
        return f"{self.type}:{self.name}"

    @property
    def is_docker(self) -> bool:
        return self.type in ("compose", "container")


def parse_services(raw: list) -> list[Service]:
    """The inventory's list, checked: a plain string is a systemd unit (older inventories), a dict names its
    type. Every problem is reported at once, before anything is touched."""
    services, problems = [], []
    for index, item in enumerate(raw or []):
        where = f"app service #{index + 1}"
        if isinstance(item, str):
            item = {"type": "systemd", "name": item}
        if not isinstance(item, dict):
            problems.append(f"{where} is {item!r}: give a unit name or a dict with a type")
            continue
        kind = item.get("type")
        if kind not in TYPES:
            problems.append(f"{where} has type {kind!r}: the types are {', '.join(TYPES)}")
            continue
        needed = ("project", "service") if kind == "compose" else ("name",)
        missing = [key for key in needed if not str(item.get(key) or "").strip()]
        unknown = sorted(set(item) - {"type", *needed})
        if missing:
            problems.append(f"{where} ({kind}) lacks {', '.join(missing)}")
        elif unknown:
            problems.append(f"{where} ({kind}) has unknown keys {', '.join(unknown)}; a {kind} entry takes "
                            f"{', '.join(('type', *needed))}")
        else:
            services.append(Service(kind, **{key: str(item[key]).strip() for key in needed}))
    keys = [s.key for s in services]
    problems += [f"{key} is listed twice" for key in sorted({k for k in keys if keys.count(k) > 1})]
    if problems:
        raise RunbookError("The application services are not understood: " + "; ".join(problems) + ". Fix "
                           "the list in the inventory, for example [{type: compose, project: chat, service: "
                           "backend}, {type: systemd, name: chat-worker.service}].")
    return services


def select(services: list[Service], wanted: str) -> list[Service]:
    """The services `wanted` names: a compose service by its service name or project/service, a container or a
    systemd unit by its name (a unit also without .service). Naming nothing is refused, listing what there is."""
    if not wanted:
        return services

    def names(service: Service) -> set[str]:
        if service.type == "compose":
            return {service.service, f"{service.project}/{service.service}"}
        return {service.name, service.name.removesuffix(".service")}
    chosen = [s for s in services if wanted in names(s)]
    if not chosen:
        known = ", ".join(s.key for s in services) or "none (app_services is empty)"
        raise RunbookError(f"No application service is named {wanted!r} on this host: nothing was changed. Its "
                           f"services are {known}; name one by its service name, project/service, container or "
                           "unit name.")
    return chosen


# -- docker --------------------------------------------------------------------------------------------------
class Docker:
    """The containers of the listed docker services, through the API of `host` (DOCKER_HOST style URL)."""

    def __init__(self, host: str, timeout: int = 60):
        self.host, self.timeout = host, timeout
        self._client = None

    @property
    def client(self):
        if self._client is None:
            if docker is None:
                raise RunbookError("The Python package 'docker' (the Docker SDK) is needed on this host for "
                                   "compose and container services: pip install docker.")
            try:
                self._client = docker.DockerClient(base_url=self.host, timeout=self.timeout)
                self._client.ping()
            except DockerException as exc:
                raise RunbookError(f"Cannot reach the Docker daemon at {self.host}: {exc}. Check that docker "
                                   "runs and that docker_host names its socket.") from exc
        return self._client

    def containers(self, service: Service) -> list:
        """The service's containers, running or not, ordered by compose's container number then name."""
        try:
            if service.type == "container":
                try:
                    return [self.client.containers.get(service.name)]
                except NotFound:
                    return []
            found = self.client.containers.list(all=True, filters={"label": [
                f"{PROJECT_LABEL}={service.project}", f"{SERVICE_LABEL}={service.service}"]})
        except RunbookError:
            raise
        except DockerException as exc:
            raise RunbookError(f"Listing the containers of {service.key} failed: {exc}") from exc
        return sorted(found, key=container_order)

    def get(self, ident: str):
        try:
            return self.client.containers.get(ident)
        except NotFound:
            return None

    def clone_image(self, template) -> str:
        """The image `template` runs: by its name while the name still points at that image, else by its id (the
        tag moved since): a new container runs the same version as the others."""
        name, image_id = (template.attrs.get("Config") or {}).get("Image") or "", template.attrs.get("Image") or ""
        try:
            same = bool(name) and self.client.images.get(name).id == image_id
        except DockerException:
            same = False
        return name if same else image_id

    def clone(self, template, replica: Replica, image: str):
        """A new container of `template`'s service, named and numbered as `replica`, started if replica.running."""
        body, more_networks = clone_config(template.attrs, replica.number, image)
        made = self.client.api.create_container_from_config(body, replica.name)
        for network, endpoint in more_networks.items():
            self.client.api.connect_container_to_network(made["Id"], network, aliases=endpoint.get("Aliases"),
                                                         driver_opt=endpoint.get("DriverOpts"))
        container = self.client.containers.get(made["Id"])
        if replica.running:
            container.start()
        return container


def container_order(container) -> tuple:
    number = (container.labels or {}).get(NUMBER_LABEL, "")
    return (int(number) if number.isdigit() else 1 << 30, container.name)


def is_running(container) -> bool:
    return container.attrs.get("State", {}).get("Running", False)


def health_status(container) -> str | None:
    """Docker's health status ('starting', 'healthy', 'unhealthy'), or None without a health check."""
    health = container.attrs.get("State", {}).get("Health")
    return health.get("Status") if health else None


# -- systemd ---------------------------------------------------------------------------------------------------
def docker_failure(exc: Exception) -> str | None:
    """The message of a Docker error the code did not explain itself (for the outcome seam)."""
    if docker is not None and isinstance(exc, DockerException):
        return f"Docker failed: {' '.join(str(exc).split())}"
    return None


class Systemd:
    """systemctl, where systemd runs; a clear refusal where it does not (a container, a chroot)."""

    def systemctl(self, *args: str) -> subprocess.CompletedProcess:
        binary = shutil.which("systemctl")
        if binary is None or not os.path.isdir("/run/systemd/system"):
            raise RunbookError("systemd does not run on this host, so systemd units cannot be stopped or started "
                               "here: list the application as {type: compose, ...} or {type: container, ...}.")
        return subprocess.run([binary, *args], capture_output=True, text=True, check=False)

    def active(self, unit: str) -> bool:
        return self.systemctl("is-active", "--quiet", unit).returncode == 0

    def act(self, verb: str, unit: str) -> None:
        proc = self.systemctl(verb, unit)
        if proc.returncode != 0:
            raise RunbookError(f"systemctl {verb} {unit} failed: {(proc.stderr or proc.stdout).strip()}")
        say_changed(f"systemctl {verb} {unit} done")


# -- the record --------------------------------------------------------------------------------------------------
def read_record(path: str) -> dict | None:
    """The record of an earlier stop, or None. A record written before typed services (emergency shutdown's
    {"running": [unit, ...]}) is read as systemd units."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunbookError(f"The record of what was running, {path}, cannot be read ({exc}). Look at it: it "
                           "says which services to start. Remove it only if you start them yourself.") from exc
    if "services" not in data and isinstance(data.get("running"), list):
        data = {"version": RECORD_VERSION, "services": {f"systemd:{unit}": {"type": "systemd", "running": True}
                                                        for unit in data["running"]}}
    return data


def write_record(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    write_json_atomic(path, record)


@dataclass
class Outcome:
    changed: bool = False
    actions: list[str] = field(default_factory=list)
    services: list[dict] = field(default_factory=list)

    def did(self, text: str) -> None:
        self.changed = True
        self.actions.append(text)


class AppServices:
    """Stop, start from the record, and roll-restart a list of services; scale compose services and undo it."""

    def __init__(self, services: list[Service], record_path: str, docker_host: str, stop_timeout: int = 10,
                 check_mode: bool = False, systemd: Systemd | None = None):
        self.services, self.record_path = services, record_path
        self.docker = Docker(docker_host)
        self.systemd = systemd or Systemd()
        self.stop_timeout, self.check_mode = stop_timeout, check_mode

    # what runs now
    def snapshot(self) -> dict:
        """{key: {"type", "running": [{id, name}] | bool}} for every listed service, as it is now."""
        state = {}
        for service in self.services:
            if service.is_docker:
                containers = self.docker.containers(service)
                if service.type == "compose" and not containers:
                    raise self._no_container(service)
                if service.type == "container" and not containers:
                    raise RunbookError(f"{service.key}: there is no container named {service.name} on "
                                       f"{self.docker.host}. Check the name (docker ps -a).")
                state[service.key] = {"type": service.type, "count": len(containers), "running": [
                    {"id": c.id, "name": c.name} for c in containers if is_running(c)]}
            else:
                state[service.key] = {"type": "systemd", "running": self.systemd.active(service.name)}
        return state

    def health(self) -> tuple[list[dict], list[str]]:
        """Each service as it runs now (its containers with Docker's health status, or whether its unit is
        active), and what is wrong: a service with nothing running, a running container that is not healthy.
        A stopped container beside running ones (kept by a scale to fewer) is listed, not a problem."""
        rows, problems = [], []
        for service in self.services:
            if not service.is_docker:
                active = self.systemd.active(service.name)
                rows.append({"service": service.key, "active": active})
                if not active:
                    problems.append(f"{service.name} is not active")
                continue
            containers = self.docker.containers(service)
            items = [{"name": c.name, "running": is_running(c), "health": health_status(c)} for c in containers]
            rows.append({"service": service.key, "containers": items})
            if not any(item["running"] for item in items):
                problems.append(f"{service.key} has no running container"
                                + (f" (stopped: {', '.join(i['name'] for i in items)})" if items else ""))
            problems += [f"container {item['name']} ({service.key}) is {item['health']}" for item in items
                         if item["running"] and item["health"] not in (None, "healthy")]
        return rows, problems

    def _no_container(self, service: Service, why: str = "") -> RunbookError:
        return RunbookError(f"{service.key}: no container has the labels {PROJECT_LABEL}={service.project} and "
                            f"{SERVICE_LABEL}={service.service} on {self.docker.host}{why}. Check the project and "
                            "service names (docker ps -a --format '{{.Labels}}').")

    def stop(self, by: str = "") -> tuple[Outcome, dict]:
        """Record what runs (unless an earlier stop's record exists: it holds what ran before that stop, which
        is what a start must bring back), then stop every listed service."""
        outcome = Outcome()
        earlier = read_record(self.record_path)
        now = self.snapshot()
        record = earlier or {"version": RECORD_VERSION, "taken_at": isoformat(utc_now()), "by": by,
                             "services": now}
        if earlier is None and not self.check_mode:
            write_record(self.record_path, record)
        for service in self.services:
            current = now[service.key]
            if service.is_docker:
                for item in current["running"]:
                    outcome.did(f"stopped container {item['name']} ({service.key})")
                if not self.check_mode:
                    # A service's containers stop side by side, as `docker compose stop` stops them: each may
                    # take up to stop_timeout to exit.
                    side_by_side(lambda item, s=service: self._stop_container(item["id"], s), current["running"])
            elif current["running"]:
                outcome.did(f"stopped {service.name}")
                if not self.check_mode:
                    self.systemd.act("stop", service.name)
            outcome.services.append({"service": service.key, "before": current})
        if not self.check_mode:
            crash_point("app-stopped")  # a test stops the whole run here: the record says what to start again
        return outcome, record

    def _stop_container(self, ident: str, service: Service) -> None:
        container = self.docker.get(ident)
        if container is None:
            return
        try:
            container.stop(timeout=self.stop_timeout)
        except DockerException as exc:
            raise RunbookError(f"Stopping container {container.name} ({service.key}) failed: {exc}. The record "
                               f"{self.record_path} says what was running.") from exc
        say_changed(f"container {container.name} ({service.key}) stopped")

    def start(self, health_url: str = "", health_timeout: float = 60,
              settle: float = 2) -> tuple[Outcome, dict | None]:
        """Start what the record says was running, then remove the record. Without a record, systemd units
        are started (what the playbooks did before records), and docker services are left as they are. Each one
        started must become healthy (see wait_healthy) before the run goes on: the application is back, not merely
        started."""
        health = (health_url, health_timeout, settle)
        outcome = Outcome()
        record = read_record(self.record_path)
        recorded = (record or {}).get("services", {})
        for service in self.services:
            entry = recorded.get(service.key)
            if service.is_docker:
                if entry is None:
                    outcome.services.append({"service": service.key, "note": "no record: left as it is"})
                    continue
                stopped = []
                for item in entry.get("running", []):
                    container = self.docker.get(item["id"]) or self.docker.get(item["name"])
                    if container is None:
                        raise RunbookError(f"Container {item['name']} ({service.key}) was running before the stop "
                                           "and no longer exists: recreate it (docker compose up -d), then run "
                                           f"again. The record {self.record_path} is kept.")
                    if not is_running(container):
                        outcome.did(f"started container {container.name} ({service.key})")
                        stopped.append(container)
                if not self.check_mode:
                    side_by_side(lambda container, s=service: self._start_container(container, s, health), stopped)
                outcome.services.append({"service": service.key, "started": [i["name"] for i in entry["running"]]})
            else:
                wanted = entry["running"] if entry is not None else True
                if wanted and not self.systemd.active(service.name):
                    outcome.did(f"started {service.name}")
                    if not self.check_mode:
                        self.systemd.act("start", service.name)
                        problem = wait_healthy(None, *health, unit_active=lambda s=service: self.systemd.active(s.name))
                        if problem:
                            raise self._not_back(service.name, problem)
                outcome.services.append({"service": service.key, "started": bool(wanted)})
        if record is not None and not self.check_mode:
            os.unlink(self.record_path)
            outcome.changed = True
            outcome.actions.append(f"removed the record {self.record_path}")
        return outcome, record

    def _start_container(self, container, service: Service, health: tuple) -> None:
        try:
            container.start()
        except DockerException as exc:
            raise RunbookError(f"Starting container {container.name} ({service.key}) failed: {exc}. The record "
                               f"{self.record_path} is kept: run again once it can start.") from exc
        say_changed(f"container {container.name} ({service.key}) started")
        problem = wait_healthy(container, *health)
        if problem:
            raise self._not_back(f"container {container.name} ({service.key})", problem)

    def _not_back(self, name: str, problem: str) -> RunbookError:
        return RunbookError(f"{name} was started and is not healthy: {problem}. Look at its logs (docker logs, "
                            f"journalctl); the record {self.record_path} is kept.", unhealthy=name)

    # rolling restart
    def restart(self, health_url: str = "", health_timeout: float = 60, settle: float = 2) -> Outcome:
        """One container (or unit) at a time: restart it, wait until it is healthy, go on. The first one that
        does not become healthy stops the run, and the failure names it and what was restarted before."""
        outcome = Outcome()
        now = self.snapshot()
        for service in self.services:
            done = len(outcome.actions)
            # What a sealed plan pins: each container by its ID (one recreated since is another container).
            row = {"service": service.key, "containers": [dict(item) for item in now[service.key]["running"]]
                   if service.is_docker else [], "restarted": []}
            if service.is_docker:
                running = now[service.key]["running"]
                if not running:
                    raise RunbookError(f"{service.key} has no running container to restart: start it first "
                                       "(emergency-resume.yml or docker start).")
                for item in running:
                    outcome.did(f"restarted container {item['name']} ({service.key})")
                    if self.check_mode:
                        continue
                    container = self.docker.get(item["id"])
                    try:
                        container.restart(timeout=self.stop_timeout)
                    except DockerException as exc:
                        raise self._unhealthy(outcome, item["name"], f"the restart failed: {exc}") from exc
                    say_changed(f"container {item['name']} ({service.key}) restarted")
                    problem = wait_healthy(container, health_url, health_timeout, settle)
                    if problem:
                        raise self._unhealthy(outcome, item["name"], problem)
            else:
                outcome.did(f"restarted {service.name}")
                if self.check_mode:
                    continue
                self.systemd.act("restart", service.name)
                problem = wait_healthy(None, health_url, health_timeout, settle,
                                       unit_active=lambda s=service: self.systemd.active(s.name))
                if problem:
                    raise self._unhealthy(outcome, service.name, problem)
            row["restarted"] = outcome.actions[done:]
            outcome.services.append(row)
        return outcome

    @staticmethod
    def _unhealthy(outcome: Outcome, name: str, problem: str) -> RunbookError:
        return RunbookError(f"{name} is not healthy after its restart: {problem}. The rolling restart stopped "
                            "there: the ones after it were not touched.", restarted=outcome.actions[:-1],
                            unhealthy=name)

    # compose scaling
    def scale(self, replicas: int, by: str = "", health_url: str = "", health_timeout: float = 60,
              settle: float = 2) -> tuple[Outcome, dict | None]:
        """Each listed compose service to `replicas` running containers (compose's --scale; see plan_scale). Before
        the first change the containers there were are recorded (an earlier record is kept: it holds what was there
        before that scaling, which is what the undo must bring back). Every new or started container must become
        healthy."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise RunbookError(f"replicas={replicas!r} is not a number of containers: give a whole number, 0 or more "
                               "(for example -e compose_replicas=3). Nothing was changed.")
        steps = []
        for service in self._compose_only():
            containers = self.docker.containers(service)
            if not containers:
                raise self._no_container(service, ", so there is no container to clone: start the service once "
                                                  "(docker compose up -d) before scaling it. Nothing was changed")
            template = clone_template(containers)
            current = [Replica.of(c) for c in containers]
            plan = plan_scale(service.key, current, replicas,
                              lambda number, t=template, s=service: replica_name(s.project, s.service, number, t.name))
            steps.append((service, plan, template))
        return self._converge(steps, "scale", by, health_url, health_timeout, settle)

    def unscale(self, health_url: str = "", health_timeout: float = 60, settle: float = 2) -> tuple[Outcome,
                                                                                                    dict | None]:
        """Back to exactly the containers the record holds (see plan_unscale), then remove the record. Without a
        record there is nothing to undo."""
        record = read_record(self.record_path)
        if record is None:
            return Outcome(services=[{"service": s.key, "note": "no record of a scaling: nothing to undo"}
                                     for s in self.services]), None
        steps = []
        for key, entry in sorted(record.get("services", {}).items()):
            if entry.get("type") != "compose" or not isinstance(entry.get("containers"), list):
                raise RunbookError(f"The record {self.record_path} holds {key}, which is not a compose scaling: it "
                                   "was not written by a scaling. Look at it; nothing was changed.")
            service = Service("compose", project=entry["project"], service=entry["service"])
            containers = self.docker.containers(service)
            recorded = [Replica.from_dict(item) for item in entry["containers"]]
            plan = plan_unscale(key, [Replica.of(c) for c in containers], recorded)
            if plan.create and not containers:
                raise self._no_container(service, f", so the recorded containers "
                                                  f"{', '.join(r.name for r in plan.create)} cannot be cloned "
                                                  "again: bring the service up (docker compose up -d) and run the "
                                                  f"undo again. Nothing was changed; the record {self.record_path} "
                                                  "is kept")
            steps.append((service, plan, clone_template(containers) if containers else None))
        outcome = self._converge(steps, "undo", "", health_url, health_timeout, settle)[0]
        if not self.check_mode:
            os.unlink(self.record_path)
        outcome.did(f"removed the record {self.record_path}")
        return outcome, record

    def _compose_only(self) -> list[Service]:
        others = [s.key for s in self.services if s.type != "compose"]
        if others:
            raise RunbookError(f"Only compose services have replicas; {', '.join(others)} cannot be scaled. List "
                               "compose services only ({project, service}). Nothing was changed.")
        return self.services

    def _converge(self, steps: list, action: str, by: str, health_url: str, health_timeout: float,
                  settle: float) -> tuple[Outcome, dict | None]:
        """Check every plan (nothing changes if one is refused), record what there was, then act: start and create
        first and wait until they are healthy, then stop and remove, so the service never runs fewer containers
        than it will have at the end."""
        for service, plan, template in steps:
            if plan.create:
                self._check_clonable(service, plan, template)
        record = self._record_before(steps, by) if action == "scale" else None
        outcome = Outcome()
        for service, plan, template in steps:
            done = len(outcome.actions)
            self._act(outcome, service, plan, template, health_url, health_timeout, settle)
            outcome.services.append({"service": service.key, "changed": plan.changes,
                                     "before": replica_summary(plan.before), "after": replica_summary(plan.after),
                                     "line": plan.line(action), "actions": outcome.actions[done:]})
        return outcome, record

    def _check_clonable(self, service: Service, plan: ScalePlan, template) -> None:
        if template is None or replica_name(service.project, service.service, 1, template.name) is None:
            raise RunbookError(f"{service.key}: its container is named {template.name if template else '?'}, not "
                               f"{service.project}_{service.service}_N or {service.project}-{service.service}-N (a "
                               "container_name in the compose file), and Docker needs a name of its own for each "
                               "container; compose refuses to scale such a service too. Remove container_name, "
                               "recreate the service, then scale. Nothing was changed.")
        ports = fixed_host_ports(template.attrs.get("HostConfig") or {})
        if ports:
            raise RunbookError(f"{service.key}: its container {template.name} publishes host port(s) "
                               f"{', '.join(ports)}, which one container only can hold, so a new container of it "
                               "could not start. Publish a port range (8000-8010:8080) or no host port (behind a "
                               "proxy), then scale. Nothing was changed.")
        taken = [r.name for r in plan.create if self.docker.get(r.name) is not None]
        if taken:
            raise RunbookError(f"{service.key}: a container named {', '.join(taken)} exists and is not one of this "
                               "service's (its compose labels differ). Rename or remove it, then scale. Nothing "
                               "was changed.")

    def _record_before(self, steps: list, by: str) -> dict | None:
        """The containers there were before this scaling, for each service it changes; an earlier record's entries
        win (they hold what was there before the first scaling)."""
        earlier = read_record(self.record_path)
        record = earlier or {"version": RECORD_VERSION, "taken_at": isoformat(utc_now()), "by": by, "services": {}}
        added = {plan.service: {"type": "compose", "project": service.project, "service": service.service,
                                "containers": [r.as_dict() for r in plan.before]}
                 for service, plan, _template in steps if plan.changes and plan.service not in record["services"]}
        if not added:
            return earlier
        record = {**record, "services": {**record["services"], **added}}
        if not self.check_mode:
            write_record(self.record_path, record)
        return record

    def _act(self, outcome: Outcome, service: Service, plan: ScalePlan, template, health_url: str,
             health_timeout: float, settle: float) -> None:
        key = service.key
        started = []
        for replica in plan.start:
            container = self.docker.get(replica.id) or self.docker.get(replica.name)
            self._step(outcome, f"started container {replica.name} ({key})", lambda c=container: c.start())
            started.append(container)
        image = self.docker.clone_image(template) if plan.create else ""
        for replica in plan.create:
            verb = "created and started" if replica.running else "created"
            made = []
            self._step(outcome, f"{verb} container {replica.name} ({key})",
                       lambda r=replica, into=made: into.append(self.docker.clone(template, r, image)))
            if made and replica.running:
                started.append(made[0])
        for container in [] if self.check_mode else started:
            problem = wait_healthy(container, health_url, health_timeout, settle)
            if problem:
                raise RunbookError(f"{container.name} ({key}) is not healthy: {problem}. {self._undo_hint()}",
                                   actions=outcome.actions, unhealthy=container.name)
        for replica in plan.stop:
            container = self.docker.get(replica.id)
            if container is None:
                continue
            self._step(outcome, f"stopped container {replica.name} ({key})",
                       lambda c=container: c.stop(timeout=self.stop_timeout))
        for replica in plan.remove:
            container = self.docker.get(replica.id)
            if container is None:
                continue
            # Its anonymous volumes are kept, as docker compose keeps them: nothing of its data is lost.
            self._step(outcome, f"stopped and removed container {replica.name} ({key})",
                       lambda c=container: (c.stop(timeout=self.stop_timeout), c.remove()))

    def _step(self, outcome: Outcome, text: str, action) -> None:
        """`action` (unless in check mode), then `text` ("stopped container x (compose:p/s)") joins the actions;
        a Docker error says what was done before it."""
        if not self.check_mode:
            try:
                action()
            except DockerException as exc:
                raise RunbookError(f"Failed: {text.split(' (')[0]}, as planned ({exc}). {self._undo_hint()}",
                                   actions=outcome.actions) from exc
            say_changed(text)
        outcome.did(text)

    def _undo_hint(self) -> str:
        return (f"The record {self.record_path} holds the containers there were before the scaling: the undo "
                "(playbooks/scale-undo.yml) puts them back.")


def side_by_side(action, items: list) -> None:
    """action(item) for every item at once (a thread each, up to 16); the first error is raised once all ended."""
    if len(items) <= 1:
        for item in items:
            action(item)
        return
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        futures = [pool.submit(action, item) for item in items]
    for future in futures:
        future.result()


def wait_healthy(container, health_url: str, timeout: float, settle: float, unit_active=None) -> str:
    """'' once healthy, else what is wrong. Healthy: Docker's health check says healthy (when the container has
    one), the container keeps running for `settle` seconds, and `health_url` (when given) answers 2xx/3xx."""
    deadline = time.monotonic() + timeout
    running_since = None
    problem = "it never became healthy"
    while True:
        if container is not None:
            container.reload()
            status = health_status(container)
            if not is_running(container):
                exit_code = container.attrs.get("State", {}).get("ExitCode")
                return f"the container exited (exit code {exit_code})"
            if status == "unhealthy":
                log = (container.attrs["State"]["Health"].get("Log") or [{}])[-1].get("Output", "").strip()
                return f"Docker's health check says unhealthy ({log[-200:] or 'no output'})"
            ready = status in (None, "healthy")
            problem = f"Docker's health status is still {status}" if not ready else problem
        else:
            ready = unit_active()
            problem = "the unit is not active" if not ready else problem
        if ready:
            running_since = running_since or time.monotonic()
            if health_url:
                url_problem = probe(health_url)
                ready, problem = not url_problem, url_problem or problem
            if ready and time.monotonic() - running_since >= settle:
                return ""
        else:
            running_since = None
        if time.monotonic() >= deadline:
            return f"{problem} after {timeout:g} s"
        time.sleep(0.5)


def probe(url: str) -> str:
    try:
        # As urllib's urlopen: no credentials from ~/.netrc; HTTP error statuses raise HTTPError.
        with open_url(url, timeout=5, use_netrc=False) as response:
            return "" if response.status < 400 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url} did not answer ({exc})"


# -- compose scaling: the decisions ----------------------------------------------------------------------------------
# Set by compose v2 on a container that replaced another; a clone replaces nothing.
REPLACE_LABEL = "com.docker.compose.replace"


@dataclass(frozen=True)
class Replica:
    """One container of a compose service, as a scaling sees (and records) it."""

    name: str
    number: int | None
    running: bool
    id: str = ""

    @classmethod
    def of(cls, container) -> Replica:
        number = (container.labels or {}).get(NUMBER_LABEL, "")
        return cls(container.name, int(number) if number.isdigit() else None, is_running(container), container.id)

    @classmethod
    def from_dict(cls, item: dict) -> Replica:
        return cls(str(item["name"]), item.get("number"), bool(item.get("running")), str(item.get("id") or ""))

    def as_dict(self) -> dict:
        return {"name": self.name, "number": self.number, "running": self.running, "id": self.id}


def replica_order(replica: Replica) -> tuple:
    return (replica.number is None, replica.number or 0, replica.name)


@dataclass
class ScalePlan:
    """What a scaling, or its undo, does to one compose service's containers."""

    service: str
    before: list[Replica]
    start: list[Replica] = field(default_factory=list)
    create: list[Replica] = field(default_factory=list)  # started once made when `running`
    stop: list[Replica] = field(default_factory=list)
    remove: list[Replica] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.start or self.create or self.stop or self.remove)

    @property
    def after(self) -> list[Replica]:
        removed = {r.name for r in self.remove}
        started, stopped = {r.name for r in self.start}, {r.name for r in self.stop}
        kept = [Replica(r.name, r.number, (r.running or r.name in started) and r.name not in stopped, r.id)
                for r in self.before if r.name not in removed]
        return sorted(kept + self.create, key=replica_order)

    def line(self, action: str) -> str:
        """The plan as a person reads it: 'scale compose service chat/backend: 1 container(s), 1 running -> 3
        container(s), 3 running (create chat_backend_2, chat_backend_3)'."""
        def counted(replicas: list[Replica]) -> str:
            return f"{len(replicas)} container(s), {sum(r.running for r in replicas)} running"
        text = f"{action if self.changes else 'unchanged':<9} compose service {self.service.removeprefix('compose:')}: "
        if not self.changes:
            return text + counted(self.before)
        steps = [f"{verb} " + ", ".join(r.name + ("" if r.running or verb != "create" else " (stopped)")
                                        for r in replicas)
                 for verb, replicas in (("start", self.start), ("create", self.create), ("stop", self.stop),
                                        ("remove", self.remove)) if replicas]
        return f"{text}{counted(self.before)} -> {counted(self.after)} ({'; '.join(steps)})"


def replica_summary(replicas: list[Replica]) -> dict:
    return {"containers": len(replicas), "running": [r.name for r in replicas if r.running],
            "stopped": [r.name for r in replicas if not r.running]}


def plan_scale(service: str, current: list[Replica], replicas: int, name_for) -> ScalePlan:
    """compose's --scale over `current` (in container-number order): stopped containers count; the lowest-numbered
    `replicas` are kept and those stopped among them started; the rest are stopped and removed, highest numbers
    first; the ones missing are made with the numbers after the highest (`name_for(number)` names them). At 0 the
    lowest-numbered container is kept, stopped, so a later scale-up or the undo has one to clone (compose would
    remove it)."""
    keep = current[:max(replicas, 1)]
    plan = ScalePlan(service, list(current), remove=list(reversed(current[len(keep):])))
    if replicas == 0:
        plan.stop = [r for r in keep if r.running]
    else:
        plan.start = [r for r in keep if not r.running]
    first = max((r.number for r in current if r.number is not None), default=0) + 1
    plan.create = [Replica(name_for(n), n, True) for n in range(first, first + replicas - len(keep))]
    return plan


def plan_unscale(service: str, current: list[Replica], recorded: list[Replica]) -> ScalePlan:
    """Back to exactly the recorded containers, matched by name: the ones the scaling made are stopped and removed,
    recorded ones it removed are made again with their name and number, and each gets its recorded running state
    (a container the scaling started is stopped again)."""
    now = {r.name: r for r in current}
    wanted = {r.name for r in recorded}
    return ScalePlan(
        service, list(current),
        start=[now[r.name] for r in recorded if r.name in now and r.running and not now[r.name].running],
        create=sorted((r for r in recorded if r.name not in now), key=replica_order),
        stop=[now[r.name] for r in recorded if r.name in now and not r.running and now[r.name].running],
        remove=[r for r in reversed(current) if r.name not in wanted])


def replica_name(project: str, service: str, number: int, like: str) -> str | None:
    """The name compose gives container `number`, in the style of the service's existing container `like`: v2's
    project-service-N or v1's project_service_N. None when it has a name of its own (a container_name), which
    compose cannot scale either."""
    for sep in ("_", "-"):
        prefix = f"{project}{sep}{service}{sep}"
        if like.startswith(prefix) and like[len(prefix):].isdigit():
            return f"{prefix}{number}"
    return None


def clone_template(containers: list):
    """The container new ones are cloned from: the lowest-numbered running one, else the lowest-numbered."""
    return next((c for c in containers if is_running(c)), containers[0])


def fixed_host_ports(host_config: dict) -> list[str]:
    """The ports published on one fixed host port ('8080->80/tcp', as docker ps shows them), which a second
    container could not bind; a range ('8000-8010') or a port Docker picks is fine."""
    fixed = []
    for port, bindings in sorted((host_config.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            host_port, host_ip = str(binding.get("HostPort") or ""), binding.get("HostIp") or ""
            if host_port and host_port != "0" and "-" not in host_port:
                address = f"[{host_ip}]:" if ":" in host_ip else f"{host_ip}:" if host_ip else ""
                fixed.append(f"{address}{host_port}->{port}")
    return fixed


# Never copied from the template: its own host name (the id's start, unless the service sets one), MAC address and
# container id file would clash; the image is chosen by Docker.clone_image.
_NOT_CLONED = frozenset({"Hostname", "Domainname", "MacAddress", "Image"})


def clone_config(attrs: dict, number: int, image: str) -> tuple[dict, dict]:
    """The Docker API body that creates container `number` of the service whose container `attrs` (its inspect)
    is, and the further networks to connect it to once made (the create call takes one): the same config (command,
    entrypoint, env, labels with the new container number, health check, user, working dir, exposed ports, anonymous
    volumes) and host config (binds, mounts, restart policy, network mode, resources, log options), and each
    network's aliases but the template's own name and id."""
    config = attrs.get("Config") or {}
    body = {key: value for key, value in config.items() if key not in _NOT_CLONED}
    if config.get("Hostname") and not str(attrs.get("Id", "")).startswith(config["Hostname"]):
        body.update(Hostname=config["Hostname"], Domainname=config.get("Domainname") or "")  # set by the service
    labels = {key: value for key, value in (config.get("Labels") or {}).items() if key != REPLACE_LABEL}
    body.update(Image=image, Labels={**labels, NUMBER_LABEL: str(number)})
    host_config = {key: value for key, value in (attrs.get("HostConfig") or {}).items() if key != "ContainerIDFile"}
    body["HostConfig"] = host_config
    own_names = {str(attrs.get("Name", "")).lstrip("/"), str(attrs.get("Id", ""))[:12]}
    mode = host_config.get("NetworkMode") or "default"
    endpoints = {}
    if mode not in ("host", "none") and not mode.startswith("container:"):
        for network, endpoint in ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items():
            aliases = [alias for alias in (endpoint or {}).get("Aliases") or [] if alias not in own_names]
            endpoints[network] = {"Aliases": aliases or None, "DriverOpts": (endpoint or {}).get("DriverOpts")}
    primary = mode if mode in endpoints else next(iter(endpoints), None)
    if primary is not None:
        body["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints.pop(primary)}}
    return body, endpoints
