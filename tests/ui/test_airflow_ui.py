"""recover_db driven in the Airflow UI by a real browser, as the on-call person does it: log in, fill in the trigger
form, trigger, find the approval in Browse -> Required Actions, read the plan and approve (or reject) it with a click,
and watch the run end on its page. The run is a real one (scheduler, LocalExecutor, real playbooks): approved, the
chat database's rows are back; rejected, apply and verify are skipped and nothing changed.

Selectors are the UI's own stable hooks: data-testid (trigger-dag-button, trigger-dag-submit, hitl-option-Approve,
table-cell-*, state-badge), aria-label (Browse, Required Actions) and the form fields' names (element_<param>)."""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

import psycopg
import pytest
from conftest import APPROVER, REQUESTER, Workspace, set_variable, table_fingerprints
from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

REASON = "INC-4711 messages lost, seen in the UI"


def css(selector: str):
    return By.CSS_SELECTOR, selector


class AirflowUI:
    """What a person does in the Airflow UI, with explicit waits on what the page shows."""

    def __init__(self, driver, airflow):
        self.driver, self.airflow, self.base = driver, airflow, airflow.api

    def wait(self, condition, what: str, timeout: float = 30):
        def checked(driver):
            if self.airflow.scheduler.poll() is not None:
                log = (self.airflow.home / "scheduler.log").read_text(errors="replace")[-4000:]
                raise AssertionError(f"the scheduler ended while waiting for {what}:\n{log}")
            return condition(driver)

        return WebDriverWait(self.driver, timeout, poll_frequency=0.5,
                             ignored_exceptions=(StaleElementReferenceException,)).until(
            checked, message=f"timed out after {timeout:.0f} s waiting for {what} (at {self.driver.current_url})")

    def click(self, locator, what: str, timeout: float = 30):
        """Click once the element is there and enabled (again if a toast was over it at that moment)."""
        def clicked(driver):
            element = ec.element_to_be_clickable(locator)(driver)
            if not element:
                return False
            try:
                element.click()
            except ElementClickInterceptedException:
                return False
            return True

        self.wait(clicked, what, timeout)

    def log_in(self, user: str, password: str) -> None:
        self.driver.get(self.base)
        self.wait(ec.visibility_of_element_located((By.NAME, "username")), "the login form", 60).send_keys(user)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.click(css("form button[type=submit]"), "Sign in")
        self.wait(lambda d: "/auth/login" not in d.current_url and d.find_elements(*css("[data-testid=nav-sidebar]")),
                  "the home page after signing in", 60)

    def log_out(self) -> None:
        """Forget the session (the UI keeps its token in a cookie and in the page's storage)."""
        self.driver.delete_all_cookies()
        self.driver.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")

    def trigger(self, dag_id: str, fields: dict[str, str]) -> str:
        """Open the DAG, fill in its trigger form, trigger; the new run's id (the UI opens the run's page)."""
        self.driver.get(f"{self.base}/dags/{dag_id}")
        toggle = css("[data-testid=toggle-pause][data-state]")
        paused = self.wait(ec.presence_of_element_located(toggle), f"{dag_id}'s pause switch", 60) \
            .get_attribute("data-state") == "unchecked"
        self.click(css("[data-testid=trigger-dag-button]"), f"{dag_id}'s Trigger button", 60)
        if paused:  # a manual DAG starts paused: the form offers to unpause it, and must (or the run never starts)
            self.wait(lambda d: any(f"Unpause {dag_id} on trigger" in box.text and
                                    box.get_attribute("data-state") == "checked"
                                    for box in d.find_elements(*css("[data-scope=checkbox][data-part=root]"))),
                      f"'Unpause {dag_id} on trigger' ticked")
        for name, value in fields.items():
            field = self.wait(ec.visibility_of_element_located((By.NAME, f"element_{name}")), f"the {name} field")
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(Keys.DELETE)
            field.send_keys(value)
            self.wait(lambda d, f=field, v=value: f.get_attribute("value") == v, f"{name} to read {value!r}")
        self.click(css("[data-testid=trigger-dag-submit]"), "the form's Trigger button (enabled once it is valid)")
        found = self.wait(lambda d: re.search(rf"/dags/{dag_id}/runs/([^/?#]+)$", d.current_url),
                          "the new run's page", 60)
        self.wait(ec.presence_of_element_located(css("[data-testid=toggle-pause][data-state=checked]")),
                  f"{dag_id} unpaused")
        return unquote(found.group(1))

    def task_states(self) -> dict[str, str]:
        """The run page's Task Instances table: task id -> state, as shown."""
        states = {}
        for row in self.driver.find_elements(By.CSS_SELECTOR, "[data-testid=table-list] tbody tr"):
            task = row.find_elements(*css("[data-testid=table-cell-task_display_name]"))
            state = row.find_elements(*css("[data-testid=table-cell-state]"))
            if task and state:
                states[task[0].text.strip()] = state[0].text.strip()
        return states

    def wait_for_task(self, task: str, state: str, timeout: float, logs) -> None:
        """On the run's page (it refreshes itself while the run is active), until `task` shows `state`."""
        def shown(driver):
            states = self.task_states()
            if "Failed" in states.values():
                raise AssertionError(f"a task failed before {task} was {state}: {states}\n{logs()}")
            return states.get(task) == state

        self.wait(shown, f"{task} to be {state!r} on the run's page", timeout)

    def open_required_action(self, dag_id: str, run_id: str, task: str):
        """Browse -> Required Actions, then the run's pending action: its subject opens the form."""
        self.click(css("button[aria-label=Browse]"), "the Browse menu")
        self.click(css("[role=menuitem][aria-label='Required Actions']"), "Browse -> Required Actions")
        link = css(f"[data-testid=table-cell-subject] a[href$='/dags/{dag_id}/runs/{run_id}/tasks/{task}"
                   f"/required_actions']")
        row = self.wait(ec.element_to_be_clickable(link), f"the required action of {run_id} in the list")
        row.click()
        self.wait(ec.element_to_be_clickable(css("[data-testid^=hitl-option-]")), "the approval's options")
        return self.driver.find_element(*css("[data-testid=main-content]")).text

    def answer(self, option: str) -> None:
        self.click(css(f"[data-testid='hitl-option-{option}']"), f"the {option} button")
        self.wait(lambda d: "Response received" in d.find_element(*css("[data-testid=main-content]")).text,
                  "the UI to confirm the response")

    def run_outcome(self, dag_id: str, run_id: str, timeout: float, logs) -> dict[str, str]:
        """The run's page, until its state badge shows an end; the run must have succeeded. Task states, as shown."""
        self.click(css(f"a[href='/dags/{dag_id}/runs/{run_id}']"), "the run's link")

        final = {"Success", "Failed", "Skipped", "Upstream Failed"}

        def ended(driver):
            # The run's own page (right after the click the previous page, whose header badge is the approve
            # task's, can still be shown), its badge at an end, and its task table showing every final state.
            if not unquote(driver.current_url).endswith(f"/dags/{dag_id}/runs/{run_id}"):
                return None
            badge = driver.find_elements(*css("[data-testid=header-card] [data-testid=state-badge]"))
            text = badge[0].text.strip() if badge else ""
            states = self.task_states()
            if text in ("Success", "Failed") and len(states) == 5 and set(states.values()) <= final:
                return text
            return None

        state = self.wait(ended, f"{run_id} to end and its task table to show every task's final state", timeout)
        if state != "Success":
            raise AssertionError(f"{run_id} ended {state}: {self.task_states()}\n{logs()}")
        return self.task_states()


