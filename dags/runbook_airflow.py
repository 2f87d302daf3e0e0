"""How Airflow runs this project's playbooks: one operator that runs a playbook with ansible-runner, and the
pieces every DAG shares (defaults, the failure alert, the plan -> approve -> apply -> verify chain).

Not a DAG file (.airflowignore): the DAG files import it. Nothing here runs at import time.

Where the project and the inventory are: Airflow Variables `runbook_project_dir` and `runbook_inventory`, else the
environment (RUNBOOK_PROJECT_DIR, RUNBOOK_INVENTORY), else this checkout and inventories/local.
Credentials: the `aws_default` connection (if defined) reaches the AWS modules through the runner's environment
(AWS_ACCESS_KEY_ID, ...); a PostgreSQL connection (`runbook_postgres`, or the one the Variable
`runbook_postgres_conn_id` names) becomes the `pg_connection` extra variable, written by ansible-runner to a 0600 file
of a private directory that is deleted after the run: never on a command line, never in the task log.

A fleet (the CeleryExecutor): the tasks mapped per host or per database take from the host's inventory variables
the Airflow pool of its server (`airflow_pool_slots`: pool `postgres_<host>` of that size), the Celery queue of its
network zone (`airflow_queue`) and an execution timeout (`airflow_execution_timeout`); runbook_policy.py, the
scheduler's cluster policy, applies the pool and the queue, which Airflow otherwise takes the same for every map index.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

CHECKOUT = Path(__file__).resolve().parents[1]
OWNER = "sre"
# Result keys of these modules are returned as XCom (the backup made, the tables vacuumed, the findings, ...).
COLLECTED = (
    "runbook.recovery.pg_backup", "runbook.recovery.pg_verify_backup", "runbook.recovery.pg_restore_db",
    "runbook.recovery.pg_maintenance", "runbook.recovery.pg_integrity", "runbook.recovery.pg_sessions",
    "runbook.recovery.health_report", "runbook.recovery.log_retention", "runbook.recovery.dynamodb_backup",
    "runbook.recovery.cfn_failed_stacks", "runbook.recovery.lambda_concurrency",
    "runbook.recovery.apigateway_stage_throttle", "runbook.recovery.ecs_service_count", "runbook.recovery.pg_pitr",
    "runbook.recovery.pg_base_backup",
    # The rest of what a manual procedure's plan shows its approvers (runbook_approval.plan_lines).
    "runbook.recovery.terraform_lock", "runbook.recovery.lambda_alias_rollback", "runbook.recovery.ecs_deployment",
    "runbook.recovery.app_services", "runbook.recovery.app_services_info", "runbook.recovery.lambda_capacity",
    "runbook.recovery.dynamodb_capacity", "runbook.recovery.dynamodb_pitr", "runbook.recovery.cdk_bootstrap_check",
    "community.postgresql.postgresql_set",
)
# The result key under which a role's "Show the plan" debug output is kept.
SHOWN_PLAN = "shown_plan"
_DROPPED_KEYS = ("invocation", "diff", "stdout_lines", "stderr_lines", "item", "ansible_loop_var")
# The host variables of a fleet's inventory that place a mapped task (InventoryTargets, runbook_policy.py).
POOL_SLOTS, QUEUE, TIMEOUT = "airflow_pool_slots", "airflow_queue", "airflow_execution_timeout"
# The XCom key under which InventoryTargets lists the pools its targets need: {name: slots}.
POOLS_XCOM = "runbook_pools"


class PlaybookFailed(Exception):
    """The play failed: the message lists each failed task with its host and the module's message."""


class InputRefused(PlaybookFailed):
    """A value from a trigger form or a run's conf was refused before anything ran: the message names the field."""


# Jinja's three openers: a value holding one would be a template if Ansible rendered it (ansible-core 2.19 renders
# extra variables read from a file). Form values are written !unsafe as well, so even an unrefused one stays data.
TEMPLATE_MARKERS = ("{{", "{%", "{#")


