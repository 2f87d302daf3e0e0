"""One Lambda environment variable at a time (lambda-env.yml) against the AWS emulator over HTTP: only the variables
named change, a concurrent change is kept, the undo (by hand or at expiry) puts back exactly what was there, a
variable someone changed since is refused, and the values never reach the output or the audit log. Read back with
the AWS CLI."""

from __future__ import annotations

import calendar
import json
import time

import pytest
from aws_world import AwsWorkspace, World, aws, clients, lambda_zip

PLAYBOOK = "lambda-env.yml"
SECRET = "pg-password-7f3a9c1e"  # a variable value that must never be shown


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator))


@pytest.fixture
def ws(tmp_path, world):
    return AwsWorkspace(tmp_path, world.env, {})


def make_function(world: World, suffix: str = "chat") -> str:
    iam, lam = clients(world.env, "iam", "lambda")
    role = iam.create_role(RoleName=f"{world.tag}-{suffix}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    name = f"{world.tag}-{suffix}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                        Code={"ZipFile": lambda_zip()}, MemorySize=256,
                        Environment={"Variables": {"SESSIONS_TABLE": "chatbot-sessions", "LOG_LEVEL": "INFO",
                                                   "DB_PASSWORD": SECRET}})
    return name


def variables(world: World, name: str, cli: bool = True) -> dict:
    config = aws(world.env, "lambda", "get-function-configuration", "--function-name", name, cli=cli)
    return (config.get("Environment") or {}).get("Variables") or {}


def runbook_tags(world: World, name: str) -> dict:
    tags = aws(world.env, "lambda", "list-tags", "--resource",
               f"arn:aws:lambda:us-east-1:123456789012:function:{name}")["Tags"]
    return {k: v for k, v in tags.items() if k.startswith("runbook:")}


def record(world: World, name: str) -> dict | None:
    found = aws(world.env, "ssm", "get-parameters", "--names", f"/runbook/lambda-env/{name}", "--with-decryption")
    return {"type": found["Parameters"][0]["Type"], **json.loads(found["Parameters"][0]["Value"])} \
        if found["Parameters"] else None


def set_variable_elsewhere(world: World, name: str, key: str, value: str | None) -> None:
    """Another person's change: the whole map written back as the console does."""
    [lam] = clients(world.env, "lambda")
    current = variables(world, name, cli=False)
    current.pop(key, None)
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {
        **current, **({key: value} if value is not None else {})}})


