"""The approval of a destructive procedure as a control (four eyes): who may approve, how many must, and the check
the apply makes itself before it changes anything.

Not a DAG file (.airflowignore). Configuration, read when a task runs (Airflow Variables, else the environment
variable of the same name in capitals, as runbook_airflow.setting):
- `runbook_approvers`: who may approve, as a JSON list (`["alice", "role:op"]`), a comma-separated list, or per DAG
  `{"recover_db": ["alice"], "*": ["bob", "role:admin"]}`. An entry is a user name, or `role:NAME` for every user of
  that role (the SimpleAuthManager's roles, from `[core] simple_auth_manager_users`; a role includes the roles above
  it: viewer < user < op < admin). Default: nobody, and the approval refuses to ask (naming this Variable) rather
  than let anyone answer. The requester (the user who triggered the run) is never one of the approvers of their own
  run, whatever the list says.
- `runbook_operators`: who may request a destructive procedure, in the same form. The plan task refuses a run
  requested by anyone else before the playbook runs, whatever the auth manager (a DAG's `access_control` is an
  input to the FAB auth manager only, and deprecated since Airflow 3). Default: whoever Airflow lets trigger the
  DAG.
- `runbook_approvals_required`: distinct approvers needed, a number or per DAG as above (default 1). A recovery of
  the whole cluster (`scope=cluster`) needs at least `runbook_approvals_required_cluster_scope` (default 2).
- `runbook_plan_max_age`: how long after the plan was made an approval still applies it (default 1h): an approval
  given later, or an apply started later (a cleared apply of an old run), applies nothing.

The approval tasks are `approve` and `approve_2` (the second asks only when two approvals are required). Each shows
the plan in words with its SHA-256 digest, and only the permitted users who are not the requester (nor the first
approver) may answer: Airflow refuses anyone else. The apply then checks, itself, that each approval it counts says
Approve, was given by a permitted user other than the requester, after the plan was made and for this plan's
digest, and not longer ago than the plan's age limit: a task marked success by hand has no such record and applies
nothing. An approval that times out fails its task, so nothing is applied.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from runbook_airflow import SHOWN_PLAN, PlaybookFailed, PlaybookOperator, duration_seconds, setting

APPROVALS = ("approve", "approve_2")


class ApprovalRefused(PlaybookFailed):
    """The approval does not allow the apply: the message says why, and nothing was changed."""


def requester(context) -> str:
    """Who triggered the run (the UI's or the REST API's user; `dag_test` for dag.test())."""
    return getattr(context.get("dag_run"), "triggering_user_name", None) or "unknown"


def per_dag(name: str, dag_id: str, default):
    """A setting that is one value for every DAG, or {dag_id: value, "*": value} as JSON."""
    raw = setting(name, "")
    if raw in ("", None):
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        value = [part.strip() for part in str(raw).split(",") if part.strip()]
    if isinstance(value, dict):
        value = value.get(dag_id, value.get("*", default))
    return value


SIMPLE_ROLES = ("viewer", "user", "op", "admin")  # the SimpleAuthManager's roles, each allowed what those before it are


def role_members(role: str, auth_manager: str, users: str) -> set[str]:
    """The users of `role` (and of the roles above it) under the SimpleAuthManager, from its `name:role,...` list."""
    if not auth_manager.endswith("SimpleAuthManager"):
        raise ApprovalRefused(f"role:{role} is named, but roles are read only from the SimpleAuthManager's user list "
                              f"(this Airflow uses {auth_manager.rsplit('.', 1)[-1]}): name the users instead.")
    if role.lower() not in SIMPLE_ROLES:
        raise ApprovalRefused(f"role:{role} is not a role of the SimpleAuthManager ({', '.join(SIMPLE_ROLES)}).")
    rank = SIMPLE_ROLES.index(role.lower())
    found = set()
    for entry in users.split(","):
        name, _, their_role = entry.strip().partition(":")
        if name and their_role.strip().lower() in SIMPLE_ROLES[rank:]:
            found.add(name.strip())
    return found


def people(name: str, dag_id: str) -> set[str] | None:
    """The users a setting names for this DAG (user names and role:NAME entries), None when it is not set."""
    value = per_dag(name, dag_id, None)
    if value is None:
        return None
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ApprovalRefused(f"runbook_{name} for {dag_id} is {value!r}: give a list of user names and role:NAME.")
    found = set()
    for entry in (entry.strip() for entry in entries):
        if entry.startswith("role:"):
            from airflow.configuration import conf

            found |= role_members(entry[len("role:"):].strip(), conf.get("core", "auth_manager", fallback=""),
                                  conf.get("core", "simple_auth_manager_users", fallback=""))
        elif entry:
            found.add(entry)
    return found


def approvers(dag_id: str) -> set[str]:
    return people("approvers", dag_id) or set()


class PlanOperator(PlaybookOperator):
    """The plan task of a destructive procedure: refuses a requester who is not one of `runbook_operators` (when
    that is set) before anything runs, then the playbook in check mode."""

    def execute(self, context):
        who_asked = requester(context)
        allowed = people("operators", self.dag_id)
        if allowed is not None and who_asked not in allowed:
            raise ApprovalRefused(
                f"{who_asked} may not request {self.dag_id}: runbook_operators allows "
                f"{', '.join(sorted(allowed)) or 'nobody'}. Nothing was planned or changed; ask one of them.")
        return super().execute(context)


def approvals_required(dag_id: str, params: dict) -> int:
    required = per_dag("approvals_required", dag_id, 1)
    if (params or {}).get("scope") == "cluster":
        required = max(int(required), int(per_dag("approvals_required_cluster_scope", dag_id, 2)))
    if isinstance(required, bool) or int(required) < 1:
        raise ApprovalRefused(f"runbook_approvals_required for {dag_id} is {required!r}: give 1 or more.")
    return int(required)


def plan_max_age() -> float:
    return duration_seconds(setting("plan_max_age", "1h"), "runbook_plan_max_age")


def digest(plan: dict) -> str:
    """The SHA-256 of the plan as the plan task returned it, in canonical JSON: what an approval approves."""
    canonical = json.dumps(plan, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def as_time(value) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        return as_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return None


def responder(answer: dict | None) -> str | None:
    user = (answer or {}).get("responded_by_user") or {}
    return user.get("id") if isinstance(user, dict) else None


def verdict(plan: dict | None, answers: list[dict | None], *, who_asked: str, permitted: set[str], required: int,
            now: datetime, max_age: float) -> dict:
    """The apply's own check of the approvals (pure): {approvers, plan_digest}, or ApprovalRefused saying why.

    Counted: an answer that says Approve, given by a permitted user other than the requester, for this plan's
    digest, after the plan was made, no longer than `max_age` after it; `required` distinct such users."""
    if not plan or "planned_at" not in plan:
        raise ApprovalRefused("There is no plan for this run: nothing was applied. Trigger a new run.")
    planned_at = as_time(plan["planned_at"])
    age = (now - planned_at).total_seconds()
    if age > max_age:
        raise ApprovalRefused(
            f"The plan was made {age / 60:.0f} min ago ({planned_at:%Y-%m-%d %H:%M:%S} UTC), longer ago than "
            f"runbook_plan_max_age ({max_age / 60:.0f} min): nothing was applied. Trigger a new run, so that what "
            "is approved is what is there now.")
    wanted = digest(plan)
    counted, problems = [], []
    for answer in answers:
        if not answer:
            continue
        who = responder(answer)
        if answer.get("not_required"):
            continue
        if answer.get("chosen_options") != [ApprovalOperator.APPROVE]:
            problems.append(f"{who or 'someone'} answered {answer.get('chosen_options')}")
        elif who is None:
            problems.append("an approval names no user")
        elif who == who_asked:
            problems.append(f"{who} requested this run and cannot approve it")
        elif who not in permitted:
            problems.append(f"{who} is not a permitted approver ({', '.join(sorted(permitted)) or 'none set'})")
        elif answer.get("plan_digest") != wanted:
            problems.append(f"{who} approved another plan ({answer.get('plan_digest')}, this one is {wanted})")
        elif not (as_time(answer.get("responded_at")) and planned_at <= as_time(answer["responded_at"])
                  and (as_time(answer["responded_at"]) - planned_at).total_seconds() <= max_age):
            problems.append(f"{who}'s approval ({answer.get('responded_at')}) is not within "
                            f"{max_age / 60:.0f} min after the plan ({planned_at:%Y-%m-%d %H:%M:%S} UTC)")
        elif who not in counted:
            counted.append(who)
    if len(counted) < required:
        raise ApprovalRefused(
            f"{required} approval(s) by distinct permitted users other than the requester ({who_asked}) are needed; "
            f"{len(counted)} found{' (' + ', '.join(counted) + ')' if counted else ''}"
            f"{': ' + '; '.join(problems) if problems else ''}. Nothing was applied. An approval task marked success "
            "by hand is not an approval: trigger a new run and have it approved.")
    return {"approvers": counted, "plan_digest": wanted}


def plan_lines(plan: dict) -> list[str]:
    """The plan in words: each task's own lines (one per resource) or its message, grouped by task; no JSON. A
    role's own "Show the plan" table stands in when no module says anything."""
    results = dict(plan.get("results") or {})
    shown = results.pop(SHOWN_PLAN, [])
    lines = described(results)
    return lines or described({SHOWN_PLAN: shown})