def leaves(value, path: str = ""):
    """(dotted path, value) of every scalar inside nested dicts and lists."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaves(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, inner in enumerate(value):
            yield from leaves(inner, f"{path}[{index}]")
    else:
        yield path, value


def refuse_templates(values: dict, what: str = "field") -> None:
    """Refuse, naming the field, any string value that holds a template opener: a form value is data, never code."""
    for path, value in leaves(values):
        if isinstance(value, str) and any(marker in value for marker in TEMPLATE_MARKERS):
            raise InputRefused(
                f"The {what} {path!r} holds a template opener ({', '.join(TEMPLATE_MARKERS)}), which is never "
                f"accepted: give the plain value (a name, an id, a time). Nothing was run.")


def unsafe_yaml(value) -> str:
    """`value` as YAML in which every string is tagged !unsafe: Ansible keeps each as the text it is and renders no
    template in it (JSON's string syntax is YAML's double-quoted scalar)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {unsafe_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(unsafe_yaml(v) for v in value) + "]"
    if isinstance(value, str):
        return "!unsafe " + json.dumps(value)
    return json.dumps(value, default=str)


class LookupFailed(RuntimeError):
    """An Airflow Variable or Connection could not be read (not: it is not defined). The task fails: falling back
    would run against the sandbox's inventory or the worker's own AWS role instead of the ones configured."""


def setting(name: str, default: str) -> str:
    """An Airflow Variable, else the environment variable of the same name in capitals, else the default. Only a
    Variable that is not defined falls back; one that cannot be read (a secrets backend that refuses, an
    api-server that does not answer) fails the task, naming it."""
    from airflow.sdk import Variable

    try:
        value = Variable.get(f"runbook_{name}", default=None)
    except Exception as exc:
        raise LookupFailed(f"the Airflow Variable runbook_{name} could not be read ({type(exc).__name__}: {exc}); "
                           "nothing was run. Fix the secrets backend or the Variable, then clear the task.") from exc
    return value or os.environ.get(f"RUNBOOK_{name.upper()}") or default


def _connection(conn_id: str):
    """The Airflow Connection, or None when it is not defined (the inventory's own settings apply then); one that
    cannot be read fails the task."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:
        raise LookupFailed(f"the Airflow Connection {conn_id} could not be read ({type(exc).__name__}: {exc}); "
                           "nothing was run. Fix the secrets backend or the Connection, then clear the task.") from exc


def aws_environment() -> dict[str, str]:
    """The `aws_default` connection as the environment boto3 reads (keys, region, endpoint)."""
    conn = _connection(setting("aws_conn_id", "aws_default"))
    if conn is None:
        return {}
    extra = conn.extra_dejson or {}
    env = {"AWS_ACCESS_KEY_ID": conn.login, "AWS_SECRET_ACCESS_KEY": conn.password,
           "AWS_SESSION_TOKEN": extra.get("aws_session_token"), "AWS_DEFAULT_REGION": extra.get("region_name"),
           "AWS_REGION": extra.get("region_name"), "AWS_ENDPOINT_URL": extra.get("endpoint_url"),
           "AWS_PROFILE": extra.get("profile_name")}
    return {key: str(value) for key, value in env.items() if value}


def postgres_extravars() -> dict[str, Any]:
    conn = _connection(setting("postgres_conn_id", "runbook_postgres"))
    if conn is None:
        return {}
    pg = {"login_host": conn.host, "login_port": conn.port, "login_user": conn.login,
          "login_password": conn.password}
    return {"pg_connection": {key: value for key, value in pg.items() if value not in (None, "")}}


def descendants(root: int) -> list[int]:
    """Every process below `root` (Linux /proc), children first found first."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in found]
        found += children
        frontier = children
    return found


def runner_root() -> str:
    """Where each run's private directory (extravars with credentials, the plan file) lives: one 0700 folder of
    this user, refused if it is anyone else's or a link (a local user could otherwise plant it)."""
    root = os.environ.get("RUNBOOK_RUNNER_DIR") or os.path.join(tempfile.gettempdir(), f"runbook-runner-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    found = os.lstat(root)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise PlaybookFailed(f"{root} is not a private directory of this user (uid {os.getuid()}, mode 0700): "
                             "remove it, or set RUNBOOK_RUNNER_DIR. Nothing was run.")
    return root


def started_at(pid: int) -> str | None:
    """A process's start time since boot (Linux /proc), which tells it from a later process given the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def private_dir() -> str:
    """A new private directory for one run, named by this process (pid and start time). The directories of runs
    whose process is gone (a task killed with SIGKILL, a worker that died: their `finally` never ran) are removed
    first, credentials and all."""
    root = runner_root()
    for entry in os.listdir(root):
        pid, _, rest = entry.partition("-")
        if pid.isdigit() and rest.split("-")[0] == started_at(int(pid)):
            continue  # its run is still going
        shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-{started_at(os.getpid())}-", dir=root)


def process_ids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def session_of(pid: int) -> int | None:
    """The session id of a process (Linux /proc), or None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _summary(event: dict) -> str | None:
    """One line of the task log per Ansible event worth a line (the runner's own stdout is Ansible's output)."""
    text = (event.get("stdout") or "").strip()
    return text or None


class PlaybookRun:
    """One ansible-runner run of a playbook, its events streamed to a logger, and what it returns."""

    def __init__(self, playbook: str, extravars: dict | None = None, check: bool = False, limit: str | None = None,
                 log=None, actor: str | None = None, reason: str | None = None, run_id: str | None = None,
                 audit: dict[str, str] | None = None, seal: bool = False, sealed: dict | None = None):
        self.playbook, self.extravars, self.check, self.limit = playbook, dict(extravars or {}), check, limit
        # seal: a check-mode run writes its sealed plan (plan_out) and returns it as `sealed_plan`; sealed: the
        # plan document an apply is handed, written to a private file for -e plan=FILE.
        self.seal, self.sealed = seal, sealed
        self.log, self.actor, self.reason, self.run_id = log, actor, reason, run_id
        self.audit = dict(audit or {})  # RUNBOOK_REQUESTER, RUNBOOK_APPROVERS, RUNBOOK_PLAN_DIGEST: the audit record
        self.cancelled = threading.Event()
        self.failures: list[dict] = []
        self.results: dict[str, list] = {}
        self.recap: dict = {}

    def _on_event(self, event: dict) -> bool:
        line = _summary(event)
        if line and self.log is not None:
            for part in line.splitlines():
                self.log.info("%s", part)
        data = event.get("event_data", {})
        kind = event.get("event")
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res", {})
            # A looped task fails with "One or more items failed"; the items' own messages say why.
            items = [r for r in res.get("results", []) if isinstance(r, dict) and r.get("failed")]
            messages = [r.get("msg") or r.get("stderr") for r in items] or [res.get("msg") or res.get("stderr")]
            self.failures.append({"host": data.get("host"), "task": data.get("task"),
                                  "msg": " / ".join(str(m) for m in messages if m) or kind})
        elif kind == "runner_on_ok" and data.get("task_action") == "ansible.builtin.debug" and \
                str(data.get("task", "")).endswith("Show the plan"):
            # A role's own table of its plan (bootstrap-fixes): what the approval shows when no module says more.
            shown = data.get("res", {}).get("msg")
            lines = shown if isinstance(shown, list) else str(shown or "").splitlines()
            self.results.setdefault(SHOWN_PLAN, []).append({"host": data.get("host"), "task": data.get("task"),
                                                            "lines": [str(line) for line in lines]})
        elif kind == "runner_on_ok" and data.get("task_action") in COLLECTED:
            res = data.get("res", {})
            # A looped task reports each item's result in `results`.
            for one in res["results"] if isinstance(res.get("results"), list) else [res]:
                if one.get("skipped"):
                    continue
                kept = {k: v for k, v in one.items() if not k.startswith("_") and k not in _DROPPED_KEYS}
                self.results.setdefault(data["task_action"].rsplit(".", 1)[-1], []).append(
                    {"host": data.get("host"), "task": data.get("task"), **kept})
        elif kind == "playbook_on_stats":
            self.recap = {key: data.get(key, {}) for key in ("ok", "changed", "failures", "dark", "skipped",
                                                              "rescued", "ignored")}
        return True

    def stop(self, grace: float = 5.0) -> None:
        """Cancel the run, and end what its modules started: ansible-playbook and every process below it (a
        module's own processes run in sessions of their own and would outlive it). Airflow calls on_kill from the
        thread running the playbook (its execution timeout, a SIGTERM handler), where ansible-runner's loop cannot
        act on the cancel: the processes are signalled here, SIGTERM first, SIGKILL to those alive after `grace`."""
        playbooks = [pid for pid in descendants(os.getpid()) if "ansible-playbook" in command_line(pid)]
        started = list(dict.fromkeys(playbooks + [pid for root in playbooks for pid in descendants(root)]))
        # ansible-runner starts ansible-playbook in a session of its own: whatever stays in that session is the run's,
        # also a process whose parent died first (reparented, no longer below the playbook when a round looks).
        sessions = {session_of(pid) for pid in playbooks} - {session_of(os.getpid()), None}
        self.cancelled.set()
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
            members = [pid for pid in process_ids() if session_of(pid) in sessions] if sessions else []
            left = [pid for pid in dict.fromkeys(started + members) if alive(pid)]
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while left and time.monotonic() < deadline and any(alive(pid) for pid in left):
                time.sleep(0.1)

    def run(self) -> dict:
        import ansible_runner

        project = Path(setting("project_dir", str(CHECKOUT)))
        inventory = setting("inventory", "inventories/local")
        private = private_dir()
        envvars = {**aws_environment(), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                   "ANSIBLE_HOME": str(project / ".ansible"),
                   "ANSIBLE_COLLECTIONS_PATH": str(project / ".ansible" / "collections"),
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        if self.actor:
            envvars["RUNBOOK_ACTOR"] = self.actor
        if self.reason:
            envvars["RUNBOOK_REASON"] = self.reason
        if self.run_id:
            envvars["RUNBOOK_RUN_ID"] = self.run_id
        envvars.update(self.audit)
        extravars = {**postgres_extravars(), **self.extravars}
        plan_file = os.path.join(private, "plan.json")
        if self.seal:
            extravars["plan_out"] = plan_file
        if self.sealed:
            descriptor = os.open(plan_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                json.dump(self.sealed, handle)
            extravars["plan"] = plan_file
            extravars["plan_max_age"] = setting("plan_max_age", "1h")  # the same age limit as the approval's
        sealed_plan = None
        cmdline = ["--check"] if self.check else []
        try:
            # Written here rather than by ansible-runner (which writes JSON, read by Ansible as trusted templates):
            # every string !unsafe, so no value of a form, a conf or a connection is ever rendered as a template.
            os.makedirs(os.path.join(private, "env"), mode=0o700)
            descriptor = os.open(os.path.join(private, "env", "extravars"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(unsafe_yaml(extravars) + "\n")
            runner = ansible_runner.run(
                private_data_dir=private, project_dir=str(project), playbook=str(project / "playbooks" / self.playbook),
                inventory=str(project / inventory), envvars=envvars, limit=self.limit,
                cmdline=" ".join(cmdline) or None, quiet=True, event_handler=self._on_event,
                cancel_callback=self.cancelled.is_set, settings={"suppress_ansible_output": True})
            if self.seal and os.path.exists(plan_file):
                with open(plan_file) as handle:
                    sealed_plan = json.load(handle)
        finally:
            shutil.rmtree(private, ignore_errors=True)  # extravars (credentials) were written in here
        changed = sum(self.recap.get("changed", {}).values()) if self.recap else 0
        outcome = {"playbook": self.playbook, "check": self.check, "status": runner.status, "rc": runner.rc,
                   "changed": changed, "recap": self.recap, "failures": self.failures, "results": self.results}
        if sealed_plan is not None:
            outcome["sealed_plan"] = sealed_plan
        if runner.status == "canceled" or self.cancelled.is_set():  # stop() may end it before the runner looks
            raise PlaybookFailed(f"{self.playbook} was stopped before it finished.")
        if runner.rc != 0:
            detail = "; ".join(f"{f['host']}: {f['task']}: {f['msg']}" for f in self.failures) or \
                f"ansible-playbook exited {runner.rc} ({runner.status})"
            raise PlaybookFailed(f"{self.playbook}{' (check mode)' if self.check else ''} failed: {detail}")
        return outcome


class PlaybookOperator(BaseOperator):
    """Runs a playbook of this project with ansible-runner; returns the recap and the results that matter as XCom.

    `extravars` and `limit` are templated (with render_template_as_native_obj, `{{ params.x }}` keeps its type).
    `publish`: keys of the collected results each pushed as an XCom of its own (`xcom_pull(key=...)`, for a
    dashboard or a later task): the value when one result has it, {host: value} when several hosts' do.
    """

    template_fields: Sequence[str] = ("extravars", "limit", "reason")
    ui_color = "#e8f1fb"

    def __init__(self, *, playbook: str, extravars: dict | None = None, check: bool = False,
                 limit: str | None = None, reason: str | None = None, expect_no_change: bool = False,
                 publish: Sequence[str] = (), bound: dict[str, tuple[str, ...]] | None = None, sealed: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        # A playbook that takes sealed plans (plan_out, plan): the plan task writes one and returns it, and the apply
        # is handed that document (`sealed_plan` of the plan task's XCom), so it acts on exactly what was approved.
        self.sealed = sealed
        # {extra variable: (module, key, ...)}: the value the `plan` task's run resolved there (a backup id for
        # `latest`) replaces the form's, so the apply and its verification act on what was approved.
        self.bound = dict(bound or {})
        self.playbook, self.extravars, self.check, self.limit = playbook, extravars or {}, check, limit
        self.reason, self.expect_no_change, self.publish = reason, expect_no_change, tuple(publish)
        self._run: PlaybookRun | None = None
        self.audit: dict[str, str] = {}

    def execute(self, context) -> dict:
        # An empty form field means "not given": the playbook's own default applies.
        self.extravars = {key: value for key, value in self.extravars.items() if value not in (None, "")}
        refuse_templates({**self.extravars, **({"reason": self.reason} if self.reason else {})})
        if self.bound:
            plan = context["ti"].xcom_pull(task_ids="plan")
            for name, path in self.bound.items():
                self.extravars[name] = resolved(plan or {}, path, name)
                self.log.info("%s=%s, as the plan resolved it", name, self.extravars[name])
        dag_run = context.get("dag_run")
        who = getattr(dag_run, "triggering_user_name", None) or "airflow"
        actor = f"{who} via Airflow {self.dag_id}/{getattr(dag_run, 'run_id', '?')}"
        handed = None
        if self.sealed and not self.check:
            handed = (context["ti"].xcom_pull(task_ids="plan") or {}).get("sealed_plan")
            if not handed:
                raise PlaybookFailed("The plan task returned no sealed plan: nothing was applied. Trigger a new run.")
        self._run = PlaybookRun(self.playbook, self.extravars, self.check, self.limit or None, self.log, actor,
                                self.reason or None, run_id=task_run_id(context), audit=self.audit,
                                seal=self.sealed and self.check and self.task_id == "plan", sealed=handed)
        self.log.info("ansible-playbook %s%s%s", self.playbook, " --check" if self.check else "",
                      f" --limit {self.limit}" if self.limit else "")
        started = datetime.now(UTC).isoformat()
        outcome = self._run.run()
        if self.check:
            outcome["planned_at"] = started  # an approval of this plan counts only after it, within its age limit
        if self.expect_no_change and outcome["changed"]:
            raise PlaybookFailed(f"verification failed: {self.playbook} in check mode would still change "
                                 f"{outcome['changed']} things after the apply; see the log above.")
        for key in self.publish:
            context["ti"].xcom_push(key=key, value=published(outcome, key))
        return outcome

    def on_kill(self) -> None:
        if self._run is not None:
            self._run.stop()


def resolved(plan: dict, path: tuple[str, ...], name: str):
    """The one value the plan resolved at `path` (module, key, key...) on every host that reported it."""
    module, *keys = path
    found = set()
    for row in (plan.get("results") or {}).get(module, []):
        value = row
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value not in (None, ""):
            found.add(json.dumps(value, sort_keys=True))
    if len(found) != 1:
        raise PlaybookFailed(f"The plan resolved {len(found)} values of {name} ({', '.join(sorted(found))}): the "
                             "apply needs exactly one. Nothing was applied.")
    return json.loads(found.pop())


def task_run_id(context) -> str | None:
    """The same for every try of one task instance of one DAG run, different for any other: what a retried try
    looks for in what its earlier tries finished (a backup's manifest records it)."""
    ti = context.get("ti")
    if ti is None:  # run outside a task (a test calling execute({}))
        return None
    index = getattr(ti, "map_index", -1)
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}" + (f"[{index}]" if index is not None and index >= 0 else "")


def published(outcome: dict, key: str):
    """A result key of a playbook run: its value, or {host: value} when several hosts reported it."""
    by_host = {row["host"]: row[key] for rows in outcome["results"].values() for row in rows if key in row}
    if not by_host:
        raise PlaybookFailed(f"{outcome['playbook']} succeeded but no task reported {key}: see the log above.")
    return next(iter(by_host.values())) if len(by_host) == 1 else by_host


def alert_on_failure(context) -> None:
    """A failed task publishes to the SNS topic of the Variable `runbook_alert_topic_arn`, when there is one."""
    topic = setting("alert_topic_arn", "")
    if not topic:
        return
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    ti = context["ti"]
    message = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "try_number": ti.try_number,
               "error": str(context.get("exception") or "")[:2000]}
    SnsHook(aws_conn_id=setting("aws_conn_id", "aws_default")).publish_to_target(
        target_arn=topic, subject=f"runbook.recovery: {ti.dag_id}.{ti.task_id} failed"[:100],
        message=json.dumps(message, indent=2))


def default_args(retries: int, timeout: timedelta) -> dict:
    """Every task retries (or not), alerts on failure and has an execution timeout: a hung playbook fails its task
    (killed with its process tree, on_kill) instead of blocking the later runs of a max_active_runs=1 DAG."""
    # RUNBOOK_RETRY_DELAY (seconds) shortens the wait between tries, for tests of failing runs.
    delay = timedelta(seconds=float(os.environ.get("RUNBOOK_RETRY_DELAY", 300)))
    return {"owner": OWNER, "retries": retries, "retry_delay": delay, "on_failure_callback": alert_on_failure,
            "execution_timeout": timeout}


class InventoryTargets(BaseOperator):
    """What a scheduled run acts on, read from the inventory when the task runs (never at parse time).

    `per_value=True`: one item per value of the hosts' list variable, as PlaybookOperator arguments
    ({"limit": host, "extravars": {extravar: value}}), for .expand_kwargs(). `per_host=True`: one item
    ({"limit": host}) per host that sets the variable, for .expand_kwargs(). Otherwise, and with per_host, the task
    is skipped (and what follows it) when no host sets the variable.

    Each item also carries where its host's task runs (`placement`): the pool of its server, the Celery queue of its
    zone and its execution timeout, from the host's variables; the pools are pushed as the XCom `runbook_pools`.
    A pool of no slot, a timeout that is not a duration, or a queue that no Celery worker consumes fails this task,
    naming the hosts, before anything runs (a task sent to such a queue would wait there until it times out).
    """

    def __init__(self, *, group: str, variable: str, extravar: str | None = None, per_value: bool = False,
                 per_host: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.group, self.variable, self.extravar, self.per_value = group, variable, extravar, per_value
        self.per_host = per_host

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowSkipException

        rows = inventory_hosts(self.group, self.variable, POOL_SLOTS, QUEUE, TIMEOUT)
        if self.per_value:
            targets = [{"limit": row["host"], "extravars": {self.extravar: value}, **placement(row)}
                       for row in rows for value in row[self.variable] or []]
            if not targets:
                raise ValueError(f"The inventory sets no {self.variable} on the {self.group} hosts: nothing to do.")
        elif not any(row[self.variable] for row in rows):
            raise AirflowSkipException(f"The inventory sets no {self.variable} on the {self.group} hosts.")
        elif self.per_host:
            targets = [{"limit": row["host"], **placement(row)} for row in rows if row[self.variable]]
        else:
            return rows
        check_queues_served(targets)
        context["ti"].xcom_push(key=POOLS_XCOM, value=pools_of(rows))
        return targets


def pool_name(host: str) -> str:
    return f"postgres_{host}"


def duration_seconds(value, what: str) -> float:
    """Seconds from 90, "90", "90s", "30m", "2h" or "1d"; a clear error otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = str(value).strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise ValueError(f"{what} is {value!r}: give a duration above zero such as 3600, 45m or 2h.")
    return seconds


def placement(row: dict) -> dict:
    """The PlaybookOperator arguments that place one host's task: pool, queue, execution_timeout (those it sets)."""
    host, placed = row["host"], {}
    slots = row.get(POOL_SLOTS)
    if slots is not None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"{POOL_SLOTS} of {host} is {slots!r}: a pool needs at least 1 slot (how many runs at "
                             f"once on that server); set 1 or more, or remove it for no cap.")
        placed["pool"] = pool_name(host)
    if row.get(QUEUE):
        placed["queue"] = str(row[QUEUE])
    if row.get(TIMEOUT) is not None:
        placed["execution_timeout"] = timedelta(seconds=duration_seconds(row[TIMEOUT], f"{TIMEOUT} of {host}"))
    return placed


def pools_of(rows: list[dict]) -> dict[str, int]:
    return {pool_name(row["host"]): row[POOL_SLOTS] for row in rows if row.get(POOL_SLOTS) is not None}


def check_queues_served(targets: list[dict]) -> None:
    """On the CeleryExecutor, every queue the targets name must be consumed by a live worker; a task sent to a queue
    no worker reads would wait there until [scheduler] task_queued_timeout."""
    wanted: dict[str, set] = {}
    for target in targets:
        if "queue" in target:
            wanted.setdefault(target["queue"], set()).add(target["limit"])
    if not wanted or not celery_executor():
        return
    served = celery_queues()
    missing = {queue: hosts for queue, hosts in wanted.items() if not any(queue in q for q in served.values())}
    if missing:
        workers = "; ".join(f"{worker}: {', '.join(sorted(queues))}" for worker, queues in sorted(served.items()))
        raise ValueError(
            "No Celery worker consumes " + ", ".join(f"queue {q!r} ({QUEUE} of {', '.join(sorted(h))})"
                                                      for q, h in sorted(missing.items()))
            + f". Workers now: {workers or 'none answered'}. Start a worker in that zone "
              f"(airflow celery worker --queues QUEUE) or correct {QUEUE} in the inventory.")


def celery_executor() -> bool:
    from airflow.configuration import conf

    return "CeleryExecutor" in conf.get("core", "executor", fallback="")


def celery_queues() -> dict[str, set[str]]:
    """{worker: queues it consumes}, asked of the live workers over the broker."""
    from airflow.providers.celery.executors.celery_executor_utils import app

    answered = app.control.inspect(timeout=5).active_queues() or {}
    return {worker: {q["name"] for q in queues} for worker, queues in answered.items()}


def inventory_hosts(group: str, variable: str, *also: str) -> list[dict]:
    """[{host, <variable>: value, <also>: value...}] for the hosts of a group of the inventory, read at run time."""
    import subprocess

    project = Path(setting("project_dir", str(CHECKOUT)))
    inventory = project / setting("inventory", "inventories/local")
    env = {**os.environ, "ANSIBLE_HOME": str(project / ".ansible")}
    listed = json.loads(subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"], cwd=project, env=env,
        capture_output=True, text=True, check=True).stdout)
    hosts = listed.get(group, {}).get("hosts", [])
    hostvars = listed.get("_meta", {}).get("hostvars", {})
    return [{"host": host, **{name: hostvars.get(host, {}).get(name) for name in (variable, *also)}}
            for host in hosts]


START = __import__("datetime").datetime(2026, 1, 1)
# What a free-text form field accepts (Airflow checks it when the run is triggered, from the form or the REST API):
# the characters of the names they stand for, never a quote, a semicolon, a brace, a percent sign or a hash, so no
# template and no shell or SQL syntax can be typed. PlaybookOperator refuses template openers again, whatever the
# source, and writes every value !unsafe.
NO_TEMPLATE = r"^(?![\s\S]*(\{\{|\{%|\{#))"
PATTERNS = {
    # PostgreSQL names: any letter (données), digits, _ $ - . and spaces inside; what validate_name refuses, refused.
    "database": r"^[^\x00-\x1f\s'\";/\\{}%#`|&<>]([^\x00-\x1f'\";/\\{}%#`|&<>]{0,61}[^\x00-\x1f\s'\";/\\{}%#`|&<>])?$",
    # A key of the inventory (a scope, a target, a service such as chat/backend).
    "inventory_name": r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$",
    "restore_point": r"^$|^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,62}$",
    "dynamodb_table": r"^$|^[A-Za-z0-9_.-]{3,255}$",
    "lock_id": r"^$|^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
    # BUCKET/KEY: an S3 bucket name, then a key of ordinary characters.
    "lock_path": r"^[a-z0-9][a-z0-9.-]{1,62}/[A-Za-z0-9_.!*()/=+@,-]+$",
}
REASON = dict(type="string", minLength=5, pattern=NO_TEMPLATE + r"[\s\S]*$", title="Reason",
              description="Why this run is made (an incident number, a ticket): written to the audit log. "
                          "Plain text: {{, {% and {# are refused.")


def manual_procedure(dag_id: str, playbook: str, *, extravars: dict, params: dict, doc_md: str, tags: list[str],
                     verify_extravars: dict | None = None, bound: dict | None = None, sealed: bool = False,
                     apply_timeout: timedelta = timedelta(hours=4)):
    """A destructive procedure: plan (check mode, requested by one of runbook_operators) -> approval of that plan
    by someone other than the requester (approve, and approve_2 when two are required: runbook_approval.py) -> apply
    (confirm=true, no retry, after its own check of the approvals; what the plan resolved in `bound` is passed on,
    not resolved again; with `sealed`, the plan task's sealed plan is what the apply acts on, exactly) -> verify
    (check mode again must find nothing left to change). A plan that changes nothing asks nobody; a rejected or
    expired approval skips or fails everything after it. Plan and verify time out after an hour, the apply after
    `apply_timeout`; each approval after its 4 hours.

    An action rather than a state (a restart, a rollback whose second run undoes the first) is never "nothing left
    to change": `verify_extravars` turn the verify step into the playbook's own check of the result (such as
    verify=true), still in check mode and still required to change nothing."""
    from airflow.sdk import DAG, Param
    from runbook_approval import ApplyOperator, FourEyesApproval, PlanOperator

    form = {name: Param(**spec) for name, spec in {**params, "reason": REASON}.items()}
    with DAG(dag_id, schedule=None, start_date=START, catchup=False, max_active_runs=1, doc_md=doc_md,
             tags=["runbook", "manual", *tags], params=form,
             default_args=default_args(retries=0, timeout=timedelta(hours=1)),
             render_template_as_native_obj=True) as dag:
        reason = "{{ params.reason }}"
        plan = PlanOperator(task_id="plan", playbook=playbook, extravars=extravars, check=True, reason=reason,
                                sealed=sealed, retries=1, doc_md="The playbook in check mode: what would change.")
        approvals = [FourEyesApproval(
            task_id=task_id, stage=stage, subject=f"{dag_id}: apply this plan?" if stage == 1 else
            f"{dag_id}: second approval of this plan?", body="The plan is shown once the plan task has run.",
            response_timeout=timedelta(hours=4),
            doc_md="A permitted person other than the requester reads the plan and approves or rejects it"
                   + ("." if stage == 1 else " (asked only when two approvals are required)."))
            for stage, task_id in enumerate(("approve", "approve_2"), start=1)]
        apply = ApplyOperator(task_id="apply", playbook=playbook, extravars={**extravars, "confirm": True},
                              bound=bound, sealed=sealed, reason=reason, retries=0, execution_timeout=apply_timeout,
                              doc_md="The change, with confirm=true, once the approvals are checked. Never retried.")
        checked = ("The playbook's own check of the result, in check mode: it must change nothing."
                   if verify_extravars else "Check mode again: nothing may be left to change.")
        verify = PlaybookOperator(task_id="verify", playbook=playbook,
                                  extravars={**extravars, **(verify_extravars or {})}, check=True, bound=bound,
                                  expect_no_change=True, reason=reason, retries=1, doc_md=checked)
        plan >> approvals[0] >> approvals[1] >> apply >> verify
    return dag


def scheduled_procedure(dag_id: str, playbook: str, *, schedule, doc_md: str, tags: list[str],
                        extravars: dict | None = None, retries: int = 2, outlets=(),
                        timeout: timedelta = timedelta(hours=1)):
    """A routine procedure: one playbook run on a schedule, retried, failed after `timeout`."""
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=schedule, start_date=START, catchup=False, max_active_runs=1, doc_md=doc_md,
             tags=["runbook", "scheduled", *tags], default_args=default_args(retries=retries, timeout=timeout)) as dag:
        PlaybookOperator(task_id="run", playbook=playbook, extravars=extravars or {}, outlets=list(outlets))
    return dag
