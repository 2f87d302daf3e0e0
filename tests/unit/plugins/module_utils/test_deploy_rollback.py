"""Where a deployment rollback goes, what it records, and when a deployment is steady (pure logic; the wait itself is
tested in test_waits.py)."""

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.aws_ecs import (
    ECS_AT,
    ECS_PREVIOUS,
    ECS_SET,
    EcsDeployment,
    deployment_state,
    ecs_history,
    wanted_revision,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import (
    alias_history,
    alias_record_keys,
    check_qualifier,
    decode_weights,
    encode_weights,
    plan_alias,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.deploy_rollback import RECORDED, choose_target
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import Current

ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/"
NOW = "2026-11-23T03:00:00.000000Z"
PREVIOUS, WEIGHTS, SET, AT = alias_record_keys("live")


def family(running="app:5", inactive=(1, 4), active=(2, 3, 5), tags=None, extra=None):
    states = {f"app:{n}": "ACTIVE" for n in active} | {f"app:{n}": "INACTIVE" for n in inactive} | (extra or {})
    return ecs_history(running, states, tags or {})


def refused(history, wanted=None) -> str:
    with pytest.raises(RunbookError) as caught:
        choose_target(history, wanted)
    return str(caught.value)


# -- ECS ----------------------------------------------------------------------------------------------
def test_the_previous_active_revision_skips_inactive_ones_and_names_them():
    choice = choose_target(family(), None)
    assert (choice.action, choice.target) == ("rollback", "app:3")
    assert "app:4 is INACTIVE" in choice.note


def test_another_family_never_counts_as_an_older_revision():
    choice = choose_target(family(extra={"app-worker:9": "ACTIVE", "other:1": "ACTIVE"}), None)
    assert choice.target == "app:3"


def test_nothing_older_is_refused_saying_what_to_do():
    message = refused(family(running="app:2", inactive=(1,), active=(2, 3)))
    assert "it runs app:2, and app has no ACTIVE revision older than it (app:1 is INACTIVE)" in message
    assert "Nothing was changed" in message and "to=REVISION (ACTIVE: 2, 3)" in message


def test_a_named_revision_that_runs_is_unchanged_and_one_that_does_not_is_the_target():
    assert choose_target(family(), "app:5").action == "unchanged"
    choice = choose_target(family(), "app:2")
    assert (choice.action, choice.target) == ("rollback", "app:2")


@pytest.mark.parametrize(("wanted", "expected"), [
    ("app:4", "task definition app:4 is INACTIVE (deregistered)"),
    ("app:9", "task definition app:9 does not exist. Nothing was changed. ACTIVE revisions of app: 2, 3, 5"),
])
def test_an_inactive_or_missing_revision_is_refused(wanted, expected):
    message = refused(family(), wanted)
    assert expected in message
    if "INACTIVE" in expected:
        assert "register-task-definition" in message and "to=REVISION (2, 3, 5)" in message


@pytest.mark.parametrize(("to", "expected"), [
    ("3", "app:3"), (" 3 ", "app:3"), ("other:7", "other:7"), (f"{ARN}app:2", "app:2"), ("", None), (None, None)])
def test_what_a_person_may_write_for_a_revision(to, expected):
    assert wanted_revision(to, "app:5") == expected


def test_a_family_without_a_revision_is_refused():
    with pytest.raises(RunbookError, match="names no task definition revision"):
        wanted_revision("app", "app:5")


def test_a_second_rollback_undoes_the_first_while_the_service_runs_what_it_set():
    tags = {ECS_PREVIOUS: f"{ARN}app:5", ECS_SET: f"{ARN}app:3", ECS_AT: NOW}
    choice = choose_target(family(running="app:3", tags=tags), None)
    assert (choice.action, choice.target) == ("undo", "app:5")
    assert NOW in choice.note


def test_a_record_the_service_moved_on_from_is_not_followed():
    # Rolled back 5 -> 3, then a deploy put it on 6: a rollback now goes to 5 (the newest before 6), and says that
    # an earlier rollback went away from it.
    tags = {ECS_PREVIOUS: f"{ARN}app:5", ECS_SET: f"{ARN}app:3", ECS_AT: NOW}
    choice = choose_target(family(running="app:6", active=(2, 3, 5, 6), tags=tags), None)
    assert (choice.action, choice.target) == ("rollback", "app:5")
    assert "went away from app:5" in choice.note


def test_an_undo_to_a_revision_deregistered_since_is_refused():
    tags = {ECS_PREVIOUS: f"{ARN}app:4", ECS_SET: f"{ARN}app:3"}
    assert "app:4 is INACTIVE" in refused(family(running="app:3", tags=tags))


@pytest.mark.parametrize("state", ["restarted", "rolled_back"])
def test_a_service_deployed_by_codedeploy_is_refused(state):
    current = Current({"task_definition": "app:5"}, {}, {"service": {"deploymentController": {"type": "CODE_DEPLOY"}},
                                                         "history": family()})
    with pytest.raises(RunbookError, match="run by CODE_DEPLOY, not by ECS.*through CodeDeploy"):
        EcsDeployment(None, state).plan(current)


def test_a_restart_replaces_the_tasks_of_the_revision_running():
    current = Current({"task_definition": "app:5"}, {}, {"service": {"desiredCount": 3}})
    plan = EcsDeployment(None, "restarted").plan(current)
    assert (plan.action, plan.write, plan.after) == ("restart", {"force": True}, {"task_definition": "app:5"})
    assert plan.changes and "its 3 task(s) replaced" in plan.note
    with pytest.raises(RunbookError, match="give no task_definition"):
        EcsDeployment(None, "restarted", to="4").plan(current)


# -- Lambda aliases -----------------------------------------------------------------------------------
def alias(running="3", versions=("$LATEST", "1", "2", "3"), tags=None):
    return alias_history("fn", "live", running, list(versions), tags or {})


def test_an_alias_goes_to_the_previous_published_version_recording_what_it_pointed_at():
    plan = plan_alias(alias(), {}, {}, None, "live", NOW)
    assert (plan.action, plan.write) == ("rollback", {"version": "2", "weights": {}})
    assert plan.add_tags == {PREVIOUS: "3", WEIGHTS: "", SET: "2", AT: NOW}
    assert plan.after == {"version": "2"}


def test_a_weighted_alias_first_drops_its_canary_and_the_undo_puts_it_back():
    plan = plan_alias(alias(running="2"), {"3": 0.1}, {}, None, "live", NOW)
    assert (plan.action, plan.write) == ("rollback", {"version": "2", "weights": {}})
    assert "stops sending traffic to 3 (10%)" in plan.note and plan.add_tags[WEIGHTS] == "3=0.1"
    after = alias(running="2", tags=plan.add_tags)
    undo = plan_alias(after, {}, decode_weights(plan.add_tags[WEIGHTS]), None, "live", NOW)
    assert (undo.action, undo.write) == ("undo", {"version": "2", "weights": {"3": 0.1}})


def test_an_undo_restores_the_weights_recorded_with_the_version():
    tags = {PREVIOUS: "3", WEIGHTS: "4=0.25", SET: "1", AT: NOW}
    plan = plan_alias(alias(running="1", versions=("1", "2", "3", "4"), tags=tags), {}, {"4": 0.25}, None, "live",
                      NOW)
    assert (plan.action, plan.write) == ("undo", {"version": "3", "weights": {"4": 0.25}})


def test_a_named_version_already_pointed_at_is_unchanged():
    assert plan_alias(alias(), {}, {}, "3", "live", NOW).action == "unchanged"


@pytest.mark.parametrize(("history", "wanted", "expected"), [
    (alias(), "$LATEST", "version=$LATEST: a rollback never points an alias at $LATEST"),
    (alias(), "7", "function fn has no published version '7'. Nothing was changed. Give one of its published "
                   "versions: 1, 2, 3."),
    (alias(running="1"), None, "it points at version 1, and fn has no published version older than it"),
    (alias(running="$LATEST"), None, "it points at $LATEST, which has no version before it"),
    (alias(running="2", tags={PREVIOUS: "LATEST", SET: "2"}), None,
     "the alias pointed at $LATEST before the rollback its record undoes"),
])
def test_alias_refusals_name_the_problem_and_what_to_do(history, wanted, expected):
    with pytest.raises(RunbookError) as caught:
        plan_alias(history, {}, {}, wanted, "live", NOW)
    assert expected in str(caught.value) and "Nothing was changed" in str(caught.value)


def test_weights_survive_the_tag_value_they_are_kept_in():
    weights = {"4": 0.25, "5": 0.05}
    assert encode_weights(weights) == "4=0.25/5=0.05" and decode_weights(encode_weights(weights)) == weights
    assert decode_weights("") == {}
    with pytest.raises(RunbookError, match="is not VERSION=WEIGHT"):
        decode_weights("4:0.25")


# -- provisioned concurrency on $LATEST (the scale path) ---------------------------------------------------
def test_latest_as_a_provisioned_concurrency_qualifier_is_refused():
    with pytest.raises(RunbookError, match=r"qualifier=\$LATEST: AWS applies provisioned concurrency only"):
        check_qualifier("$LATEST")
    check_qualifier("live")
    check_qualifier(None)


# -- steady state and the wait ----------------------------------------------------------------------
def service(*deployments, status="ACTIVE"):
    return {"status": status, "deployments": list(deployments)}


def deployment(id_, status="PRIMARY", running=2, desired=2, rollout="COMPLETED", reason=""):
    return {"id": id_, "status": status, "runningCount": running, "desiredCount": desired, "rolloutState": rollout,
            "rolloutStateReason": reason, "taskDefinition": f"{ARN}app:3"}


@pytest.mark.parametrize(("described", "state", "detail"), [
    (service(deployment("new")), "done", "2/2 tasks of app:3 running, 1 deployment(s)"),
    (service(deployment("new", running=0, rollout="IN_PROGRESS"), deployment("old", status="ACTIVE")), "waiting",
     "0/2 tasks"),
    (service(deployment("new", rollout="FAILED", reason="tasks failed to start")), "failed",
     "ECS marked deployment new FAILED: tasks failed to start"),
    (service(deployment("other")), "failed", "deployment new was replaced by another one before it finished"),
    (service(deployment("new", status="ACTIVE"), deployment("rollback")), "failed", "is no longer the primary one"),
    (service(deployment("new"), status="DRAINING"), "failed", "the service is DRAINING"),
])
def test_deployment_state(described, state, detail):
    found_state, found_detail = deployment_state(described, "new")
    assert found_state == state and detail in found_detail


def test_to_recorded_is_what_the_last_rollback_set_and_nothing_to_do_while_it_holds():
    tags = {ECS_PREVIOUS: f"{ARN}app:5", ECS_SET: f"{ARN}app:3", ECS_AT: NOW}
    assert wanted_revision(RECORDED, "app:3") == RECORDED
    assert choose_target(family(running="app:3", tags=tags), RECORDED).action == "unchanged"
    moved_on = choose_target(family(running="app:5", tags=tags), RECORDED)
    assert (moved_on.action, moved_on.target) == ("rollback", "app:3")
    assert "no rollback is recorded on it" in refused(family(running="app:3"), RECORDED)
