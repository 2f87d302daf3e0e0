# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application side of a procedure: one typed list of services (systemd units, docker compose services,
single containers), stopped with a record of exactly what was running, started back from that record, and
restarted one container at a time with a health check between steps.

Docker is driven through its API (the docker SDK). A compose service is found by the labels compose v1 and v2
both set (com.docker.compose.project / com.docker.compose.service), so no compose file is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ansible_collections.runbook.recovery.plugins.module_utils.backups import write_json_atomic
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now

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
    """Stop, start from the record, and roll-restart a list of services."""

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
                    raise RunbookError(f"{service.key}: no container has the labels {PROJECT_LABEL}="
                                       f"{service.project} and {SERVICE_LABEL}={service.service} on "
                                       f"{self.docker.host}. Check the project and service names "
                                       "(docker ps --format '{{.Labels}}').")
                if service.type == "container" and not containers:
                    raise RunbookError(f"{service.key}: there is no container named {service.name} on "
                                       f"{self.docker.host}. Check the name (docker ps -a).")
                state[service.key] = {"type": service.type, "count": len(containers), "running": [
                    {"id": c.id, "name": c.name} for c in containers if is_running(c)]}
            else:
                state[service.key] = {"type": "systemd", "running": self.systemd.active(service.name)}
        return state

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
                        self._stop_container(item["id"], service)
            elif current["running"]:
                outcome.did(f"stopped {service.name}")
                if not self.check_mode:
                    self.systemd.act("stop", service.name)
            outcome.services.append({"service": service.key, "before": current})
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

    def start(self) -> tuple[Outcome, dict | None]:
        """Start what the record says was running, then remove the record. Without a record, systemd units
        are started (what the playbooks did before records), and docker services are left as they are."""
        outcome = Outcome()
        record = read_record(self.record_path)
        recorded = (record or {}).get("services", {})
        for service in self.services:
            entry = recorded.get(service.key)
            if service.is_docker:
                if entry is None:
                    outcome.services.append({"service": service.key, "note": "no record: left as it is"})
                    continue
                for item in entry.get("running", []):
                    container = self.docker.get(item["id"]) or self.docker.get(item["name"])
                    if container is None:
                        raise RunbookError(f"Container {item['name']} ({service.key}) was running before the stop "
                                           "and no longer exists: recreate it (docker compose up -d), then run "
                                           f"again. The record {self.record_path} is kept.")
                    if not is_running(container):
                        outcome.did(f"started container {container.name} ({service.key})")
                        if not self.check_mode:
                            self._start_container(container, service)
                outcome.services.append({"service": service.key, "started": [i["name"] for i in entry["running"]]})
            else:
                wanted = entry["running"] if entry is not None else True
                if wanted and not self.systemd.active(service.name):
                    outcome.did(f"started {service.name}")
                    if not self.check_mode:
                        self.systemd.act("start", service.name)
                outcome.services.append({"service": service.key, "started": bool(wanted)})
        if record is not None and not self.check_mode:
            os.unlink(self.record_path)
            outcome.changed = True
            outcome.actions.append(f"removed the record {self.record_path}")
        return outcome, record

    def _start_container(self, container, service: Service) -> None:
        try:
            container.start()
        except DockerException as exc:
            raise RunbookError(f"Starting container {container.name} ({service.key}) failed: {exc}. The record "
                               f"{self.record_path} is kept: run again once it can start.") from exc

    # rolling restart
    def restart(self, health_url: str = "", health_timeout: float = 60, settle: float = 2) -> Outcome:
        """One container (or unit) at a time: restart it, wait until it is healthy, go on. The first one that
        does not become healthy stops the run, and the failure names it and what was restarted before."""
        outcome = Outcome()
        now = self.snapshot()
        for service in self.services:
            done = len(outcome.actions)
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
            outcome.services.append({"service": service.key, "restarted": outcome.actions[done:]})
        return outcome

    @staticmethod
    def _unhealthy(outcome: Outcome, name: str, problem: str) -> RunbookError:
        before = outcome.actions[:-1]
        done = "; ".join(before) if before else "nothing before it"
        return RunbookError(f"{name} is not healthy after its restart: {problem}. The rolling restart stopped "
                            f"there; restarted and healthy before it: {done}. The ones after it were not touched.",
                            restarted=before, unhealthy=name)


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
        with urllib.request.urlopen(url, timeout=5) as response:
            return "" if response.status < 400 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url} did not answer ({exc})"
