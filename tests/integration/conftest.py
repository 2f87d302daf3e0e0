"""Real components: each test session starts its own PostgreSQL cluster (tests may stop and corrupt
it), runs real ansible-playbook processes against it, and checks what a person would check."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from sandbox.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[2]
SEED_SQL = (ROOT / "sandbox" / "seed_chat.sql").read_text()
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


class Emulator(dict):
    """The environment that points boto3, the AWS CLI and the modules at the emulator, plus its fault rules."""

    def __init__(self, env: dict, faults: Path):
        super().__init__(env)
        self.faults = faults

    def inject(self, *rules: dict) -> None:
        self.faults.write_text(json.dumps(list(rules)))

    def clear_faults(self) -> None:
        self.faults.write_text("[]")
        Path(f"{self.faults}.log").unlink(missing_ok=True)

    def injected(self) -> list[dict]:
        log = Path(f"{self.faults}.log")
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def race(self, rule: dict, run, meanwhile, release: Path):
        """run() in a thread while the emulator holds the call `rule` matches (a hold_until rule); once it is held,
        meanwhile() changes what it likes, then the call goes on. Returns what run() returned: a change made
        between a module's read and its write, every time, without timing."""
        self.inject({**rule, "hold_until": str(release), "times": 1})
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(result=run()))
        runner.start()
        try:
            deadline = time.monotonic() + 120
            while not self.injected() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert self.injected(), f"the run never reached the held call ({rule})"
            meanwhile()
        finally:
            release.touch()
            runner.join(300)
            self.clear_faults()
        return outcome["result"]


@pytest.fixture(scope="session")
def aws_emulator(tmp_path_factory):
    """The project's AWS emulator (moto plus our extensions) on a free loopback port, for boto3 over HTTP."""
    port = free_port()
    faults = tmp_path_factory.mktemp("aws-faults") / "faults.json"
    faults.write_text("[]")
    proc = subprocess.Popen([sys.executable, str(ROOT / "sandbox" / "aws_emulator.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RUNBOOK_EMULATOR_FAULTS": str(faults)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    emulator = Emulator({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                         "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}, faults)
    yield emulator
    proc.terminate()
    proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_cluster() -> PgCluster:
    cluster = PgCluster(tempfile.mkdtemp(prefix="rr-pg-"), free_port(),
                        settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def pg():
    cluster = new_cluster()
    yield cluster
    cluster.destroy()


@pytest.fixture
def private_pg():
    """A cluster of this test's own, for tests that stop it."""
    cluster = new_cluster()
    yield cluster
    cluster.destroy()


def connect(cluster: PgCluster, dbname: str = "postgres"):
    return psycopg.connect(**cluster.conninfo(dbname), autocommit=True)


@contextlib.contextmanager
def table_held_locked(cluster: PgCluster, dbname: str, table: str):
    """A migration holding `table` ACCESS EXCLUSIVE until the block ends; yields a function counting the other
    sessions on the database (the ones waiting behind it)."""
    holder = connect(cluster, dbname)
    holder.autocommit = False
    holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    try:
        with connect(cluster) as watcher:
            yield lambda: watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                                          (dbname, holder.info.backend_pid)).fetchone()[0]
    finally:
        holder.rollback()
        holder.close()


def create_chat_db(cluster: PgCluster, name: str | None = None) -> str:
    name = name or f"chat_{uuid.uuid4().hex[:8]}"
    with connect(cluster) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with connect(cluster, name) as conn:
        conn.execute(SEED_SQL)
    return name


@pytest.fixture
def chat_db(pg):
    return create_chat_db(pg)


@dataclass
class PlaybookRun:
    rc: int
    output: str
    recap: dict

    @property
    def changed(self) -> int:
        return sum(host["changed"] for host in self.recap.values())

    @property
    def failed(self) -> int:
        return sum(host["failed"] for host in self.recap.values())

    def says(self, text: str) -> bool:
        """Whether the output holds `text`, however the YAML result callback wrapped and quoted it."""
        return " ".join(text.split()) in " ".join(self.output.split()).replace("''", "'")


_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)\s+"
                    r"rescued=(\d+)\s+ignored=(\d+)", re.M)


class PlaybookWorkspace:
    """A temp dir with an inventory and an audit log, and real ansible-playbook runs against them."""

    def __init__(self, base: Path):
        self.base = base
        self.audit_log = base / "audit.jsonl"
        self.inventory = base / "inventory.yml"
        self.env: dict[str, str] = {}

    def play_json(self, playbook: str, *args: str, check: bool = False, **extra_vars) -> tuple[PlaybookRun, dict]:
        """Run with the JSON callback: (the run, {task name: {host: result}}) for exact assertions."""
        self.env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
        try:
            run = self.play(playbook, *args, check=check, **extra_vars)
        finally:
            self.env.pop("ANSIBLE_STDOUT_CALLBACK")
        document = json.loads(run.output[run.output.index("{"):])
        tasks = {}
        for play in document["plays"]:
            for task in play["tasks"]:
                # "role : name" for role tasks: keyed by the task's own name
                tasks[task["task"]["name"].split(" : ", 1)[-1]] = task["hosts"]
        stats = document["stats"]
        run.recap = {host: {k: stats[host].get(k, 0) for k in ("ok", "changed", "unreachable", "failures",
                                                                "skipped", "rescued")} for host in stats}
        for host in run.recap.values():
            host["failed"] = host.pop("failures")
        return run, tasks

    def play(self, playbook: str, *args: str, check: bool = False, **extra_vars) -> PlaybookRun:
        command = [ANSIBLE_PLAYBOOK, "-i", str(self.inventory), str(ROOT / "playbooks" / playbook), *args]
        if check:
            command.append("--check")
        if extra_vars:
            varsfile = self.base / f"extra-{uuid.uuid4().hex[:6]}.json"
            varsfile.write_text(json.dumps(extra_vars))
            command += ["-e", f"@{varsfile}"]
        env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(self.base / "ansible-tmp"), **self.env}
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        output = proc.stdout + proc.stderr
        recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4]),
                        "skipped": int(m[5]), "rescued": int(m[6])} for m in _RECAP.findall(output)}
        return PlaybookRun(proc.returncode, output, recap)

    def audit(self) -> list[dict]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]



