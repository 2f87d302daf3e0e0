"""runbook.recovery resolves from this checkout through .ansible/collections/ansible_collections/runbook/recovery,
a link to the repository root (make creates it too). It must exist before test modules import the collection."""

import json
import os
import resource
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

CPU_DIR = ROOT / ".cache" / "test-cpu"
_SPENT = pytest.StashKey[dict]()


def _cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start_cpu, start_wall = _cpu_seconds(), time.monotonic()
    yield
    spent = item.config.stash.setdefault(_SPENT, {})
    cpu, wall = spent.get(item.fspath.basename, (0.0, 0.0))
    spent[item.fspath.basename] = (cpu + _cpu_seconds() - start_cpu, wall + time.monotonic() - start_wall)


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist) starts afresh
        for old in CPU_DIR.glob("*.json") if CPU_DIR.is_dir() else []:
            old.unlink()


def pytest_sessionfinish(session):
    spent = session.config.stash.get(_SPENT, {})
    if spent:
        CPU_DIR.mkdir(parents=True, exist_ok=True)
        worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
        (CPU_DIR / f"{worker}-{os.getpid()}.json").write_text(json.dumps(spent))


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput") or not CPU_DIR.is_dir():
        return
    totals: dict[str, list[float]] = {}
    for path in CPU_DIR.glob("*.json"):
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
