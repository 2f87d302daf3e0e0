"""The helper's run itself: stopping a task (on_kill) stops ansible-playbook and what it started, and an extra
variable never reaches the command line of ansible-playbook; the private directory a killed run left is removed by
the next run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

sys.path.insert(0, str(ROOT / "dags"))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory with one slow playbook and a local inventory (the helper's project setting)."""
    (tmp_path / "playbooks").mkdir()
    marker = tmp_path / "started"
    (tmp_path / "playbooks" / "slow.yml").write_text(yaml.safe_dump([{
        "name": "Slow", "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "Work for a long time", "ansible.builtin.shell": f"touch {marker}; exec sleep 300"}]}]))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"here": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    monkeypatch.setenv("RUNBOOK_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("RUNBOOK_INVENTORY", "inventory.yml")
    return tmp_path, marker


def sleepers(marker: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"touch {marker}; exec sleep 300|sleep 300"], capture_output=True,
                           text=True).stdout.split()
    return [pid for pid in found if Path(f"/proc/{pid}/cmdline").exists()
            and "sleep" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]


def test_on_kill_stops_the_playbook(project):
    from runbook_airflow import PlaybookFailed, PlaybookOperator

    _project, marker = project
    operator = PlaybookOperator(task_id="slow", playbook="slow.yml", extravars={"token": "s3cr3t-value"})
    outcome = {}

    def run():
        try:
            outcome["result"] = operator.execute({})
        except PlaybookFailed as exc:
            outcome["error"] = str(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline and worker.is_alive(), outcome
        time.sleep(0.5)
    # The extra variable went through a file: no process of the run shows it on its command line.
    commands = [Path(f"/proc/{pid}/cmdline").read_text(errors="replace") for pid in os.listdir("/proc")
                if pid.isdigit() and Path(f"/proc/{pid}/cmdline").exists()]
    assert not any("s3cr3t-value" in command for command in commands)

    stopped_at = time.monotonic()
    operator.on_kill()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert time.monotonic() - stopped_at < 60
    assert "was stopped before it finished" in outcome.get("error", ""), outcome
    time.sleep(1)
    assert sleepers(marker) == []


def test_the_private_directory_of_a_killed_run_is_removed_at_the_next_start(project, tmp_path, monkeypatch):
    """A task killed with SIGKILL never reaches its `finally`: its private directory (extravars with credentials)
    stays behind. The next run removes it before it starts, and leaves a running one's alone."""
    from runbook_airflow import PlaybookOperator

    monkeypatch.setenv("RUNBOOK_RUNNER_DIR", str(tmp_path / "runner"))
    made = subprocess.run([sys.executable, "-c", "import os, sys, signal; sys.path.insert(0, 'dags');"
                           "from runbook_airflow import private_dir; d = private_dir();"
                           "open(os.path.join(d, 'extravars'), 'w').write('login_password: s3cret');"
                           "print(d, flush=True); os.kill(os.getpid(), signal.SIGKILL)"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ})
    killed = Path(made.stdout.strip())
    assert (killed / "extravars").exists(), made.stderr  # what a killed task leaves
    assert oct((tmp_path / "runner").stat().st_mode & 0o777) == "0o700"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, 'dags');"
                               "from runbook_airflow import private_dir; print(private_dir(), flush=True);"
                               "time.sleep(300)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        running = Path(holder.stdout.readline().strip())
        (project[0] / "playbooks" / "quick.yml").write_text(yaml.safe_dump([{
            "name": "Quick", "hosts": "all", "gather_facts": False,
            "tasks": [{"name": "Nothing", "ansible.builtin.debug": {"msg": "hello"}}]}]))
        PlaybookOperator(task_id="quick", playbook="quick.yml").execute({})
        assert not killed.exists() and running.exists()
        assert list((tmp_path / "runner").iterdir()) == [running]  # and its own, removed when it ended
    finally:
        holder.kill()
        holder.wait()
