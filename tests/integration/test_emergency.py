"""Emergency shutdown and resume against the AWS emulator over HTTP: real boto3 in the modules, real
ansible-playbook runs, and the AWS CLI as the independent reader of what AWS holds."""

from __future__ import annotations

import json

import pytest
from aws_world import AwsWorkspace, World, clients, create_functions

SHUTDOWN, RESUME = "emergency-shutdown.yml", "emergency-resume.yml"
STOPPED_STAGE = (0, 0.0)


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator))


def workspace_for(tmp_path, world: World, **scopes) -> AwsWorkspace:
    return AwsWorkspace(tmp_path, world.env, scopes or {"incident": world.scope()})


def account_limits(world: World) -> tuple:
    [apigateway] = clients(world.env, "apigateway")
    limits = apigateway.get_account()["throttleSettings"]
    return limits["burstLimit"], float(limits["rateLimit"])


def test_round_trip_restores_every_value_exactly(tmp_path, world):
    # Routes and REST methods with limits of their own, an ECS service under auto scaling (min 2) and SQS event
    # source mappings (fn-0's enabled, fn-1's disabled before the incident): each is a way back in that a shutdown
    # of the stages' defaults, the functions and the service's count alone leaves open.
    world.build(reserved=(7, None, 0), routes=True, scaling=(2, 6), mappings=((0, True), (1, False)))
    ws = workspace_for(tmp_path, world)
    before = world.observe(cli=False)
    t = world.tag
    assert before[f"lambda:{t}-fn-0"] == 7 and before[f"lambda:{t}-fn-1"] is None and before[f"lambda:{t}-fn-2"] == 0
    assert before[f"stage:{t}-ws"] == (500, 1000.0) and before[f"stage:{t}-http"] == (None, None)
    assert before[f"stage:{t}-ws:routes"] == {"sendMessage": (50, 20.0, "INFO"), "$connect": (10, None, None)}
    assert before[f"stage:{t}-rest:methods"] == {"~1/GET": (30, 15.5)}
    assert before["ecs:backend"] == (3, {})
    assert before["scaling:backend"] == (2, 6, False, False, False) and before["scaling:backend:tags"] == {}
    assert before["mapping:fn-0 <- queue-0"] == "Enabled" and before["mapping:fn-1 <- queue-1"] == "Disabled"

    # The plan shows every resource and its current value, and changes nothing.
    plan = ws.play(SHUTDOWN, check=True, shutdown_scope="incident")
    assert plan.rc == 0, plan.output
    for name in (f"{t}-fn-0", f"{t}-fn-1", f"{t}-ws/prod", f"{t}-http/prod", f"{t}-rest/prod", "backend",
                 f"service/{t}-cluster/backend", f"{t}-fn-0 <- sqs:{t}-queue-0"):
        assert name in plan.output
    assert plan.says("reserved_concurrency=7 -> reserved_concurrency=0")
    assert plan.says("burst_limit@sendMessage=50") and plan.says("burst_limit@GET /=30")
    assert world.observe(cli=False) == before

    shutdown = ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident")
    assert shutdown.rc == 0 and shutdown.changed > 0, shutdown.output
    stopped = world.observe()
    for i in range(3):
        assert stopped[f"lambda:{t}-fn-{i}"] == 0
    for stage in (f"{t}-ws", f"{t}-http", f"{t}-rest"):
        assert stopped[f"stage:{stage}"] == STOPPED_STAGE
    # Every limit a route or method sets is 0 (one it leaves unset follows the stopped default); logging is kept.
    assert stopped[f"stage:{t}-ws:routes"] == {"sendMessage": (0, 0.0, "INFO"), "$connect": (0, None, None)}
    assert stopped[f"stage:{t}-rest:methods"] == {"~1/GET": STOPPED_STAGE}
    # The service stays at 0: its auto scaling target holds 0-0 with scaling suspended (the emulator scales a
    # service below its target's minimum back up before the next read, as AWS would within minutes).
    assert stopped["ecs:backend"][0] == 0 and stopped["scaling:backend"] == (0, 0, True, True, True)
    assert stopped["mapping:fn-0 <- queue-0"] == "Disabled" and stopped["mapping:fn-1 <- queue-1"] == "Disabled"
    # The previous values live on the resources themselves.
    assert stopped[f"lambda:{t}-fn-0:tags"]["runbook:previous-reserved-concurrency"] == "7"
    assert stopped[f"lambda:{t}-fn-1:tags"]["runbook:previous-reserved-concurrency"] == "none"
    assert stopped[f"lambda:{t}-fn-2:tags"] == {}  # at 0 before the shutdown: not ours, nothing recorded
    assert stopped[f"stage:{t}-ws:tags"]["runbook:previous-throttling-burst-limit"] == "500"
    assert stopped[f"stage:{t}-ws:tags"]["runbook:previous-throttling-rate-limit@sendMessage"] == "20.0"
    assert stopped[f"stage:{t}-ws:tags"]["runbook:previous-throttling-burst-limit@=24connect"] == "10"
    assert stopped[f"stage:{t}-rest:tags"]["runbook:previous-throttling-burst-limit@GET /"] == "30"
    assert stopped[f"stage:{t}-http:tags"]["runbook:previous-throttling-rate-limit"] == "none"
    assert stopped["ecs:backend"][1]["runbook:previous-desired-count"] == "3"
    assert {key: value for key, value in stopped["scaling:backend:tags"].items() if key != "runbook:stopped-at"} == {
        "runbook:previous-min-capacity": "2", "runbook:previous-max-capacity": "6",
        "runbook:previous-dynamic-scaling-in-suspended": "False",
        "runbook:previous-dynamic-scaling-out-suspended": "False",
        "runbook:previous-scheduled-scaling-suspended": "False"}
    assert stopped["mapping:fn-0 <- queue-0:tags"]["runbook:previous-enabled"] == "True"
    assert stopped["mapping:fn-1 <- queue-1:tags"] == {}  # disabled before: not ours, stays disabled

    # A second shutdown changes nothing and keeps the first record (never overwrites 7 with 0).
    again = ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident")
    assert again.rc == 0 and again.changed == 0, again.output
    assert world.observe(cli=False) == stopped

    # The resume plan changes nothing either.
    assert ws.play(RESUME, check=True, shutdown_scope="incident").rc == 0
    assert world.observe(cli=False) == stopped

    resume = ws.play(RESUME, confirm=True, shutdown_scope="incident")
    assert resume.rc == 0 and resume.changed > 0, resume.output
    after = world.observe()
    # AWS cannot unset stage throttling: a stage that had none gets the account-level limits, which is what
    # applied to it before; everything else is exactly as before, and no runbook tag is left.
    expected = dict(before)
    expected[f"stage:{t}-http"] = expected[f"stage:{t}-rest"] = account_limits(world)
    assert after == expected
    assert resume.says("account-level limits")

    second = ws.play(RESUME, confirm=True, shutdown_scope="incident")
    assert second.rc == 0 and second.changed == 0, second.output
    assert world.observe(cli=False) == expected

    records = [r for r in ws.audit() if r["procedure"] in ("emergency-shutdown", "emergency-resume")]
    assert [(r["procedure"], r["result"]) for r in records] == [
        ("emergency-shutdown", "acted"), ("emergency-shutdown", "unchanged"),
        ("emergency-resume", "acted"), ("emergency-resume", "unchanged")]
    first = {row["resource"]: row for row in records[0]["resources"]}
    assert first[f"{t}-fn-0"]["before"] == {"reserved_concurrency": 7}
    assert first[f"{t}-fn-0"]["after"] == {"reserved_concurrency": 0}


