"""A Docker daemon of the tests' own, started and given its busybox image as the sandbox's is (sandbox/app_tier.py),
and compose services made through the API with the labels compose v1 and v2 set. Nothing here touches a daemon it
did not start."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sandbox.app_tier import (  # noqa: F401 (IMAGE and the labels are re-exported to the tests)
    IMAGE,
    NUMBER_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    Daemon,
    compose_labels,
    wait_healthy,
)

# The container is healthy once /ok exists; it makes /ok at start unless /fail-on-start exists, so a container can
# be made to come back unhealthy from its next restart.
APP_COMMAND = ["sh", "-c", "rm -f /ok; [ -e /fail-on-start ] || touch /ok; trap 'exit 0' TERM; "
                           "while :; do sleep 1; done"]
# Every check is a `runc exec`: once a second per container (a tenth of that kept a dozen containers busy enough to
# load two cores). An exec can take over a second on a loaded machine (make test's phases side by side): a check that
# times out must not by itself make a healthy container unhealthy, so a check may take 5 s and three in a row must
# fail (a container started with /fail-on-start is unhealthy after about 3 s).
HEALTHCHECK = {"test": ["CMD", "test", "-e", "/ok"], "interval": 1_000_000_000, "timeout": 5_000_000_000,
               "retries": 3, "start_period": 0}


class DockerDaemon:
    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="rr-docker-", dir="/tmp"))
        self.daemon = Daemon(self.base)
        self.host = self.daemon.host
        try:
            self.daemon.start()
            self.client = self.daemon.client()
            self.daemon.build_image(self.client)
        except Exception:
            self.daemon.stop()
            raise

    def compose_service(self, project: str, service: str, count: int, healthcheck: bool = True) -> list:
        """`count` containers of a compose service, as compose names and labels them, running."""
        return [self.container(f"{project}_{service}_{n}", labels=compose_labels(project, service, n),
                               healthcheck=healthcheck) for n in range(1, count + 1)]

    def container(self, name: str, labels: dict | None = None, healthcheck: bool = True):
        container = self.client.containers.run(IMAGE, APP_COMMAND, name=name, labels=labels or {}, detach=True,
                                               network_mode="none", stop_signal="SIGTERM",
                                               healthcheck=HEALTHCHECK if healthcheck else None)
        return container

    def wait_healthy(self, containers: list, timeout: float = 30) -> None:
        wait_healthy(containers, timeout)

    def remove_project(self, project: str) -> None:
        for container in self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"}):
            container.remove(force=True)
        for container in self.client.containers.list(all=True, filters={"name": f"^{project}-"}):
            container.remove(force=True)

    def running(self, project: str, service: str) -> list[str]:
        found = self.client.containers.list(filters={"label": [f"{PROJECT_LABEL}={project}",
                                                               f"{SERVICE_LABEL}={service}"]})
        return sorted(c.name for c in found)

    def started_at(self, name: str) -> str:
        return self.client.containers.get(name).attrs["State"]["StartedAt"]

    def stop(self) -> None:
        try:
            for container in self.client.containers.list(all=True):
                container.remove(force=True)
        except Exception:  # noqa: BLE001 - the daemon may be gone already
            pass
        self.daemon.stop()
        shutil.rmtree(self.base, ignore_errors=True)