def task_logs(airflow, dag_id: str, run_id: str):
    """The run's task logs (their tails), for assertion messages."""
    def read() -> str:
        folder = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        files = sorted(folder.rglob("*.log")) if folder.is_dir() else []
        scheduler = airflow.home / "scheduler.log"
        tails = [f"== {f.relative_to(folder)}\n{f.read_text(errors='replace')[-3000:]}" for f in files]
        if not files and scheduler.exists():
            tails.append(f"== scheduler.log\n{scheduler.read_text(errors='replace')[-3000:]}")
        return "\n".join(tails)
    return read


def executor_let_go(airflow, dag_id: str, run_id: str, task: str, timeout: float = 120) -> None:
    """Wait until the scheduler has taken the executor's report that the task's first execution ended (it parked
    in awaiting_input). An answer given before that report (seen here when a loaded machine delayed the report by
    5 s) re-queues the task, and the late report of the first execution then fails it ("executor reported that
    the task instance finished with state success, but the task instance's state attribute is queued"): an Airflow
    race that a person, who reads the plan first, does not meet."""
    line = f"TaskInstance Finished: dag_id={dag_id}, task_id={task}, run_id={run_id},"
    log = airflow.home / "scheduler.log"
    deadline = time.monotonic() + timeout
    while not any(line in row and "state=awaiting_input" in row
                  for row in log.read_text(errors="replace").splitlines()):
        assert time.monotonic() < deadline, f"the scheduler never took the executor's report on {task} of {run_id}"
        time.sleep(0.5)


