"""The application tier of runbook 002 on a Docker daemon of its own (Debian's docker.io: private socket, data root,
exec root and pid file; vfs storage, no bridge, no iptables), from an image built FROM scratch with a static busybox
(no registry is reachable). Containers are made through the API, named and labelled as docker compose names and
labels them, so every procedure that finds a compose service by its labels finds them. Nothing here touches a daemon
it did not start.

The sandbox's shape (`make sandbox-up`): project `chat`, a `backend` service of two containers, each serving /health
over HTTP on its own loopback and checked by Docker through it, and a `frontend` on the host's network serving
/health on the sandbox's app port (the HTTP probe of restart-app). The tests' own daemons (tests/integration/
docker_world.py) start and build the same way."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from sandbox.pgcluster import process_alive, wait_gone

IMAGE = "rr-busybox:local"
PROJECT_LABEL, SERVICE_LABEL = "com.docker.compose.project", "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
PROJECT = "chat"
BACKEND_REPLICAS = 2
# A check is a `runc exec`: every 2 s per container keeps an idle sandbox cheap and a restarted one healthy soon.
BACKEND_HEALTHCHECK = {"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"],
                       "interval": 2_000_000_000, "timeout": 5_000_000_000, "retries": 3, "start_period": 0}


def serve_health(port: int) -> list[str]:
    """busybox httpd answering /health on 127.0.0.1:`port`. PID 1 of a container ignores SIGTERM unless it traps
    it: sh traps it and ends, so a stop takes no stop timeout."""
    return ["sh", "-c", f"mkdir -p /www && echo ok > /www/health && trap 'exit 0' TERM; "
                        f"httpd -f -p 127.0.0.1:{port} -h /www & wait"]


class Daemon:
    """dockerd with everything under `base`: docker.sock, docker.pid, dockerd.log, root/, exec/."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.socket = self.base / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.pidfile = self.base / "docker.pid"
        self.logfile = self.base / "dockerd.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def start(self, timeout: float = 60) -> bool:
        """Start it unless it runs; True when this call started it. Returns once it answers."""
        if self.pid() is not None:
            self.client(timeout)
            return False
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            process = subprocess.Popen(
                ["dockerd", "--storage-driver", "vfs", "--bridge", "none", "--iptables=false", "--ip-masq=false",
                 "--host", self.host, "--data-root", str(self.base / "root"), "--exec-root", str(self.base / "exec"),
                 "--pidfile", str(self.pidfile)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.client(timeout, process)
        return True

    def client(self, timeout: float = 60, process: subprocess.Popen | None = None):
        """A client of this daemon, once it answers (it may be starting)."""
        import docker

        deadline = time.monotonic() + timeout
        while True:
            try:
                client = docker.DockerClient(base_url=self.host, timeout=60)
                client.ping()
                return client
            except docker.errors.DockerException as exc:
                if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                    log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
                    raise RuntimeError(f"dockerd did not start ({self.host}): {log}") from exc
                time.sleep(0.2)

    def build_image(self, client) -> bool:
        """The busybox image, unless it is there; True when built."""
        import docker

        try:
            client.images.get(IMAGE)
            return False
        except docker.errors.ImageNotFound:
            pass
        context = self.base / "image"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        shutil.copy(shutil.which("busybox"), context / "busybox")
        (context / "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'CMD ["sh"]\n')
        client.images.build(path=str(context), tag=IMAGE, rm=True)
        shutil.rmtree(context, ignore_errors=True)
        return True

    def stop(self, timeout: float = 30) -> bool:
        """Stop it (its containers end with it) and unmount what it left under exec/; True when it ran."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, timeout):
                os.killpg(pid, signal.SIGKILL)
                wait_gone(pid, timeout)
        # dockerd leaves mounts under its exec root (the network namespace file exec/netns/default, which is not a
        # mount point's child umount -R would find): each one, deepest first, so the directory can be removed.
        prefix = f"{self.base}/"
        with open("/proc/mounts") as mounts:
            points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
        for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", point], capture_output=True, check=False)
        self.pidfile.unlink(missing_ok=True)
        return pid is not None


def compose_labels(project: str, service: str, number: int) -> dict[str, str]:
    return {PROJECT_LABEL: project, SERVICE_LABEL: service, NUMBER_LABEL: str(number),
            "com.docker.compose.oneoff": "False"}


def service_containers(client, project: str, service: str) -> list:
    return client.containers.list(all=True, filters={"label": [f"{PROJECT_LABEL}={project}",
                                                               f"{SERVICE_LABEL}={service}"]})


def up(base: Path, frontend_port: int) -> dict[str, bool]:
    """The sandbox's daemon, image and containers, each made or started only when missing or stopped (a service
    scaled since keeps its count): what this call did."""
    daemon = Daemon(base)
    report = {"docker daemon started": daemon.start()}
    client = daemon.client()
    daemon.build_image(client)
    changed = False
    # unless-stopped: the daemon's next start (sandbox-up after sandbox-down) brings back what ran, and a container
    # a procedure stopped stays stopped.
    common = {"detach": True, "stop_signal": "SIGTERM", "restart_policy": {"Name": "unless-stopped"}}
    if not service_containers(client, PROJECT, "backend"):
        for number in range(1, BACKEND_REPLICAS + 1):
            client.containers.run(IMAGE, serve_health(8080), name=f"{PROJECT}_backend_{number}", network_mode="none",
                                  labels=compose_labels(PROJECT, "backend", number), healthcheck=BACKEND_HEALTHCHECK,
                                  **common)
        changed = True
    if not service_containers(client, PROJECT, "frontend"):
        client.containers.run(IMAGE, serve_health(frontend_port), name=f"{PROJECT}_frontend_1",
                              network_mode="host", labels=compose_labels(PROJECT, "frontend", 1), **common)
        changed = True
    report["app containers created"] = changed
    wait_healthy(service_containers(client, PROJECT, "backend"))
    return report


def wait_healthy(containers: list, timeout: float = 90) -> None:
    """Until each running container with a health check passes it. A check that timed out on a loaded machine may
    have made one unhealthy for a while: only the deadline ends the wait, with the last check's output."""
    deadline = time.monotonic() + timeout
    for container in containers:
        while True:
            container.reload()
            state = container.attrs["State"]
            health = state.get("Health", {}).get("Status", "healthy")
            if not state["Running"] or health == "healthy":
                break
            if time.monotonic() > deadline:
                checks = state.get("Health", {}).get("Log", [])[-1:]
                raise RuntimeError(f"container {container.name} is {health}: {checks}")
            time.sleep(0.2)


def describe(base: Path) -> list[tuple[str, bool, str]]:
    """Status rows: the daemon, then each service with its running and healthy containers."""
    daemon = Daemon(base)
    if daemon.pid() is None:
        return [("docker", False, f"{daemon.host} (data {base / 'root'})")]
    client = daemon.client(10)
    rows = [("docker", True, f"{daemon.host} (data {base / 'root'})")]
    for service in ("backend", "frontend"):
        containers = service_containers(client, PROJECT, service)
        running = [c for c in containers if c.status == "running"]
        healthy = [c for c in running if c.attrs["State"].get("Health", {}).get("Status", "healthy") == "healthy"]
        rows.append((f"app {service}", bool(running),
                     f"compose {PROJECT}/{service}: {len(running)} of {len(containers)} running, {len(healthy)} "
                     f"healthy ({', '.join(sorted(c.name for c in containers)) or 'none'})"))
    return rows