def test_value_changed_during_the_incident_is_stopped_again_and_the_first_record_wins(tmp_path, world):
    world.build(reserved=(7,), throttled_stage=False, unthrottled_stage=False, rest_stage=False, ecs_desired=None)
    ws = workspace_for(tmp_path, world)
    name = f"{world.tag}-fn-0"
    assert ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident").rc == 0
    [lam] = clients(world.env, "lambda")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)  # someone "helps"

    again = ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident")
    assert again.rc == 0 and again.changed == 1, again.output
    assert world.observe(cli=False)[f"lambda:{name}"] == 0
    assert ws.play(RESUME, confirm=True, shutdown_scope="incident").rc == 0
    assert world.observe(cli=False)[f"lambda:{name}"] == 7


def test_partial_failure_stops_the_others_reports_the_failure_and_resume_restores_all(tmp_path, world, aws_emulator):
    world.build(reserved=(7, 8, 9, None, 4, 5), rest_stage=False, unthrottled_stage=False)
    ws = workspace_for(tmp_path, world)
    before = world.observe(cli=False)
    t = world.tag
    aws_emulator.inject({"operation": "PutFunctionConcurrency", "match": f"{t}-fn-2", "code": "AccessDeniedException",
                         "status": 403, "message": "not allowed on this function"})

    shutdown = ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident")
    assert shutdown.rc != 0
    assert shutdown.says(f"{t}-fn-2") and "AccessDeniedException" in shutdown.output
    assert shutdown.says("emergency-resume.yml restores every resource that was stopped")
    stopped = world.observe()
    assert stopped[f"lambda:{t}-fn-2"] == 9  # the one that failed
    for i in (0, 1, 3, 4, 5):
        assert stopped[f"lambda:{t}-fn-{i}"] == 0
    assert stopped[f"stage:{t}-ws"] == STOPPED_STAGE and stopped["ecs:backend"][0] == 0
    [record] = [r for r in ws.audit() if r["procedure"] == "emergency-shutdown"]
    assert record["result"] == "failed" and record["failed"] == [f"{t}-fn-2"]

    aws_emulator.clear_faults()
    resume = ws.play(RESUME, confirm=True, shutdown_scope="incident")
    assert resume.rc == 0, resume.output
    assert world.observe(cli=False) == before