def damage(pg, chat_db) -> None:
    with psycopg.connect(**pg.conninfo(chat_db), autocommit=True) as conn:
        conn.execute("DELETE FROM chat_messages WHERE id % 2 = 0")
        conn.execute("UPDATE users SET email = 'lost@example.com' WHERE id = 1")


@pytest.fixture
def ui(browser, scheduler):
    return AirflowUI(browser, scheduler)


@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_recover_db_from_the_ui(ui, scheduler, pg, chat_db, tmp_path, answer):
    ws = Workspace(pg, [chat_db], tmp_path)
    set_variable(scheduler, "runbook_inventory", str(ws.inventory))
    assert ws.play("backup-db.yml").rc == 0
    backed_up = table_fingerprints(pg, chat_db)
    damage(pg, chat_db)
    damaged = table_fingerprints(pg, chat_db)
    assert damaged != backed_up

    # Four eyes: one person triggers, another approves.
    ui.log_in(REQUESTER, scheduler.passwords[REQUESTER])
    run_id = ui.trigger("recover_db", {"database": chat_db, "backup": "latest", "reason": REASON})
    logs = task_logs(scheduler, "recover_db", run_id)
    ui.wait_for_task("approve", "Awaiting Input", 240, logs)
    executor_let_go(scheduler, "recover_db", run_id, "approve")
    assert table_fingerprints(pg, chat_db) == damaged  # the plan changed nothing
    ui.log_out()
    ui.log_in(APPROVER, scheduler.passwords[APPROVER])

    shown = ui.open_required_action("recover_db", run_id, "approve")
    assert "recover_db: apply this plan?" in shown and f"Requested by {REQUESTER}: {REASON}" in shown, shown
    assert "recover-db.yml --check" in shown and chat_db in shown, shown
    assert "Plan digest:" in shown and "sha256:" in shown, shown
    ui.answer(answer)

    tasks = ui.run_outcome("recover_db", run_id, 240, logs)
    audit = [r for r in ws.audit() if r["procedure"] == "recover-db"]
    if answer == "Approve":
        assert tasks == {"plan": "Success", "approve": "Success", "approve_2": "Success", "apply": "Success",
                         "verify": "Success"}, tasks
        assert table_fingerprints(pg, chat_db) == backed_up  # the rows are back
        [record] = audit
        assert record["reason"] == REASON and record["actor"] == f"{REQUESTER} via Airflow recover_db/{run_id}", record
        assert record["requester"] == REQUESTER and record["approvers"] == [APPROVER], record
    else:
        assert tasks == {"plan": "Success", "approve": "Success", "approve_2": "Skipped", "apply": "Skipped",
                         "verify": "Skipped"}, tasks
        assert table_fingerprints(pg, chat_db) == damaged
        assert audit == []