def described(results: dict) -> list[str]:
    lines = []
    for module, rows in sorted(results.items()):
        for row in rows:
            said = said_by(module, row)
            if not said:
                continue
            lines.append(f"**{row.get('task') or module}** on {row.get('host')}:")
            lines += [f"- {text}" for text in said[:200]]
            if len(said) > 200:
                lines.append(f"- … and {len(said) - 200} more: see the plan task's log")
    return lines


def said_by(module: str, row: dict) -> list[str]:
    """What one module's result says in words: its own lines (one per resource), else its actions, else its
    message; a PostgreSQL setting as name: before -> after."""
    if row.get("lines"):
        return [str(text) for text in row["lines"]]
    if isinstance(row.get("actions"), list) and row["actions"]:
        return [str(text) for text in row["actions"]]
    if module == "postgresql_set" and row.get("name"):
        restart = " (restarts the server)" if row.get("restart_required") else ""
        return [f"{row['name']}: {row.get('prev_val_pretty')} -> {row.get('value_pretty')}{restart}"]
    return [str(row["msg"])] if row.get("msg") else []


def approval_text(plan: dict, *, who_asked: str, reason: str, permitted: set[str], required: int, stage: int,
                  earlier: list[str]) -> str:
    head = [f"Requested by **{who_asked}**: {reason}", "",
            f"`{plan['playbook']} --check` planned {plan['changed']} change(s), at {plan.get('planned_at')}.", ""]
    foot = ["", f"Plan digest: `{digest(plan)}`",
            f"Approval {stage} of {required}. May approve: {', '.join(sorted(permitted))}"
            f"{' (already approved by ' + ', '.join(earlier) + ')' if earlier else ''}; never the requester."]
    return "\n".join(head + (plan_lines(plan) or ["(the playbook reported no detail: see the plan task's log)"])
                     + foot)