def test_throttled_api_calls_are_retried_until_the_run_completes(tmp_path, world, aws_emulator):
    world.build(reserved=tuple(range(1, 21)), throttled_stage=False, unthrottled_stage=False, rest_stage=False,
                ecs_desired=None)
    ws = workspace_for(tmp_path, world)
    # Every other Lambda call is refused with a throttling error, as AWS does under load (12 of them: under
    # sustained throttling, adaptive retries slow the whole run down on purpose).
    aws_emulator.inject({"match": f"{world.tag}-fn-", "code": "ThrottlingException", "status": 429, "every": 2,
                         "times": 12, "message": "Rate exceeded"})
    shutdown = ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident")
    assert shutdown.rc == 0, shutdown.output
    assert len(aws_emulator.injected()) == 12
    [lam] = clients(world.env, "lambda")
    for name in world.functions:
        assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0
    resume = ws.play(RESUME, confirm=True, shutdown_scope="incident")
    assert resume.rc == 0, resume.output
    for name, reserved in world.functions.items():
        assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == reserved


def test_functions_selected_by_tags(tmp_path, world):
    create_functions(world.env, {f"{world.tag}-a": 2, f"{world.tag}-b": None}, tags={"team": world.tag})
    create_functions(world.env, {f"{world.tag}-other": 6})
    ws = workspace_for(tmp_path, world, incident={"lambda": {"tags": {"team": world.tag}}})
    assert ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident").rc == 0
    [lam] = clients(world.env, "lambda")
    reserved = {name: lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
                for name in (f"{world.tag}-a", f"{world.tag}-b", f"{world.tag}-other")}
    assert reserved == {f"{world.tag}-a": 0, f"{world.tag}-b": 0, f"{world.tag}-other": 6}


# -- bad input: refused before anything changes -----------------------------------------------------
def test_missing_confirm_shows_the_plan_and_changes_nothing(tmp_path, world):
    world.build(reserved=(7,), unthrottled_stage=False, rest_stage=False)
    ws = workspace_for(tmp_path, world)
    before = world.observe(cli=False)
    run = ws.play(SHUTDOWN, shutdown_scope="incident")
    assert run.rc != 0
    assert run.says("Not confirmed: nothing was changed") and "-e confirm=true" in run.output
    assert run.says("reserved_concurrency=7 -> reserved_concurrency=0")
    assert world.observe(cli=False) == before


def test_unknown_scope_is_refused_with_the_scopes_that_exist(tmp_path, world):
    ws = workspace_for(tmp_path, world, chatbot={"lambda": {"names": ["x"]}}, billing={"lambda": {"names": ["y"]}})
    run = ws.play(SHUTDOWN, confirm=True, shutdown_scope="chatbto")
    assert run.rc != 0
    assert run.says('Unknown scope "chatbto": nothing was changed') and run.says("defines billing, chatbot")
    missing = ws.play(SHUTDOWN, confirm=True)
    assert missing.rc != 0 and missing.says("No scope given") and missing.says("-e shutdown_scope=NAME")


def test_selector_matching_nothing_fails_before_any_change(tmp_path, world):
    world.build(reserved=(7,), unthrottled_stage=False, rest_stage=False)
    scope = world.scope()
    scope["lambda"]["prefixes"].append(f"{world.tag}-typo-")
    ws = workspace_for(tmp_path, world, incident=scope)
    before = world.observe(cli=False)
    run = ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident")
    assert run.rc != 0
    assert run.says(f"prefix '{world.tag}-typo-' matches no Lambda function")
    assert world.observe(cli=False) == before  # the stage, listed before the functions, was not throttled either

    bad_stage = world.scope()
    bad_stage["api_stages"] = [{"api": f"{world.tag}-ws", "stage": "prdo"}]
    ws.write_inventory({"incident": bad_stage})
    run = ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident")
    assert run.rc != 0 and run.says("has no stage 'prdo' (it has: prod)")
    assert world.observe(cli=False) == before