def test_debug_logging_keeps_every_other_variable_and_undo_puts_back_exactly_that(ws, world):
    name = make_function(world)
    before = variables(world, name)

    plan = ws.play(PLAYBOOK, check=True, function=name, debug=True, **{"for": "30m"})
    assert plan.rc == 0 and plan.says(f"{name}: would set LOG_LEVEL ('INFO' -> 'DEBUG')"), plan.output[-3000:]
    refused = ws.play(PLAYBOOK, function=name, debug=True)
    assert refused.rc != 0 and refused.says("Not confirmed, nothing was changed"), refused.output[-3000:]
    assert variables(world, name, cli=False) == before and record(world, name) is None

    run = ws.play(PLAYBOOK, function=name, debug=True, confirm=True, **{"for": "30m"})
    assert run.rc == 0 and run.changed, run.output[-3000:]
    assert variables(world, name) == {**before, "LOG_LEVEL": "DEBUG"}  # the other variables are all there
    kept = record(world, name)
    assert kept["type"] == "SecureString" and kept["variables"]["LOG_LEVEL"]["previous"] == "INFO"
    tags = runbook_tags(world, name)
    assert tags["runbook:env-record"] == f"/runbook/lambda-env/{name}"
    lifted = calendar.timegm(time.strptime(tags["runbook:env-expires-at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert 25 * 60 < lifted - time.time() <= 30 * 60

    again = ws.play(PLAYBOOK, function=name, debug=True, confirm=True, **{"for": "30m"})
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    not_yet = ws.play(PLAYBOOK, lift_expired=True, confirm=True)
    assert not_yet.rc == 0 and not_yet.changed == 0 and variables(world, name, cli=False)["LOG_LEVEL"] == "DEBUG"

    assert ws.play(PLAYBOOK, check=True, function=name, undo=True).rc == 0
    assert variables(world, name, cli=False)["LOG_LEVEL"] == "DEBUG"
    undo = ws.play(PLAYBOOK, function=name, undo=True, confirm=True)
    assert undo.rc == 0 and undo.changed, undo.output[-3000:]
    assert variables(world, name) == before
    assert runbook_tags(world, name) == {} and record(world, name) is None
    second = ws.play(PLAYBOOK, function=name, undo=True, confirm=True)
    assert second.rc == 0 and second.changed == 0, second.output[-3000:]

    audit = ws.audit()
    assert [(r["procedure"], r["result"], r["state"]) for r in audit] == [
        ("lambda-env", "acted", "present"), ("lambda-env", "acted", "undone")]
    everything = plan.output + run.output + undo.output + ws.audit_log.read_text()
    assert SECRET not in everything, "a variable's value was shown"


def test_set_and_unset_then_undo_removes_what_was_added_and_puts_back_what_was_removed(ws, world):
    name = make_function(world)
    before = variables(world, name)
    run = ws.play(PLAYBOOK, function=name, variables={"FEATURE_X": "off"}, unset="SESSIONS_TABLE", confirm=True)
    assert run.rc == 0, run.output[-3000:]
    after = dict(before)
    after.pop("SESSIONS_TABLE")
    assert variables(world, name) == {**after, "FEATURE_X": "off"}
    # A second change of the same variable keeps what it held before the first: undo goes back to before both.
    more = ws.play(PLAYBOOK, function=name, variables='{"FEATURE_X": "on"}', confirm=True)
    assert more.rc == 0 and variables(world, name, cli=False)["FEATURE_X"] == "on", more.output[-3000:]
    undo = ws.play(PLAYBOOK, function=name, undo=True, confirm=True)
    assert undo.rc == 0, undo.output[-3000:]
    assert variables(world, name) == before


def test_a_change_made_between_the_read_and_the_write_is_kept(ws, world, aws_emulator, tmp_path):
    name = make_function(world)
    run = aws_emulator.race(
        {"operation": "UpdateFunctionConfiguration", "match": "DEBUG"},
        lambda: ws.play(PLAYBOOK, function=name, debug=True, confirm=True),
        lambda: set_variable_elsewhere(world, name, "ADDED_MEANWHILE", "yes"),
        tmp_path / "release")
    assert run.rc == 0, run.output[-3000:]
    now = variables(world, name)
    assert now["LOG_LEVEL"] == "DEBUG" and now["ADDED_MEANWHILE"] == "yes", now
    undo = ws.play(PLAYBOOK, function=name, undo=True, confirm=True)
    assert undo.rc == 0, undo.output[-3000:]
    assert variables(world, name)["LOG_LEVEL"] == "INFO" and variables(world, name)["ADDED_MEANWHILE"] == "yes"


def test_undo_refuses_a_variable_someone_changed_since_unless_forced(ws, world):
    name = make_function(world)
    assert ws.play(PLAYBOOK, function=name, debug=True, confirm=True).rc == 0
    set_variable_elsewhere(world, name, "LOG_LEVEL", "WARNING")
    refused = ws.play(PLAYBOOK, function=name, undo=True, confirm=True)
    assert refused.rc != 0 and refused.says("LOG_LEVEL changed since lambda-env.yml set it"), refused.output[-3000:]
    assert variables(world, name)["LOG_LEVEL"] == "WARNING" and record(world, name) is not None
    forced = ws.play(PLAYBOOK, function=name, undo=True, force=True, confirm=True)
    assert forced.rc == 0, forced.output[-3000:]
    assert variables(world, name)["LOG_LEVEL"] == "INFO" and record(world, name) is None


def test_a_change_for_a_while_is_lifted_when_its_time_is_up(ws, world):
    short, long = make_function(world, "short"), make_function(world, "long")
    assert ws.play(PLAYBOOK, function=short, debug=True, confirm=True, **{"for": "2s"}).rc == 0
    assert ws.play(PLAYBOOK, function=long, debug=True, confirm=True, **{"for": "1h"}).rc == 0
    time.sleep(2.5)
    plan = ws.play(PLAYBOOK, check=True, lift_expired=True)
    assert plan.rc == 0 and plan.says(f"{short}: would put back LOG_LEVEL"), plan.output[-3000:]
    assert not plan.says(long)
    lift = ws.play(PLAYBOOK, lift_expired=True, confirm=True)
    assert lift.rc == 0 and lift.changed, lift.output[-3000:]
    assert variables(world, short)["LOG_LEVEL"] == "INFO" and runbook_tags(world, short) == {}
    assert variables(world, long)["LOG_LEVEL"] == "DEBUG" and "runbook:env-expires-at" in runbook_tags(world, long)
    assert ws.play(PLAYBOOK, function=long, undo=True, confirm=True).rc == 0


@pytest.mark.parametrize(("extra", "says"), [
    ({"function": "no-such-function-here", "debug": True}, "Lambda function 'no-such-function-here' does not exist"),
    ({"debug": True}, "name the function"),
    ({"function": "FN", "variables": {"AWS_REGION": "eu-west-1"}}, "AWS_REGION is reserved by AWS Lambda"),
    ({"function": "FN", "variables": {"1BAD": "x"}}, "'1BAD' is not a Lambda environment variable name"),
    ({"function": "FN"}, "name the variables to change"),
    ({"function": "FN", "debug": True, "unset": "LOG_LEVEL"}, "LOG_LEVEL is both set and removed"),
    ({"function": "FN", "debug": True, "for": "soon"}, "duration 'soon' is not understood"),
    ({"function": "FN", "variables": {"BIG": "x" * 5000}}, "over Lambda's 4 KB"),
])
def test_bad_input_is_refused_before_any_change(ws, world, extra, says):
    name = make_function(world)
    before = variables(world, name, cli=False)
    run = ws.play(PLAYBOOK, confirm=True, **{k: (name if v == "FN" else v) for k, v in extra.items()})
    assert run.rc != 0 and run.says(says), run.output[-3000:]
    assert variables(world, name, cli=False) == before and record(world, name) is None
    assert runbook_tags(world, name) == {}
