"""The sandbox a newcomer starts with `make demo`: idempotent start, seeded services, clean stop."""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import docker
import psycopg
import pytest
import yaml
from conftest import ROOT, free_port

from sandbox.pgcluster import process_alive


@pytest.fixture(scope="module")
def sandbox():
    """One sandbox for the tests of this file, in their order: started as make sandbox-up starts it (on ports of
    its own), then checked, then the README's procedures run on it, then stopped."""
    # Not under pytest's tmp_path: that is private to root, and the cluster runs as an unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="rr-sandbox-"))
    base.chmod(0o755)
    env = {**os.environ, "RUNBOOK_SANDBOX_DIR": str(base / "sandbox"),
           "RUNBOOK_SANDBOX_PG_PORT": str(free_port()), "RUNBOOK_SANDBOX_REDIS_PORT": str(free_port()),
           "RUNBOOK_SANDBOX_AWS_PORT": str(free_port()), "RUNBOOK_SANDBOX_APP_PORT": str(free_port())}

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "sandbox" / "sandbox.py"), *args], env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    first = run("up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "postgres started         yes" in first.stdout
    yield run, env, base / "sandbox"
    run("down")
    shutil.rmtree(base, ignore_errors=True)


def pids_of(base):
    found = {}
    for name, pidfile in (("postgres", base / "pg/data/postmaster.pid"), ("redis", base / "redis/redis.pid"),
                          ("aws", base / "aws/moto.pid"), ("docker", base / "docker/docker.pid")):
        if pidfile.exists():
            found[name] = int(pidfile.read_text().split()[0])
    return found


def alive(pid):
    """Running, not merely a zombie entry waiting for this machine's init to reap it."""
    return process_alive(pid)


def test_sandbox_up_again_changes_nothing_and_has_its_world(sandbox):
    run, env, base = sandbox
    second = run("up")
    assert second.returncode == 0 and "yes" not in second.stdout.split("service")[0], second.stdout
    status = run("status")
    states = [line[15:23].strip() for line in status.stdout.splitlines()[1:7]]  # the state column of each service
    assert status.returncode == 0 and states == ["running"] * 6, status.stdout
    assert "compose chat/backend: 2 of 2 running, 2 healthy (chat_backend_1, chat_backend_2)" in status.stdout

    password = (base / "pg/password").read_text().strip()
    with psycopg.connect(host="127.0.0.1", port=int(env["RUNBOOK_SANDBOX_PG_PORT"]), user="postgres",
                         password=password, dbname="chat") as conn:
        counts = conn.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM chat_sessions), "
                              "(SELECT count(*) FROM chat_messages)").fetchone()
        assert counts == (500, 2000, 8000)
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        assert {"idx_chat_messages_session_id", "idx_chat_messages_created_at", "idx_chat_sessions_user_id"} <= indexes

    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="sandbox",
                                    aws_secret_access_key="sandbox")
    endpoint = f"http://127.0.0.1:{env['RUNBOOK_SANDBOX_AWS_PORT']}"
    lam = session.client("lambda", endpoint_url=endpoint)
    concurrency = lam.get_function_concurrency(FunctionName="ChatbotLambdaStack-WebSocketHandler")
    assert concurrency["ReservedConcurrentExecutions"] == 7
    assert {"chatbot-sessions", "chatbot-connections"} <= set(
        session.client("dynamodb", endpoint_url=endpoint).list_tables()["TableNames"])
    ecs = session.client("ecs", endpoint_url=endpoint)
    assert ecs.describe_services(cluster="chat-cluster", services=["chat-backend"])["services"][0]["desiredCount"] == 2
    logs = session.client("logs", endpoint_url=endpoint)
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/ChatbotLambdaStack")["logGroups"]

    # A Terraform state whose apply died holding its lock 3 h ago, as Terraform's S3 backend leaves it.
    locks = session.client("dynamodb", endpoint_url=endpoint).scan(TableName="terraform-locks")["Items"]
    by_id = {item["LockID"]["S"]: item for item in locks}
    assert set(by_id) == {"acme-tfstate/network/terraform.tfstate", "acme-tfstate/network/terraform.tfstate-md5"}
    holder = json.loads(by_id["acme-tfstate/network/terraform.tfstate"]["Info"]["S"])
    created = datetime.datetime.fromisoformat(holder["Created"][:26] + "+00:00")
    assert holder["Who"] and datetime.datetime.now(datetime.UTC) - created > datetime.timedelta(hours=3)
    session.client("s3", endpoint_url=endpoint).head_object(Bucket="acme-tfstate", Key="network/terraform.tfstate")

    # The operation moto lacks, added by our emulator: API Gateway v2 UpdateStage over real HTTP.
    apigw = session.client("apigatewayv2", endpoint_url=endpoint)
    api = next(a for a in apigw.get_apis()["Items"] if a["Name"] == "chatbot-websocket")
    apigw.update_stage(ApiId=api["ApiId"], StageName="prod",
                       DefaultRouteSettings={"ThrottlingBurstLimit": 0, "ThrottlingRateLimit": 0.0})
    stage = apigw.get_stage(ApiId=api["ApiId"], StageName="prod")
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 0
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 0.0
    assert stage["AutoDeploy"] is True  # untouched members stay
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.update_stage(ApiId=api["ApiId"], StageName="nope", Description="x")

    # The application tier: the frontend answers on the sandbox's app port, each backend container through Docker's
    # health check, on the sandbox's own daemon.
    with urllib.request.urlopen(f"http://127.0.0.1:{env['RUNBOOK_SANDBOX_APP_PORT']}/health", timeout=10) as answer:
        assert answer.status == 200 and answer.read() == b"ok\n"
    client = docker.DockerClient(base_url=f"unix://{base}/docker/docker.sock", timeout=30)
    backend = client.containers.list(filters={"label": "com.docker.compose.service=backend"})
    assert sorted(c.name for c in backend) == ["chat_backend_1", "chat_backend_2"]
    assert {c.attrs["State"]["Health"]["Status"] for c in backend} == {"healthy"}
    client.close()



