"""runbook.recovery resolves from this checkout through .ansible/collections/ansible_collections/runbook/recovery,
a link to the repository root (make creates it too). It must exist before test modules import the collection."""

import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = ROOT / ".ansible/collections/ansible_collections/runbook/recovery"
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to("../../../..")


# -- where the CPU goes ------------------------------------------------------------------------------------------
# make test must stay within its time budget on 2 cores, and the phases are CPU-bound: each test's CPU time (the
# test process and every child it waited for: ansible-playbook and its modules, pg_dump, the AWS CLI) is summed per
# test file, and the files that cost most are listed at the end of the run (from every xdist worker).

CPU_ROOT = ROOT / ".cache" / "test-cpu"
_SPENT = pytest.StashKey[dict]()
# make test runs several pytest sessions side by side (ui, molecule's and the cluster's): each session, with its
# xdist workers, writes to a folder of its own, named by the controller and handed to the workers in the environment.
_DIR_ENV = "RUNBOOK_TEST_CPU_DIR"


def _cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _cpu_dir() -> Path:
    return Path(os.environ[_DIR_ENV])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start_cpu, start_wall = _cpu_seconds(), time.monotonic()
    yield
    spent = item.config.stash.setdefault(_SPENT, {})
    cpu, wall = spent.get(item.fspath.basename, (0.0, 0.0))
    spent[item.fspath.basename] = (cpu + _cpu_seconds() - start_cpu, wall + time.monotonic() - start_wall)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist), before any worker starts
        CPU_ROOT.mkdir(parents=True, exist_ok=True)
        os.environ[_DIR_ENV] = tempfile.mkdtemp(prefix=f"session-{os.getpid()}-", dir=CPU_ROOT)


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and _DIR_ENV in os.environ:
        shutil.rmtree(os.environ.pop(_DIR_ENV), ignore_errors=True)


def pytest_sessionfinish(session):
    spent = session.config.stash.get(_SPENT, {})
    if spent and _DIR_ENV in os.environ:
        worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
        (_cpu_dir() / f"{worker}-{os.getpid()}.json").write_text(json.dumps(spent))


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput") or _DIR_ENV not in os.environ:
        return
    totals: dict[str, list[float]] = {}
    for path in _cpu_dir().glob("*.json"):
        for name, (cpu, wall) in json.loads(path.read_text()).items():
            entry = totals.setdefault(name, [0.0, 0.0])
            entry[0] += cpu
            entry[1] += wall
    if not totals:
        return
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])
    terminalreporter.write_sep("=", "CPU seconds per test file (tests and the processes they waited for)")
    for name, (cpu, wall) in rows[:15]:
        terminalreporter.write_line(f"{cpu:8.1f} s CPU {wall:8.1f} s wall  {name}")
    terminalreporter.write_line(f"{sum(v[0] for v in totals.values()):8.1f} s CPU in all")