def test_health_sweep_reports_a_shutdown_left_in_force(tmp_path, world):
    world.build(reserved=(7,), unthrottled_stage=False, rest_stage=False, scaling=(1, 4), mappings=((0, True),))
    ws = workspace_for(tmp_path, world)
    t = world.tag
    [(mapping, _)] = world.mappings.values()
    ours = {f"lambda:{t}-fn-0", f"apigateway:{t}-ws/prod", f"ecs:{t}-cluster/backend",
            f"autoscaling:service/{t}-cluster/backend", f"lambda-esm:{t}-fn-0 <- sqs:{t}-queue-0 ({mapping})"}

    def shutdown_findings() -> dict:
        """Our resources' shutdown findings (other tests share the emulator: only ours are looked at)."""
        report = json.loads((tmp_path / "reports" / "health-latest.json").read_text())
        return {f["target"]: f for f in report["findings"]
                if f["target"] in ours and f["check"] == "shutdown_age_hours"}

    ws.play("health-sweep.yml")
    assert shutdown_findings() == {}

    assert ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident").rc == 0
    sweep = ws.play("health-sweep.yml")
    found = shutdown_findings()
    assert set(found) == ours, sweep.output
    assert {f["severity"] for f in found.values()} == {"warning"}  # a warning, not critical, while it is young
    assert all("run emergency-resume.yml" in f["message"] for f in found.values())

    assert ws.play(RESUME, confirm=True, shutdown_scope="incident").rc == 0
    ws.play("health-sweep.yml")
    assert shutdown_findings() == {}


def test_an_event_source_mapping_deleted_mid_run_is_named_and_the_rest_is_stopped(tmp_path, world, aws_emulator):
    """Someone deletes a mapping between the shutdown's read of it and its write (the emulator holds the write until
    the test has deleted it): the run names that mapping as gone, stops everything else, and the resume brings back
    everything that still exists."""
    world.build(reserved=(7,), unthrottled_stage=False, rest_stage=False, ecs_desired=None, mappings=((0, True),))
    ws = workspace_for(tmp_path, world)
    t = world.tag
    [(mapping, _)] = world.mappings.values()
    [lam] = clients(world.env, "lambda")

    def delete_it():
        lam.delete_event_source_mapping(UUID=mapping)
        world.mappings.clear()  # gone: not observed any more

    run = aws_emulator.race({"operation": "UpdateEventSourceMapping", "match": mapping},
                            lambda: ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident"), delete_it,
                            tmp_path / "release")
    assert run.rc != 0 and run.says("the mapping no longer exists (deleted during the run?)"), run.output[-4000:]
    assert lam.get_function_concurrency(FunctionName=f"{t}-fn-0")["ReservedConcurrentExecutions"] == 0
    assert world.observe(cli=False)[f"stage:{t}-ws"] == STOPPED_STAGE
    resume = ws.play(RESUME, confirm=True, shutdown_scope="incident")
    assert resume.rc == 0, resume.output[-4000:]
    assert lam.get_function_concurrency(FunctionName=f"{t}-fn-0")["ReservedConcurrentExecutions"] == 7


def test_resume_refuses_an_unknown_scope_none_and_no_confirmation_with_nothing_changed(tmp_path, world):
    """emergency-resume.yml's refusals, after a real shutdown: an unknown scope, no scope, an empty scope and no
    confirm=true each stop before any change, saying what is wrong and what to do; the stopped values stay."""
    world.build(reserved=(7,), unthrottled_stage=False, rest_stage=False, ecs_desired=None)
    ws = AwsWorkspace(tmp_path, world.env, {"incident": world.scope(), "empty": {}})
    assert ws.play(SHUTDOWN, confirm=True, shutdown_scope="incident").rc == 0
    stopped = world.observe(cli=False)
    for extra, says in (({"shutdown_scope": "nope"}, 'Unknown scope "nope": nothing was changed'),
                        ({}, "No scope given: nothing was changed"),
                        ({"shutdown_scope": "empty"}, "Scope empty selects nothing"),
                        ({"shutdown_scope": "incident", "confirm": False}, "Not confirmed: nothing was changed")):
        run = ws.play(RESUME, **extra)
        assert run.rc != 0 and run.says(says), (extra, run.output[-3000:])
        assert world.observe(cli=False) == stopped, extra
    assert [r["result"] for r in ws.audit() if r["procedure"] == "emergency-resume"] in ([], ["refused"])
