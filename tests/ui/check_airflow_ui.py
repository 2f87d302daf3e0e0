"""A real browser on `make airflow`'s UI: headless Chromium (Debian's chromium and chromedriver, through selenium)
logs in, opens recover_db's trigger form and finds its fields, then triggers health_sweep from the UI and sees
the run succeed. Starts its own Airflow (sandbox/airflow.sh) with a temporary home on a free port; the sandbox
must be up (make ui-check does both). Screenshots land in the temporary home, whose path is printed.

    python tests/ui/check_airflow_ui.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, what: str, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def button(driver, text: str, last: bool = False):
    """The button showing `text` (the last one: the open dialog's, over the page's own)."""
    found = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == text]
    return found[-1] if last else found[0]


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="airflow-ui-check-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(home / "standalone.log", "w")
    airflow = subprocess.Popen(["bash", str(ROOT / "sandbox" / "airflow.sh")], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW_UI_PORT": str(port)})
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1200"):
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    driver = None
    try:
        wait_until(lambda: healthy(base) or airflow.poll() is not None, 240, "the Airflow UI")
        assert airflow.poll() is None, (home / "standalone.log").read_text()[-4000:]
        password = json.loads((home / "passwords.json").read_text())["admin"]
        driver = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)
        wait = WebDriverWait(driver, 60)

        driver.get(base)
        wait.until(expected_conditions.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(password)
        button(driver, "Sign in").click()
        wait.until(lambda d: "/auth/login" not in d.current_url)

        # The recover_db form: its fields, and no trigger without a reason.
        driver.get(f"{base}/dags/recover_db")
        wait_until(lambda: any(b.text.strip() == "Trigger" for b in driver.find_elements(By.TAG_NAME, "button")),
                   120, "recover_db (the DAG processor parses dags/ first)")
        button(driver, "Trigger").click()
        wait_until(lambda: "Run Parameters" in page_text(driver), 30, "the trigger form")
        form = page_text(driver)
        for label in ("Database", "Backup", "Reason", "The database to recover", "latest (the newest verified backup)"):
            assert label in form, f"{label!r} missing from the recover_db form:\n{form}"
        assert not button(driver, "Trigger", last=True).is_enabled(), "recover_db could be triggered without a reason"
        driver.save_screenshot(str(home / "recover_db-form.png"))
        print("recover_db form: Database, Backup, Reason shown; Trigger disabled until a reason is given")

        # health_sweep, triggered from the UI (which also unpauses it), until the run succeeds.
        driver.get(f"{base}/dags/health_sweep")
        wait_until(lambda: any(b.text.strip() == "Trigger" for b in driver.find_elements(By.TAG_NAME, "button")),
                   60, "health_sweep")
        button(driver, "Trigger").click()
        wait_until(lambda: "Trigger Dag - health_sweep" in page_text(driver), 30, "the trigger dialog")
        button(driver, "Trigger", last=True).click()
        wait_until(lambda: "Trigger Dag - health_sweep" not in page_text(driver), 30, "the dialog to close")
        token = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{base}/auth/token", data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"}, method="POST"), timeout=30).read())["access_token"]

        def run_state():
            request = urllib.request.Request(f"{base}/api/v2/dags/health_sweep/dagRuns?run_type=manual",
                                             headers={"Authorization": f"Bearer {token}"})
            runs = json.loads(urllib.request.urlopen(request, timeout=30).read())["dag_runs"]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            return done[0] if done else None

        run = wait_until(run_state, 300, "the health_sweep run to finish", every=5)
        driver.get(f"{base}/dags/health_sweep/runs/{run['dag_run_id']}")
        wait_until(lambda: run["state"] in page_text(driver).lower(), 60,
                   "the run's state on its page")
        driver.save_screenshot(str(home / "health_sweep-run.png"))
        assert run["state"] == "success", f"health_sweep ended {run['state']}"
        print(f"health_sweep triggered from the UI: run {run['dag_run_id']} {run['state']}")
        print(f"screenshots in {home}")
        return 0
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(airflow.pid, signal.SIGTERM)
        try:
            airflow.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(airflow.pid, signal.SIGKILL)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
