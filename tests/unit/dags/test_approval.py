"""The apply's own check of the approvals (runbook_approval.verdict), the plan's digest and words, and the per-DAG
settings of who may approve and how many must: pure logic, the answers as Airflow's approval task returns them."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "dags"))

from runbook_airflow import PlaybookFailed, resolved  # noqa: E402
from runbook_approval import (  # noqa: E402
    ApprovalRefused,
    approvals_required,
    approvers,
    digest,
    people,
    plan_lines,
    role_members,
    verdict,
)

PLANNED = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
PLAN = {"playbook": "recover-db.yml", "check": True, "changed": 1, "planned_at": PLANNED.isoformat(),
        "results": {"pg_restore_db": [{"host": "db1", "task": "Plan the recovery of chat", "changed": True,
                                       "backup": {"id": "20261207T021500Z"},
                                       "msg": "would restore backup 20261207T021500Z into chat"}]}}
# The default of a `plan` argument, standing for PLAN (None is a plan argument of its own: no plan).
THE_PLAN = object()


def answer(who, option="Approve", after=timedelta(minutes=5), plan=THE_PLAN):
    plan = PLAN if plan is THE_PLAN else plan
    return {"chosen_options": [option], "params_input": {}, "responded_by_user": {"id": who, "name": who},
            "responded_at": (PLANNED + after).isoformat(), "plan_digest": digest(plan), "requester": "rita"}


def check(answers, required=1, now=PLANNED + timedelta(minutes=10), permitted=frozenset({"alice", "bob", "rita"}),
          plan=THE_PLAN):
    plan = PLAN if plan is THE_PLAN else plan
    return verdict(plan, answers, who_asked="rita", permitted=set(permitted), required=required, now=now,
                   max_age=3600)


def test_a_permitted_approver_other_than_the_requester_approves():
    assert check([answer("alice"), {"not_required": True}]) == {"approvers": ["alice"], "plan_digest": digest(PLAN)}


@pytest.mark.parametrize(("answers", "why"), [
    ([answer("rita")], "rita requested this run and cannot approve it"),
    ([answer("mallory")], "mallory is not a permitted approver"),
    ([answer("alice", "Reject")], "alice answered ['Reject']"),
    ([None, None], "0 found"),  # the approval task marked success by hand: no answer recorded
    ([{"not_required": True}], "0 found"),
    ([answer("alice", after=timedelta(minutes=-1))], "not within 60 min after the plan"),
    ([answer("alice", after=timedelta(minutes=61))], "not within 60 min after the plan"),
    ([answer("alice", plan={**PLAN, "changed": 2})], "approved another plan"),
])
def test_anything_else_applies_nothing_and_says_why(answers, why):
    with pytest.raises(ApprovalRefused, match="Nothing was applied") as refused:
        check(answers)
    assert why in str(refused.value)


def test_two_required_means_two_distinct_people():
    with pytest.raises(ApprovalRefused, match=r"2 approval\(s\).*1 found \(alice\)"):
        check([answer("alice"), answer("alice")], required=2)
    assert check([answer("alice"), answer("bob")], required=2)["approvers"] == ["alice", "bob"]


def test_a_plan_older_than_its_age_limit_applies_nothing_even_approved():
    """A cleared apply of an old, approved run."""
    with pytest.raises(ApprovalRefused, match="longer ago than runbook_plan_max_age"):
        check([answer("alice")], now=PLANNED + timedelta(hours=5))


def test_no_plan_applies_nothing():
    with pytest.raises(ApprovalRefused, match="no plan"):
        check([answer("alice")], plan=None)


def test_the_digest_changes_with_any_part_of_the_plan():
    assert digest(PLAN) == digest(dict(reversed(list(PLAN.items()))))
    edited = {**PLAN, "results": {"pg_restore_db": [{**PLAN["results"]["pg_restore_db"][0],
                                                     "backup": {"id": "20261207T044200Z"}}]}}
    assert digest(edited) != digest(PLAN) and digest(PLAN).startswith("sha256:")


def test_the_plan_in_words_has_no_json():
    lines = plan_lines({"results": {"lambda_concurrency": [{"host": "localhost", "task": "Stop functions",
                                                            "lines": ["stop   Lambda function chat-api: 7 -> 0"],
                                                            "msg": "1 function"}]},
                        **{k: v for k, v in PLAN.items() if k != "results"}})
    assert lines == ["**Stop functions** on localhost:", "- stop   Lambda function chat-api: 7 -> 0"]
    assert plan_lines(PLAN)[1] == "- would restore backup 20261207T021500Z into chat"


def test_what_the_plan_resolved_is_passed_on():
    assert resolved(PLAN, ("pg_restore_db", "backup", "id"), "backup") == "20261207T021500Z"
    two = {"results": {"pg_restore_db": [{"backup": {"id": "a"}}, {"backup": {"id": "b"}}]}}
    with pytest.raises(PlaybookFailed, match="resolved 2 values of backup"):
        resolved(two, ("pg_restore_db", "backup", "id"), "backup")


def test_who_may_approve_and_how_many_per_dag(monkeypatch):
    monkeypatch.delenv("RUNBOOK_APPROVERS", raising=False)
    assert approvers("recover_db") == set()
    monkeypatch.setenv("RUNBOOK_APPROVERS", "alice, bob")
    assert approvers("recover_db") == {"alice", "bob"}
    monkeypatch.setenv("RUNBOOK_APPROVERS", '{"recover_db": ["carol"], "*": ["alice"]}')
    assert approvers("recover_db") == {"carol"} and approvers("scale") == {"alice"}
    monkeypatch.delenv("RUNBOOK_APPROVALS_REQUIRED", raising=False)
    assert approvals_required("recover_db", {"scope": "database"}) == 1
    assert approvals_required("recover_db", {"scope": "cluster"}) == 2
    monkeypatch.setenv("RUNBOOK_APPROVALS_REQUIRED", '{"scale": 3, "*": 1}')
    assert approvals_required("scale", {}) == 3 and approvals_required("recover_db", {}) == 1
    monkeypatch.setenv("RUNBOOK_APPROVALS_REQUIRED", "0")
    with pytest.raises(ApprovalRefused, match="give 1 or more"):
        approvals_required("scale", {})


def test_approvers_and_operators_by_role_under_the_simple_auth_manager(monkeypatch):
    users = "ann:admin, otto:op, uma:user, vic:viewer"
    simple = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    assert role_members("op", simple, users) == {"ann", "otto"}  # a role includes the roles above it
    assert role_members("User", simple, users) == {"ann", "otto", "uma"}
    with pytest.raises(ApprovalRefused, match="not a role of the SimpleAuthManager"):
        role_members("Ops", simple, users)
    with pytest.raises(ApprovalRefused, match="name the users instead"):
        role_members("op", "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager", users)
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", simple)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", users)
    monkeypatch.setenv("RUNBOOK_APPROVERS", '{"recover_db": ["role:op", "zed"], "*": ["uma"]}')
    assert approvers("recover_db") == {"ann", "otto", "zed"} and approvers("scale") == {"uma"}
    monkeypatch.delenv("RUNBOOK_OPERATORS", raising=False)
    assert people("operators", "recover_db") is None  # not set: whoever Airflow lets trigger the DAG
    monkeypatch.setenv("RUNBOOK_OPERATORS", "role:admin")
    assert people("operators", "recover_db") == {"ann"}
    monkeypatch.setenv("RUNBOOK_OPERATORS", '{"scale": "otto"}')
    assert people("operators", "scale") == {"otto"} and people("operators", "recover_db") is None
