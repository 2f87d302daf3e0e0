"""The sandbox a newcomer starts with `make demo`: idempotent start, seeded services, clean stop."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import boto3
import docker
import psycopg
import pytest
from conftest import ROOT, free_port

from sandbox.pgcluster import process_alive


@pytest.fixture
def sandbox():
    # Not under pytest's tmp_path: that is private to root, and the cluster runs as an unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="rr-sandbox-"))
    base.chmod(0o755)
    env = {**os.environ, "RUNBOOK_SANDBOX_DIR": str(base / "sandbox"),
           "RUNBOOK_SANDBOX_PG_PORT": str(free_port()), "RUNBOOK_SANDBOX_REDIS_PORT": str(free_port()),
           "RUNBOOK_SANDBOX_AWS_PORT": str(free_port()), "RUNBOOK_SANDBOX_APP_PORT": str(free_port())}

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "sandbox" / "sandbox.py"), *args], env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

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


def test_sandbox_up_twice_status_and_down(sandbox):
    run, env, base = sandbox
    first = run("up")
    assert first.returncode == 0, first.stderr
    assert "postgres started         yes" in first.stdout
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
    app_pids = [c.attrs["State"]["Pid"] for c in client.containers.list()]
    client.close()

    pids = pids_of(base)
    assert set(pids) == {"postgres", "redis", "aws", "docker"} and all(alive(p) for p in pids.values())
    down = run("down")
    assert down.returncode == 0
    assert not [name for name, pid in pids.items() if alive(pid)], "stopping leaves no process behind"
    assert len(app_pids) == 3 and not [pid for pid in app_pids if alive(pid)], "a container outlived the sandbox"
    with open("/proc/mounts") as mounts:
        assert not [line for line in mounts if f"{base}/" in line], "a mount of the sandbox's Docker daemon is left"
    assert run("status").returncode != 0
