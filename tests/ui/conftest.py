"""The Airflow UI in a real browser: the DAG tests' private Airflow (tests/dags/conftest.py: its home, metadata
database and api-server) plus a scheduler, so a run triggered in the UI really runs, with its real playbooks, against
the integration tests' own PostgreSQL cluster. Headless Chromium (Debian's chromium and chromedriver) drives the UI
through selenium. When a test fails, a screenshot and the page's HTML are kept under .cache/ui-failures/."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("dags_conftest", ROOT / "tests" / "dags" / "conftest.py")
dags = importlib.util.module_from_spec(_spec)
sys.modules["dags_conftest"] = dags
_spec.loader.exec_module(dags)
# The DAG tests' fixtures (airflow, api_server) and, through them, the integration ones (pg, chat_db, ...).
globals().update({name: value for name, value in vars(dags).items() if not name.startswith("_")})

FAILURES = ROOT / ".cache" / "ui-failures"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", \
    shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def scheduler(api_server):
    """A scheduler (LocalExecutor) on the api-server's metadata database, after the DAGs of dags/ are serialized
    there once (what the dag-processor would do; nothing here changes dags/ while the tests run). Since Airflow 3.3
    an approval parks its task in `awaiting_input`: no triggerer is needed."""
    env = {**api_server.env, "AIRFLOW__API__BASE_URL": api_server.api,
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_server.api}/execution/",
           "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2"}
    serialized = subprocess.run([str(dags.BIN / "airflow"), "dags", "reserialize"], env=env, cwd=ROOT,
                                capture_output=True, text=True)
    assert serialized.returncode == 0, serialized.stdout[-3000:] + serialized.stderr[-3000:]
    log = open(api_server.home / "scheduler.log", "w")
    proc = subprocess.Popen([str(dags.BIN / "airflow"), "scheduler"], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    api_server.scheduler = proc  # the UI tests' waits fail at once, with its log, if it ends
    yield api_server
    dags.stop(proc, timeout=60)
    log.close()


def set_variable(airflow, key: str, value: str) -> None:
    """An Airflow Variable, as an administrator sets it (Admin -> Variables)."""
    try:
        airflow.call("PATCH", f"/variables/{key}", {"key": key, "value": value})
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        airflow.call("POST", "/variables", {"key": key, "value": value})


@pytest.fixture
def browser(scheduler, request):
    """Headless Chromium with a new empty profile, through chromedriver."""
    from selenium import webdriver

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver", pytrace=False)
    profile = tempfile.mkdtemp(prefix="rr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1440,1100", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    request.node._ui_driver = driver
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed UI test keeps the page it ended on: a screenshot and the HTML, their paths in the report."""
    report = yield
    driver = getattr(item, "_ui_driver", None)
    if report.when == "call" and report.failed and driver is not None:
        FAILURES.mkdir(parents=True, exist_ok=True)
        stem = FAILURES / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.name)}-{time.strftime('%Y%m%dT%H%M%S')}"
        kept, url = [], "?"
        try:
            url = driver.current_url
            driver.save_screenshot(f"{stem}.png")
            kept.append(f"{stem}.png")
            Path(f"{stem}.html").write_text(driver.page_source)
            kept.append(f"{stem}.html")
        except Exception as exc:  # the browser itself may be what failed
            kept.append(f"(could not capture the page: {exc})")
        text = "\n".join([f"the page at the failure ({url}):", *kept])
        report.sections.append(("UI failure: screenshot and HTML", text))
        sys.stderr.write(f"\n{text}\n")
    return report
