"""make airflow-cluster: Airflow on the CeleryExecutor, each component a process of its own on loopback, as a fleet
runs it: api-server, scheduler, dag-processor, triggerer and two Celery workers with names of their own.

    python sandbox/airflow_cluster.py up       # idempotent: starts what is not running, waits until each is healthy
    python sandbox/airflow_cluster.py down     # stops every process of the cluster (tasks and playbooks included)
    python sandbox/airflow_cluster.py status   # each component, its pid and health

Metadata in a database `airflow` (role `airflow`) on the sandbox's PostgreSQL, the Celery broker on the sandbox's
Redis (database 5), Celery's results in the metadata database, one [api_auth] jwt_secret and one
[core] execution_api_server_url for every component (a worker signs and checks its task tokens with them). Every
setting and secret is in $AIRFLOW_HOME/airflow.cfg (0600, .airflow/cluster by default), none on a command line.
The scheduler loads dags/runbook_policy.py as its airflow_local_settings (pool and queue of each mapped task).

Both workers run on this machine, so each names itself (RUNBOOK_WORKER_HOSTNAME, through [core] hostname_callable)
and the task instances show which one ran them; worker-1 consumes the queues default and zone-a, worker-2 those and
zone-b (RUNBOOK_AIRFLOW_WORKERS="worker-1=default,zone-a worker-2=default,zone-a,zone-b" to change them).

Environment: RUNBOOK_AIRFLOW_HOME, RUNBOOK_AIRFLOW_PORT (8090), RUNBOOK_INVENTORY (inventories/fleet when `make
sandbox-up FLEET=...` wrote it, else inventories/local), and the sandbox's own (RUNBOOK_SANDBOX_DIR, ports);
AIRFLOW__SECTION__KEY variables reach every component and win over airflow.cfg, as in any Airflow.

The tests and bench/fleet.py start the same cluster (AirflowCluster) on servers of their own.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.pgcluster import PgCluster, process_alive  # noqa: E402
from sandbox.sandbox import SANDBOX, SETTINGS, aws_env, port_open, postgres, read_pid  # noqa: E402

BIN = Path(sys.executable).parent
BROKER_DB = 5
WORKERS = "worker-1=default,zone-a worker-2=default,zone-a,zone-b"
# Every process of a cluster, and whatever its tasks start, carries this variable (its AIRFLOW_HOME): `down` finds
# them all by it, whatever session or process group a playbook or a module's child put itself in.
MARK = "RUNBOOK_AIRFLOW_CLUSTER"
HEALTHY = ("metadatabase", "scheduler", "triggerer", "dag_processor")
ADMIN = "admin"
# Four eyes (dags/runbook_approval.py): the admin triggers, a second user approves (the requester never may).
APPROVER = "approver"


@dataclass
class AirflowCluster:
    """One Airflow on the CeleryExecutor: its home (config, logs, pid files), the PostgreSQL server holding its
    metadata database, the Redis port of its broker, the inventory its DAGs read. `environ` reaches every component
    (AIRFLOW__SECTION__KEY settings, connections)."""

    home: Path
    port: int
    metadata: PgCluster
    redis_port: int
    inventory: str
    workers: dict[str, str] = field(default_factory=lambda: dict(s.split("=", 1) for s in WORKERS.split()))
    concurrency: int = 2
    environ: dict[str, str] = field(default_factory=dict)
    _token: str | None = field(default=None, init=False, repr=False)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def components(self) -> dict[str, list[str]]:
        airflow = str(BIN / "airflow")
        found = {"api-server": [airflow, "api-server"], "scheduler": [airflow, "scheduler"],
                 "dag-processor": [airflow, "dag-processor"], "triggerer": [airflow, "triggerer"]}
        for name, queues in self.workers.items():
            # One machine: the api-server reads the workers' task logs from the shared log folder, so the workers
            # serve none (two would contend for the log server's port).
            found[name] = [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", queues,
                           "--concurrency", str(self.concurrency), "--skip-serve-logs", "--without-gossip",
                           "--without-mingle"]
        return found

    # -- configuration --------------------------------------------------------------------------------------------
    def read_config(self) -> configparser.ConfigParser:
        config = configparser.ConfigParser(interpolation=None)
        config.read(self.home / "airflow.cfg")
        return config

    def settings(self, previous: configparser.ConfigParser) -> dict[str, dict[str, str]]:
        """airflow.cfg: the secrets made once and kept, the rest from here."""
        def kept(section: str, key: str) -> str:
            return previous.get(section, key, fallback="") or secrets.token_urlsafe(32)

        password = kept("runbook", "metadata_password")
        database = f"postgresql+psycopg://airflow:{password}@127.0.0.1:{self.metadata.port}/airflow"
        return {
            "core": {"dags_folder": str(ROOT / "dags"), "executor": "CeleryExecutor", "load_examples": "False",
                     "auth_manager": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
                     "simple_auth_manager_users": f"{ADMIN}:admin,{APPROVER}:user",
                     "simple_auth_manager_passwords_file": str(self.home / "passwords.json"),
                     "execution_api_server_url": f"{self.api}/execution/",
                     "hostname_callable": "runbook_worker_name.worker_hostname"},
            # psycopg 3 for the async engine too (Airflow would otherwise look for asyncpg).
            "database": {"sql_alchemy_conn": database, "sql_alchemy_conn_async": database},
            "api": {"host": "127.0.0.1", "port": str(self.port), "base_url": self.api, "workers": "1",
                    "secret_key": kept("api", "secret_key")},
            "api_auth": {"jwt_secret": kept("api_auth", "jwt_secret")},
            # The result backend is left unset: Celery's results go to the metadata database (db+ sql_alchemy_conn).
            # A worker takes a task from the broker only when it has a free slot (runbook_celery.py): a worker that
            # dies then takes with it only the tasks it was running, which the scheduler fails after
            # task_instance_heartbeat_timeout and retries elsewhere. With Celery's default prefetch it also held
            # one more task per slot, which stayed queued until task_queued_timeout (10 min) before anyone ran it.
            "celery": {"broker_url": f"redis://127.0.0.1:{self.redis_port}/{BROKER_DB}",
                       "worker_concurrency": str(self.concurrency),
                       "celery_config_options": "runbook_celery.CELERY_CONFIG"},
            "logging": {"base_log_folder": str(self.home / "logs")},
            # A worker's supervisor notices that its task process has exited only when its wait for the process's
            # output times out, which is at most this interval: at the default 5 s a backup of 2-3 s held its worker
            # slot about 5 s longer (bench/fleet.py: 30 databases in 72 s, 55 s at 1 s). It is also how often a
            # running task heartbeats to the api-server: one call per second per running task.
            "workers": {"min_heartbeat_interval": "1"},
            "runbook": {"metadata_password": password},
        }

    def write_config(self) -> bool:
        config = configparser.ConfigParser(interpolation=None)
        config.read_dict(self.settings(self.read_config()))
        text = "# Written by sandbox/airflow_cluster.py (make airflow-cluster); secrets inside: 0600.\n"
        for section in config.sections():
            text += f"\n[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in config[section].items())
        path = self.home / "airflow.cfg"
        if path.exists() and path.read_text() == text:
            return False
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text)
        return True

    def write_home(self) -> None:
        for directory in (self.home, self.home / "config", self.home / "logs", self.home / "run"):
            directory.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        passwords = self.home / "passwords.json"
        known = json.loads(passwords.read_text()) if passwords.exists() else {}
        if set(known) < {ADMIN, APPROVER}:
            passwords.touch(mode=0o600)
            passwords.chmod(0o600)
            passwords.write_text(json.dumps({user: known.get(user) or secrets.token_urlsafe(12)
                                             for user in (ADMIN, APPROVER)}))
        policy = self.home / "config" / "airflow_local_settings.py"
        if not policy.is_symlink():
            policy.unlink(missing_ok=True)
            policy.symlink_to(ROOT / "dags" / "runbook_policy.py")
        (self.home / "config" / "runbook_worker_name.py").write_text(
            '"""Written by sandbox/airflow_cluster.py: the name a worker of this machine gives the task instances it '
            'runs\n(two workers share this machine; on machines of their own the machine name is enough)."""\n\n'
            "import os\nimport socket\n\n\ndef worker_hostname() -> str:\n"
            '    return os.environ.get("RUNBOOK_WORKER_HOSTNAME") or socket.getfqdn()\n')
        (self.home / "config" / "runbook_celery.py").write_text(
            '"""Written by sandbox/airflow_cluster.py: Airflow\'s Celery settings, and a worker takes a task only '
            'when it has\na free slot (Redis broker), so a worker that dies strands no task it had not started."""\n\n'
            "from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG\n\n"
            'CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "worker_disable_prefetch": True}\n')

    @property
    def password(self) -> str:
        return self.passwords[ADMIN]

    @property
    def passwords(self) -> dict[str, str]:
        return json.loads((self.home / "passwords.json").read_text())

    def metadata_database(self) -> bool:
        """Role and database `airflow` on the metadata server, the role's password the one in airflow.cfg."""
        import psycopg
        from psycopg import sql

        if not self.metadata.running():
            raise SystemExit(f"PostgreSQL does not run on 127.0.0.1:{self.metadata.port} (make sandbox-up first)")
        password = self.read_config().get("runbook", "metadata_password")
        changed = False
        with psycopg.connect(**self.metadata.conninfo(), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'airflow'").fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE airflow LOGIN PASSWORD {}").format(sql.Literal(password)))
                changed = True
            elif not self._password_matches(password):
                conn.execute(sql.SQL("ALTER ROLE airflow PASSWORD {}").format(sql.Literal(password)))
                changed = True
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'").fetchone():
                conn.execute("CREATE DATABASE airflow OWNER airflow")
                changed = True
        return changed

    def _password_matches(self, password: str) -> bool:
        import psycopg

        try:
            psycopg.connect(host="127.0.0.1", port=self.metadata.port, user="airflow", password=password,
                            dbname="postgres", connect_timeout=5).close()
            return True
        except psycopg.OperationalError:
            return False

    def environment(self, name: str | None = None) -> dict[str, str]:
        env = {**os.environ, MARK: str(self.home), "AIRFLOW_HOME": str(self.home),
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "ANSIBLE_HOME": str(ROOT / ".ansible"),
               "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".ansible" / "collections"),
               "RUNBOOK_PROJECT_DIR": str(ROOT), "RUNBOOK_INVENTORY": self.inventory,
               "RUNBOOK_APPROVERS": os.environ.get("RUNBOOK_APPROVERS", APPROVER),
               "RUNBOOK_OPERATORS": os.environ.get("RUNBOOK_OPERATORS", "role:op"), **self.environ}
        if name in self.workers:
            env["RUNBOOK_WORKER_HOSTNAME"] = name
        return env

    def migrate(self) -> bool:
        """`airflow db migrate` once per Airflow version and metadata server (some 30 s even with nothing to do)."""
        from importlib.metadata import version

        import psycopg

        with psycopg.connect(**self.metadata.conninfo(), autocommit=True) as conn:
            server = str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
        marker = self.home / f".migrated-{version('apache-airflow-core')}"
        if marker.exists() and marker.read_text() == server:
            return False
        log = self.home / "logs" / "db-migrate.log"
        with open(log, "w") as out:
            done = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=self.environment(), cwd=ROOT,
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SystemExit(f"airflow db migrate failed:\n{log.read_text()[-4000:]}")
        marker.write_text(server)
        return True

    # -- processes --------------------------------------------------------------------------------------------
    def pidfile(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        return read_pid(self.pidfile(name))

    def start(self, name: str) -> bool:
        if self.pid(name):
            return False
        with open(self.home / "logs" / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(self.components()[name], env=self.environment(name), cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pidfile(name).write_text(f"{proc.pid}\n")
        return True

    def marked_processes(self) -> list[int]:
        """Every live process that carries this cluster's mark: its components and all they started."""
        wanted = f"{MARK}={self.home}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    if wanted in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                        found.append(int(entry))
                except OSError:
                    continue
        return [pid for pid in found if process_alive(pid)]

    def processes(self) -> set[int]:
        """This cluster's live processes: the components, all below them, and every marked one (a playbook whose
        worker died; a process that renamed itself with setproctitle hides its environment, not its parent)."""
        found = set(self.marked_processes())
        for name in self.components():
            pid = self.pid(name)
            if pid:
                found |= {pid, *process_tree(pid)}
        return {pid for pid in found if process_alive(pid)}

    def stop_all(self, grace: float = 20) -> list[str]:
        """SIGTERM to each component (a worker hands back or ends its tasks), then SIGKILL to every process of the
        cluster left, found before the components ended (their children would be orphans by then)."""
        stopped, known = [], self.processes()
        for name in reversed(list(self.components())):
            pid = self.pid(name)
            if pid:
                _signal_group(pid, signal.SIGTERM)
                stopped.append(name)
            self.pidfile(name).unlink(missing_ok=True)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.left(known):
            time.sleep(0.3)
        for _ in range(3):
            left = self.left(known)
            if not left:
                break
            for pid in left:
                _signal(pid, signal.SIGKILL)
            time.sleep(0.5)
        return stopped

    def left(self, known: set[int]) -> set[int]:
        return {pid for pid in known if process_alive(pid)} | set(self.marked_processes())

    # -- health -----------------------------------------------------------------------------------------------
    def api_health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.api}/api/v2/monitor/health", timeout=5) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    def workers_answering(self, expected: set[str] = frozenset(), timeout: float = 0) -> set[str]:
        """The workers (their names before @) that answer a Celery ping over the broker: pinged until all of
        `expected` answer or `timeout` seconds pass, in one process (importing Celery's app costs seconds)."""
        probe = """import json, sys, time
from airflow.providers.celery.executors.celery_executor_utils import app
expected, deadline, names = set(json.loads(sys.argv[1])), time.monotonic() + float(sys.argv[2]), set()
while True:
    names |= {name.split("@", 1)[0] for reply in app.control.ping(timeout=2) or [] for name in reply}
    if expected <= names or time.monotonic() > deadline:
        break
print(json.dumps(sorted(names)))
"""
        done = subprocess.run([sys.executable, "-c", probe, json.dumps(sorted(expected)), str(max(timeout, 0))],
                              env=self.environment(), cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            return set()
        return set(json.loads(done.stdout.strip().splitlines()[-1]))

    def unhealthy(self) -> list[str]:
        health = self.api_health()
        if health is None:
            return ["api-server"]
        return [part for part in HEALTHY if (health.get(part) or {}).get("status") != "healthy"]

    def wait_ready(self, timeout: float = 300) -> None:
        """Until the api-server's health check says every component is healthy and every worker answers a ping."""
        deadline = time.monotonic() + timeout
        waiting = ["api-server"]
        while time.monotonic() < deadline:
            dead = [name for name in self.components() if not self.pid(name)]
            if dead:
                tails = "\n".join(f"--- {name} ---\n{(self.home / 'logs' / f'{name}.log').read_text()[-3000:]}"
                                  for name in dead)
                raise SystemExit(f"{', '.join(dead)} ended while starting:\n{tails}")
            waiting = self.unhealthy()
            if not waiting:
                waiting = sorted(set(self.workers) - self.workers_answering(set(self.workers),
                                                                            deadline - time.monotonic()))
                if not waiting:
                    return
            time.sleep(1)
        raise SystemExit(f"not healthy after {timeout:.0f} s: {', '.join(waiting)} (logs in {self.home / 'logs'})")

    # -- commands ---------------------------------------------------------------------------------------------
    def up(self, timeout: float = 300) -> dict[str, bool]:
        """Start what does not run and wait until all is healthy; {what: whether it was done now}. A start that
        fails stops what this call started."""
        if not port_open(self.redis_port):
            raise SystemExit(f"Redis does not run on 127.0.0.1:{self.redis_port} (make sandbox-up first)")
        self.write_home()
        running = {name for name in self.components() if self.pid(name)}
        if self.write_config() and running:
            print("  airflow.cfg changed: make airflow-cluster-down, then make airflow-cluster, to apply it")
        report = {"metadata database": self.metadata_database(), "schema migrated": self.migrate()}
        try:
            for name in self.components():
                report[f"{name} started"] = self.start(name)
            self.wait_ready(timeout)
        except BaseException:
            if not running:
                self.stop_all(grace=5)
            raise
        return report

    def down(self) -> list[str]:
        known = self.processes()
        stopped = self.stop_all()
        left = self.left(known)
        if left:
            raise SystemExit(f"processes still alive after SIGKILL: {left}")
        return stopped

    def status(self) -> tuple[bool, list[tuple[str, str, int | None]]]:
        health = self.api_health()
        answering = self.workers_answering() if health else set()
        rows, ok = [], True
        for name in self.components():
            pid = self.pid(name)
            if name in self.workers:
                healthy = name in answering
            elif name == "api-server":
                healthy = health is not None
            else:
                healthy = (health or {}).get(name.replace("-", "_"), {}).get("status") == "healthy"
            ok &= bool(pid) and healthy
            rows.append((name, "healthy" if pid and healthy else "running" if pid else "stopped", pid))
        return ok, rows

    # -- the REST API, as the UI uses it ----------------------------------------------------------------------
    def token(self, fresh: bool = False, user: str = ADMIN) -> str:
        """A token of the admin user, asked for once and kept (a new one per call cost the api-server as much as the
        call); `fresh` asks again, as call() does when the kept one is refused. Another `user`: a new token."""
        if user != ADMIN or self._token is None or fresh:
            body = json.dumps({"username": user, "password": self.passwords[user]}).encode()
            request = urllib.request.Request(f"{self.api}/auth/token", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                token = json.loads(response.read())["access_token"]
            if user != ADMIN:
                return token
            self._token = token
        return self._token

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        for attempt in (1, 2):
            request = urllib.request.Request(f"{self.api}/api/v2{path}", method=method,
                                             data=json.dumps(body).encode() if body is not None else None,
                                             headers={"Authorization": f"Bearer {token or self.token(attempt > 1)}",
                                                      "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    text = response.read()
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and token is None and attempt == 1:
                    continue  # the kept token expired, or the cluster was set up again with a new secret
                raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
        try:
            return json.loads(text or b"{}")
        except ValueError:
            return text.decode(errors="replace")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Unpause the DAG and trigger a run of it, as the UI's Trigger button does; the run's id."""
        token = self.token()
        self.call("PATCH", f"/dags/{dag_id}", {"is_paused": False}, token)
        run = self.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}, token)
        return run["dag_run_id"]

    def set_variable(self, key: str, value: str) -> None:
        """An Airflow Variable (as Admin -> Variables does), created or replaced."""
        try:
            self.call("PATCH", f"/variables/{key}", {"key": key, "value": value})
        except RuntimeError as exc:
            if "HTTP 404" not in str(exc):
                raise
            self.call("POST", "/variables", {"key": key, "value": value})

    def run_path(self, dag_id: str, run_id: str) -> str:
        return f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900, poll: float = 2) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.call("GET", self.run_path(dag_id, run_id))
            if run["state"] in ("success", "failed") or time.monotonic() > deadline:
                return run
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.call("GET", f"{self.run_path(dag_id, run_id)}/taskInstances?limit=1000")["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        path = f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}?map_index={map_index}"
        log = self.call("GET", path)
        content = log.get("content", "") if isinstance(log, dict) else log
        return content if isinstance(content, str) else "\n".join(
            json.dumps(line) if not isinstance(line, str) else line for line in content)


def process_tree(root: int) -> list[int]:
    """Every process below `root`, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found += sorted(frontier)
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        _signal(pid, sig)


# -- the sandbox's cluster ----------------------------------------------------------------------------------------
def sandbox_cluster() -> AirflowCluster:
    default = "inventories/fleet" if (ROOT / "inventories/fleet/hosts.yml").exists() else "inventories/local"
    aws = aws_env()
    # The sandbox's AWS emulator as the aws_default connection, as make airflow does (its keys are not secret).
    connection = json.dumps({"conn_type": "aws", "login": aws["AWS_ACCESS_KEY_ID"],
                             "password": aws["AWS_SECRET_ACCESS_KEY"],
                             "extra": {"region_name": aws["AWS_DEFAULT_REGION"],
                                       "endpoint_url": aws["AWS_ENDPOINT_URL"]}})
    return AirflowCluster(
        home=Path(os.environ.get("RUNBOOK_AIRFLOW_HOME", ROOT / ".airflow" / "cluster")).absolute(),
        port=int(os.environ.get("RUNBOOK_AIRFLOW_PORT", "8090")), metadata=postgres(),
        redis_port=SETTINGS["sandbox_redis_port"], inventory=os.environ.get("RUNBOOK_INVENTORY", default),
        workers=dict(spec.split("=", 1) for spec in os.environ.get("RUNBOOK_AIRFLOW_WORKERS", WORKERS).split()),
        concurrency=int(os.environ.get("RUNBOOK_AIRFLOW_WORKER_CONCURRENCY", "2")),
        environ={"AIRFLOW_CONN_AWS_DEFAULT": connection})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args()
    cluster = sandbox_cluster()
    if args.command == "up":
        for what, changed in cluster.up().items():
            print(f"  {what:<26} {'yes' if changed else 'already'}")
        print(f"""
  Airflow UI:  {cluster.api}   (log in as {ADMIN} to trigger, as {APPROVER} to approve: a run is never
               approved by who triggered it; the passwords are in {cluster.home / 'passwords.json'})
  Executor:    CeleryExecutor, broker redis://127.0.0.1:{cluster.redis_port}/{BROKER_DB}, metadata \
postgresql://127.0.0.1:{cluster.metadata.port}/airflow
  Workers:     {'; '.join(f'{name} (queues {queues})' for name, queues in cluster.workers.items())}
  Inventory:   {cluster.inventory}     Logs: {cluster.home / 'logs'}
  Stop:        make airflow-cluster-down. Scheduled DAGs start paused: unpause them in the UI.
""")
    elif args.command == "down":
        stopped = cluster.down()
        print(f"  stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    else:
        ok, rows = cluster.status()
        print(f"{'component':<14} {'state':<9} pid")
        for name, state, pid in rows:
            print(f"{name:<14} {state:<9} {pid or '-'}")
        print(f"ui             {cluster.api} (AIRFLOW_HOME {cluster.home}, sandbox {SANDBOX})")
        return 0 if ok else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
