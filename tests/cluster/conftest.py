"""The Airflow cluster of `make airflow-cluster` (sandbox/airflow_cluster.py), started ONCE for this directory on
servers of the tests' own: a PostgreSQL server for Airflow's metadata, three for a fleet of databases, a Redis for
the broker, every one on a free loopback port under a temp dir, and AIRFLOW_HOME there too. `make cluster` runs this
directory in one pytest process (no xdist: the cluster is shared by every test, started once)."""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sandbox.airflow_cluster import AirflowCluster
from sandbox.pgcluster import PgCluster
from sandbox.sandbox import fleet_inventory, private_fleet

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("integration_conftest", ROOT / "tests" / "integration" / "conftest.py")
integration = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("integration_conftest", integration)
_spec.loader.exec_module(integration)
RedisServer, free_port, new_cluster = integration.RedisServer, integration.free_port, integration.new_cluster

SERVERS, DATABASES = 3, 10  # 30 databases on 3 servers
DAGS = ("backup_postgres", "verify_backups", "health_sweep", "recover_db")


@dataclass
class Fleet:
    servers: list[PgCluster]
    workdir: Path
    inventory: Path

    def databases(self) -> dict[str, str]:
        """{database: host}"""
        hosts = yaml.safe_load(self.inventory.read_text())["all"]["children"]["postgres"]["hosts"]
        return {db: host for host, hostvars in hosts.items() for db in hostvars["pg_databases"]}

    def backup_root(self, host: str) -> Path:
        return self.workdir / "backups" / host

    def write(self, path: Path, **host_vars) -> Path:
        """An inventory of this fleet, with `host_vars` on every server (the fleet's own: pg_backup_skip_if_newer_than
        0, so every run backs up)."""
        path.write_text(fleet_inventory(self.servers, DATABASES, self.workdir, header="The cluster tests' fleet.",
                                        **{"pg_backup_skip_if_newer_than": 0, **host_vars}))
        return path


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fleet")
    servers = private_fleet(SERVERS, DATABASES, free_port, "rr-fleet")
    try:
        found = Fleet(servers, workdir, workdir / "fleet.yml")
        found.write(found.inventory)
        yield found
    finally:
        for server in servers:
            server.destroy()


@pytest.fixture(scope="session")
def cluster(fleet, tmp_path_factory):
    """api-server, scheduler, dag-processor, triggerer and worker-1/worker-2, as make airflow-cluster starts them.
    Only the runs a test triggers (and health_sweep's every 15 minutes), retries after 2 s, a task whose worker died
    failed after 20 s without a heartbeat, one it took unstarted queued again after 90 s, DAG files parsed once."""
    metadata = new_cluster()
    redis = RedisServer()
    airflow = AirflowCluster(
        home=tmp_path_factory.mktemp("airflow"), port=free_port(), metadata=metadata, redis_port=redis.port,
        inventory=str(fleet.inventory), environ={
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # A worker killed just after it took a task from the broker, before the task started, takes the task
            # with it unstarted: the broker holds it unacknowledged and Airflow sees it queued until
            # task_queued_timeout (600 s by default, one killed-worker test in four: 730 s of its 900 s wait), then
            # queues it again. Here a task waits in the broker only behind one backup (seconds), so 90 s is a wide
            # margin; the check every 10 s instead of 120.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3600",
            "RUNBOOK_RETRY_DELAY": "2",
            "ANSIBLE_LOCAL_TEMP": str(fleet.workdir / "ansible-tmp")})
    try:
        airflow.up()
        wait_for_dags(airflow, DAGS)
        skip_the_missed_runs(airflow, ("backup_postgres", "health_sweep"))
        yield airflow
    finally:
        airflow.down()
        redis.stop()
        metadata.destroy()


def wait_for_dags(airflow: AirflowCluster, dag_ids, timeout: float = 240) -> None:
    """Until the dag-processor has serialized them (a trigger before that is a 404)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {dag["dag_id"] for dag in airflow.call("GET", "/dags?limit=100")["dags"]}
        if set(dag_ids) <= found or time.monotonic() > deadline:
            assert set(dag_ids) <= found, f"DAGs not parsed after {timeout} s: {set(dag_ids) - found}"
            return
        time.sleep(2)


def skip_the_missed_runs(airflow: AirflowCluster, dag_ids, timeout: float = 240) -> None:
    """Unpause the DAGs and let the run of the last missed interval that unpausing makes (catchup=False) end on its
    own, on an inventory that does not exist, so it acts on nothing: the tests' triggered runs are the only ones that
    act. (Failing that run over the REST API instead raced the worker that had just started its task: the API's
    update of the run and the task's start deadlocked in the metadata database, a 500 from the API.)"""
    airflow.set_variable("runbook_inventory", "/nonexistent/inventory.yml")
    try:
        for dag_id in dag_ids:
            airflow.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        deadline = time.monotonic() + timeout
        for dag_id in dag_ids:
            while not (runs := [run for run in airflow.call("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
                                if run["run_type"] == "scheduled"]):
                assert time.monotonic() < deadline, f"unpausing {dag_id} made no run of its missed interval"
                time.sleep(1)
            for run in runs:
                ended = airflow.wait_run(dag_id, run["dag_run_id"], timeout=max(1.0, deadline - time.monotonic()))
                assert ended["state"] in ("success", "failed"), f"the missed run of {dag_id} did not end: {ended}"
    finally:
        airflow.call("DELETE", "/variables/runbook_inventory")