# -- the README's Procedures block, as a newcomer runs it after make sandbox-up ---------------------------------------
def readme_procedures() -> list[str]:
    """Every command of the README's Procedures block, its comment taken off."""
    block = (ROOT / "README.md").read_text().split("## Procedures", 1)[1].split("```")[1]
    return [re.sub(r"\s+#.*$", "", line) for line in block.splitlines() if line.startswith("ansible-playbook ")]


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def zulu(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def second_at_or_after(moment: datetime.datetime) -> datetime.datetime:
    """The first whole second not before `moment`, once the clock has reached it."""
    whole = moment.replace(microsecond=0) + datetime.timedelta(seconds=1 if moment.microsecond else 0)
    while datetime.datetime.now(datetime.UTC) < whole:
        time.sleep(0.1)
    return whole


class Newcomer:
    """Runs README commands as written, from a checkout of their own: a directory of links to this one (so a
    relative file such as plan.json lands there), in the virtualenv, with no AWS variable in the environment
    (the inventory says how the emulator is reached), and -e @where.json for this sandbox's directory and ports,
    as sandbox.py's own runs pass them."""

    def __init__(self, base: Path, env: dict):
        self.checkout = base.parent / "checkout"
        self.checkout.mkdir(exist_ok=True)
        for entry in ROOT.iterdir():
            if entry.name != ".git" and not (self.checkout / entry.name).exists():
                (self.checkout / entry.name).symlink_to(entry)
        settings = yaml.safe_load((ROOT / "inventories/local/group_vars/all/sandbox.yml").read_text())
        where = {"sandbox_dir": str(base), **{key: int(env[f"RUNBOOK_{key.upper()}"]) for key in settings
                                              if key.endswith("_port")}}
        self.where = base.parent / "where.json"
        self.where.write_text(json.dumps(where))
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        self.env["PATH"] = f"{Path(sys.executable).parent}:{self.env['PATH']}"
        self.outputs: dict[str, str] = {}

    def run(self, command: str) -> subprocess.CompletedProcess:
        args = shlex.split(command)
        result = subprocess.run([*args, "-e", f"@{self.where}"], cwd=self.checkout, env=self.env,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        self.outputs[args[1]] = result.stdout
        return result


def test_every_readme_procedure_runs_on_the_sandbox(sandbox):
    """The README's Procedures block, command by command in its order, on a sandbox started as make sandbox-up
    starts it; each placeholder gets the value the README says where to find: a target time inside the window
    base-backup.yml printed, a DynamoDB restore time after the emulator says PITR was turned on, the lock ID the
    --check run printed. Each command exits 0 with nothing failed."""
    run, env, base = sandbox
    commands = readme_procedures()
    assert len(commands) >= 40, commands
    placeholders = {token for command in commands for token in shlex.split(command) if re.search(r"=[A-Z]+$", token)}
    assert placeholders == {"target_time=TIME", "restore_time=TIME", "lock_id=ID"}, (
        "a README placeholder this test does not know how to fill: say in the README where its value comes from, "
        f"and here how to read it from the sandbox ({placeholders})")
    newcomer = Newcomer(base, env)
    aws = boto3.session.Session(region_name="us-east-1", aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
    endpoint = f"http://127.0.0.1:{env['RUNBOOK_SANDBOX_AWS_PORT']}"

    def fill(command: str) -> str:
        if "target_time=TIME" in command:
            window = re.search(r"from\s+(\S+Z)\s+until\s+now", newcomer.outputs["playbooks/base-backup.yml"])
            assert window, newcomer.outputs["playbooks/base-backup.yml"]
            command = command.replace("target_time=TIME", f"target_time={zulu(second_at_or_after(utc(window[1])))}")
        if "restore_time=TIME" in command:
            table = re.search(r"table=(\S+)", command)[1]
            pitr = aws.client("dynamodb", endpoint_url=endpoint).describe_continuous_backups(TableName=table)
            earliest = pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
                "EarliestRestorableDateTime"]
            command = command.replace("restore_time=TIME", f"restore_time={zulu(second_at_or_after(earliest))}")
        if "lock_id=ID" in command:
            printed = re.search(r"\bID:?\s+([0-9a-f-]{36})", newcomer.outputs["playbooks/terraform-unlock.yml"])
            assert printed, newcomer.outputs["playbooks/terraform-unlock.yml"]
            command = command.replace("lock_id=ID", f"lock_id={printed[1]}")
        return command

    client = docker.DockerClient(base_url=f"unix://{base}/docker/docker.sock", timeout=30)
    health_url = f"http://127.0.0.1:{env['RUNBOOK_SANDBOX_APP_PORT']}/health"

    def backend() -> dict[str, dict]:
        """The compose backend's containers as `docker ps` shows them: id -> state (and health)."""
        return {c.id: c.attrs["State"] for c in client.containers.list(
            all=True, filters={"label": ["com.docker.compose.project=chat", "com.docker.compose.service=backend"]})}

    def started(state: dict) -> datetime.datetime:  # RFC 3339 with up to nine digits, trailing zeros dropped
        whole, _, fraction = state["StartedAt"].rstrip("Z").partition(".")
        return utc(f"{whole}.{(fraction + '000000')[:6]}Z")

    def serving(state: dict) -> bool:
        return state["Running"] and state.get("Health", {}).get("Status") == "healthy"

    answers: list[int | str] = []

    def probe(until: threading.Event) -> None:
        while not until.is_set():
            try:
                with urllib.request.urlopen(health_url, timeout=5) as answer:
                    answers.append(answer.status)
            except OSError as exc:
                answers.append(str(exc))
            until.wait(0.2)

    for number, written in enumerate(commands, 1):
        command = fill(written)
        before = backend()
        done = threading.Event()
        prober = threading.Thread(target=probe, args=(done,))
        prober.start()
        try:
            result = newcomer.run(command)
        finally:
            done.set()
            prober.join()
        recap = result.stdout.rsplit("PLAY RECAP", 1)[-1]
        assert result.returncode == 0 and not re.search(r"(failed|unreachable)=[1-9]", recap), (
            f"README procedure {number}: {command}\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
        if number == 1:  # "a no-op when a verified backup is under 1h old": make sandbox-up took one
            assert re.search(r"sandbox-postgres\s*: ok=\d+\s+changed=0", recap), recap
        if number == 2:  # "back up now, whatever exists"
            assert re.search(r"sandbox-postgres\s*: ok=\d+\s+changed=[1-9]", recap), recap
        # What a person would look at after the application tier's procedures: docker ps, and the health URL, which
        # answered throughout every run (recover-db stops the backend, not the frontend that serves it).
        after = backend()
        assert answers and set(answers) == {200}, (command, [a for a in answers if a != 200])
        answers.clear()
        if "recover-db.yml -e confirm=true -e backup=latest" in command:  # stopped for the restore, started after
            assert after.keys() == before.keys() and len(after) == 2 and all(map(serving, after.values()))
            assert all(started(after[c]) > started(before[c]) for c in after), "the backend was not stopped"
        if "restart-app.yml -e confirm=true" in command:  # each container restarted, one at a time, healthy first
            assert after.keys() == before.keys() and all(map(serving, after.values()))
            assert all(started(after[c]) > started(before[c]) for c in after)
            assert len({started(state) for state in after.values()}) == 2
        if "scale_target=chat-backend-compose -e compose_replicas=3" in command:
            assert len(after) == 3 and before.keys() < after.keys() and all(map(serving, after.values())), after
        if "scale-undo.yml -e confirm=true -e scale_target=chat-backend-compose" in command:
            assert len(after) == 2 and after.keys() < before.keys() and all(map(serving, after.values())), after
    client.close()


def test_sandbox_down_leaves_no_process_container_or_mount(sandbox):
    run, env, base = sandbox
    client = docker.DockerClient(base_url=f"unix://{base}/docker/docker.sock", timeout=30)
    app_pids = [c.attrs["State"]["Pid"] for c in client.containers.list()]
    client.close()
    pids = pids_of(base)
    assert set(pids) == {"postgres", "redis", "aws", "docker"} and all(alive(p) for p in pids.values())
    down = run("down")
    assert down.returncode == 0
    assert not [name for name, pid in pids.items() if alive(pid)], "stopping leaves no process behind"
    assert len(app_pids) >= 3 and not [pid for pid in app_pids if alive(pid)], "a container outlived the sandbox"
    with open("/proc/mounts") as mounts:
        assert not [line for line in mounts if f"{base}/" in line], "a mount of the sandbox's Docker daemon is left"
    assert run("status").returncode != 0