class Workspace(PlaybookWorkspace):
    """An inventory pointing at the test cluster, a backup root and an audit log, in a temp dir."""

    def __init__(self, cluster: PgCluster, databases: list[str], base: Path, redis_port: int | None = None):
        super().__init__(base)
        self.cluster, self.databases, self.redis_port = cluster, databases, redis_port
        self.backup_root = base / "backups"
        self.write_inventory()

    def write_inventory(self, **extra) -> None:
        host_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "pg_connection": {"login_host": "127.0.0.1", "login_port": self.cluster.port, "login_user": "postgres",
                              "login_password": self.cluster.password},
            "pg_databases": self.databases,
            "pg_backup_root": str(self.backup_root),
            "runbook_audit_log": str(self.audit_log),
            "runbook_report_dir": str(self.base / "reports"),
            **extra,
        }
        groups = {"postgres": {"hosts": {"testdb": host_vars}}}
        if self.redis_port:
            groups["redis"] = {"hosts": {"testredis": {
                "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "runbook_report_dir": str(self.base / "reports"), "runbook_audit_log": str(self.audit_log),
                "redis_connection": {"login_host": "127.0.0.1", "login_port": self.redis_port}}}}
        self.inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
        self.inventory.chmod(0o600)

    def backups(self, database: str) -> list[str]:
        directory = self.backup_root / database
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if (p / "manifest.json").exists() and p.name[0] != ".")


@pytest.fixture
def workspace(pg, chat_db, tmp_path):
    return Workspace(pg, [chat_db], tmp_path)


# -- what a person checks ----------------------------------------------------------------------
def table_fingerprints(cluster: PgCluster, dbname: str) -> dict[str, tuple[int, str]]:
    """Row count and an ordered checksum of every user table."""
    with connect(cluster, dbname) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").fetchall()
        result = {}
        for (table,) in tables:
            count, digest = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()
            result[table] = (count, digest)
        return result


def schema_objects(cluster: PgCluster, dbname: str) -> dict[str, list]:
    """Indexes, constraints and sequence positions: what a restore must bring back besides rows."""
    with connect(cluster, dbname) as conn:
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                               "ORDER BY 1").fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2").fetchall()
        sequences = conn.execute("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' "
                                 "ORDER BY 1").fetchall()
    return {"indexes": indexes, "constraints": constraints, "sequences": sequences}


def databases(cluster: PgCluster) -> set[str]:
    with connect(cluster) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def tree_state(path: Path) -> dict[str, tuple[int, int, str]]:
    """`path` itself when it is a file, or every file and directory under it, each with its size, mtime and content
    digest: proof that --check wrote nothing."""
    if not path.exists():
        return {}

    def state(p: Path) -> tuple[int, int, str]:
        info = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        return info.st_size, info.st_mtime_ns, digest

    if not path.is_dir():
        return {path.name: state(path)}
    return {str(p.relative_to(path)): state(p) for p in sorted(path.rglob("*"))}


def disaster(cluster: PgCluster, dbname: str) -> None:
    with connect(cluster, dbname) as conn:
        conn.execute("DELETE FROM chat_messages WHERE id % 3 = 0")
        conn.execute("UPDATE users SET email = 'lost@example.com' WHERE id = 1")
        conn.execute("DROP TABLE chat_sessions CASCADE")


def flip_one_byte(backup_dir) -> None:
    """Change one byte in the middle of the backup's largest data file."""
    target = max((p for p in backup_dir.iterdir() if p.name.endswith(".dat.gz")), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


class RedisServer:
    """A throwaway redis-server started from a config file of its own (so CONFIG REWRITE has one)."""

    def __init__(self, maxmemory: str = "64mb", policy: str = "noeviction"):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rr-redis-"))
        self.config = self.dir / "redis.conf"
        self.config.write_text(f"bind 127.0.0.1\nport {self.port}\ndir {self.dir}\nsave \"\"\nappendonly no\n"
                               f"maxmemory {maxmemory}\nmaxmemory-policy {policy}\n")
        self.process = subprocess.Popen(["redis-server", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self):
        import redis

        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def backend(dockerd):
    """backend(count): a compose project with `count` healthy backend containers and one container of another
    service; removed after the test (their health checks cost CPU while they run)."""
    projects = []

    def make(count: int = 3) -> tuple[str, list]:
        project = f"chat{uuid.uuid4().hex[:6]}"
        projects.append(project)
        containers = dockerd.compose_service(project, "backend", count)
        dockerd.compose_service(project, "cache", 1, healthcheck=False)
        dockerd.wait_healthy(containers)
        return project, containers

    yield make
    for project in projects:
        dockerd.remove_project(project)


@pytest.fixture(scope="session")
def dockerd():
    """A Docker daemon of the tests' own (docker_world), one per xdist worker, shared by the files that worker runs
    (make integration hands each file to one worker); each test removes the containers it made."""
    from docker_world import DockerDaemon

    daemon = DockerDaemon()
    yield daemon
    daemon.stop()
