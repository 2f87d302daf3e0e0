"""DAG tests: a private Airflow (its own AIRFLOW_HOME and metadata database under a temp dir, migrated once and shared
by every test of the session; `make dags` runs two sessions side by side, pytest -n 2) and, for the runs that wait for
an approval, an api-server sharing that database, answered over its REST API as a person would in the UI.
Every DAG run is a real dag.test() in its own process, running real playbooks against the integration tests' own
PostgreSQL cluster, Redis and AWS emulator (their fixtures are shared from tests/integration/conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION = ROOT / "tests" / "integration"
sys.path.insert(0, str(INTEGRATION))
_spec = importlib.util.spec_from_file_location("integration_conftest", INTEGRATION / "conftest.py")
integration = importlib.util.module_from_spec(_spec)
sys.modules["integration_conftest"] = integration
_spec.loader.exec_module(integration)
# The integration fixtures and helpers (pg, chat_db, redis_server, aws_emulator, Workspace, ...), shared as they are.
globals().update({name: value for name, value in vars(integration).items() if not name.startswith("_")})

BIN = Path(sys.executable).parent
APPROVER = "approver"
# dag.test() runs are triggered by "dag_test" (Airflow's own name for them): a user of that name may log in, and is
# among the approvers configured, so a test can show that the requester still cannot approve their own run.
REQUESTER = "dag_test"
OUTSIDER = "viewer_op"  # may log in and answer approvals in general, but is not a configured approver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Airflow:
    home: Path
    env: dict
    api: str | None = None
    passwords: dict | None = None

    def run_dag(self, module: str, dag_id: str, conf: dict | None = None, env: dict | None = None,
                background: bool = False):
        """dag.test() in a new process; its output, and the RESULT line as a dict (None if it never printed one)."""
        command = [sys.executable, str(ROOT / "tests" / "dags" / "run_dag.py"), module, dag_id]
        if conf is not None:
            command.append(json.dumps(conf))
        proc = subprocess.Popen(command, cwd=ROOT, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        return proc if background else finish(proc)

    # -- the REST API, as the UI uses it --------------------------------------------------------------
    def token(self, user: str = APPROVER) -> str:
        body = json.dumps({"username": user, "password": self.passwords[user]}).encode()
        request = urllib.request.Request(f"{self.api}/auth/token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, user: str = APPROVER) -> dict:
        request = urllib.request.Request(f"{self.api}/api/v2{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self.token(user)}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def wait_for_approval_request(self, dag_id: str, proc: subprocess.Popen, timeout: float = 300) -> dict:
        """The pending approval of the run dag.test() started (the Required Actions list of the UI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before asking for an approval:\n{proc.stdout.read()[-6000:]}")
            pending = self.call("GET", f"/dags/{dag_id}/dagRuns/~/hitlDetails?response_received=false")
            # Still waiting (an approval marked success by hand in an earlier run is unanswered, and not waiting).
            details = [detail for detail in pending.get("hitl_details", [])
                       if detail["task_instance"]["state"] in ("awaiting_input", "deferred")]
            if details:
                return details[0]
            time.sleep(2)
        raise AssertionError(f"no approval request from {dag_id} within {timeout} s")

    def answer(self, detail: dict, option: str, user: str = APPROVER) -> dict:
        ti = detail["task_instance"]
        return self.call("PATCH", f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/"
                                  f"{ti['map_index']}/hitlDetails", {"chosen_options": [option], "params_input": {}},
                         user=user)


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, and SIGKILL if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[str, dict | None]:
    output, _ = proc.communicate(timeout=timeout)
    result = next((json.loads(line[len("RESULT "):]) for line in output.splitlines() if line.startswith("RESULT ")),
                  None)
    return output, result


@pytest.fixture(scope="session")
def airflow(tmp_path_factory) -> Airflow:
    home = tmp_path_factory.mktemp("airflow")
    passwords = {user: secrets.token_urlsafe(12) for user in (APPROVER, REQUESTER, OUTSIDER)}
    (home / "passwords.json").write_text(json.dumps(passwords))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{APPROVER}:admin,{REQUESTER}:user,{OUTSIDER}:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(24),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "ANSIBLE_HOME": str(ROOT / ".ansible"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".ansible" / "collections"),
        "ANSIBLE_LOCAL_TEMP": str(home / "ansible-tmp"),
        "RUNBOOK_RETRY_DELAY": "1",
        "RUNBOOK_APPROVERS": json.dumps([APPROVER, REQUESTER]),
    }
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
    return Airflow(home, env, passwords=passwords)


@pytest.fixture(scope="session")
def api_server(airflow):
    """`airflow api-server` on the same metadata database: the REST API a person's UI uses."""
    port = free_port()
    log = open(airflow.home / "api-server.log", "w")
    proc = subprocess.Popen([str(BIN / "airflow"), "api-server", "--port", str(port), "--host", "127.0.0.1"],
                            env={**airflow.env, "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    airflow.api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{airflow.api}/api/v2/monitor/health", timeout=5):
                break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                started = (airflow.home / "api-server.log").read_text()[-4000:]
                raise RuntimeError(f"the api-server did not start:\n{started}") from exc
            time.sleep(1)
    yield airflow
    stop(proc, timeout=30)
    log.close()