class FourEyesApproval(ApprovalOperator):
    """The approval of a plan: the plan in words and its digest, answerable only by permitted users other than the
    requester (and other than the earlier approver); it skips the apply when the plan changes nothing; the answer is
    returned with the digest it approved. A reject skips everything after it."""

    def __init__(self, *, stage: int = 1, **kwargs):
        super().__init__(ignore_downstream_trigger_rules=True, **kwargs)
        self.stage = stage

    def _who(self, context) -> tuple[str, int, set[str], list[str]]:
        who_asked = requester(context)
        required = approvals_required(self.dag_id, context.get("params") or {})
        earlier = [responder(context["ti"].xcom_pull(task_ids=task)) for task in APPROVALS[:self.stage - 1]]
        earlier = [name for name in earlier if name]
        return who_asked, required, approvers(self.dag_id) - {who_asked, *earlier}, earlier

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowSkipException

        plan = context["ti"].xcom_pull(task_ids="plan")
        if not plan:
            raise ApprovalRefused("The plan task returned no plan: nothing to approve.")
        if not plan.get("changed"):
            raise AirflowSkipException("The plan changes nothing: nobody is asked, nothing is applied.")
        who_asked, required, permitted, earlier = self._who(context)
        if self.stage > required:
            self.log.info("%d approval(s) required: approval %d is not asked for.", required, self.stage)
            return {"not_required": True}
        if not permitted:
            raise ApprovalRefused(
                f"No one may approve this run of {self.dag_id}: the permitted approvers "
                f"({', '.join(sorted(approvers(self.dag_id))) or 'none'}) are only the requester ({who_asked})"
                f"{' or the first approver' if earlier else ''}. Set the Airflow Variable runbook_approvers "
                "(see dags/runbook_approval.py). Nothing was changed.")
        self.assigned_users = [{"id": name, "name": name} for name in sorted(permitted)]
        reason = (context.get("params") or {}).get("reason") or ""
        self.body = approval_text(plan, who_asked=who_asked, reason=reason, permitted=permitted, required=required,
                                  stage=self.stage, earlier=earlier)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        answer = dict(super().execute_complete(context=context, event=event))
        who_asked, _required, permitted, _earlier = self._who(context)
        who = responder(answer)
        if answer["chosen_options"] == [self.APPROVE] and (who == who_asked or who not in permitted):
            # Airflow's assigned users keep them out; an auth manager that lets everyone answer does not.
            raise ApprovalRefused(f"{who} may not approve this run (requested by {who_asked}; permitted: "
                                  f"{', '.join(sorted(permitted))}). Nothing was changed.")
        responded_at = as_time(answer.get("responded_at"))
        return {**answer, "responded_at": responded_at.isoformat() if responded_at else None,
                "plan_digest": digest(context["ti"].xcom_pull(task_ids="plan")), "requester": who_asked}


class ApplyOperator(PlaybookOperator):
    """The apply of an approved plan: before anything runs, it checks the approvals itself (verdict); what the
    plan resolved (`bound`) is passed on by PlaybookOperator."""

    def execute(self, context) -> dict:
        ti = context["ti"]
        plan = ti.xcom_pull(task_ids="plan")
        who_asked = requester(context)
        approved = verdict(plan, [ti.xcom_pull(task_ids=task) for task in APPROVALS], who_asked=who_asked,
                           permitted=approvers(self.dag_id),
                           required=approvals_required(self.dag_id, context.get("params") or {}),
                           now=datetime.now(UTC), max_age=plan_max_age())
        self.log.info("Approved by %s (requested by %s), plan %s", ", ".join(approved["approvers"]), who_asked,
                      approved["plan_digest"])
        self.audit = {"RUNBOOK_REQUESTER": who_asked, "RUNBOOK_APPROVERS": ",".join(approved["approvers"]),
                      "RUNBOOK_PLAN_DIGEST": approved["plan_digest"]}
        return super().execute(context)
