"""The UpdateStage semantics added to the emulator (pure logic; the HTTP path is tested in integration)."""
from types import SimpleNamespace

from sandbox.aws_emulator import update_stage_model


def stage():
    return SimpleNamespace(default_route_settings={"throttlingBurstLimit": 500, "throttlingRateLimit": 1000.0,
                                                   "loggingLevel": "OFF"},
                           route_settings={"$default": {"throttlingBurstLimit": 10}},
                           stage_variables={"table": "sessions", "mode": "live"}, description="prod",
                           auto_deploy=True, access_log_settings=None, client_certificate_id=None,
                           deployment_id=None, updated=None)


def test_only_given_members_change_and_route_settings_merge():
    updated = update_stage_model(stage(), {"defaultRouteSettings": {"throttlingBurstLimit": 0,
                                                                    "throttlingRateLimit": 0}})
    assert updated.default_route_settings == {"throttlingBurstLimit": 0, "throttlingRateLimit": 0,
                                              "loggingLevel": "OFF"}
    assert updated.description == "prod" and updated.auto_deploy is True


def test_route_settings_and_stage_variables():
    updated = update_stage_model(stage(), {"routeSettings": {"$default": {"throttlingRateLimit": 5}},
                                           "stageVariables": {"mode": "", "new": "1"}, "description": "x"})
    assert updated.route_settings == {"$default": {"throttlingBurstLimit": 10, "throttlingRateLimit": 5}}
    assert updated.stage_variables == {"table": "sessions", "new": "1"}
    assert updated.description == "x"


def test_fault_rules_every_and_times(tmp_path):
    import json

    from sandbox.aws_emulator import Faults

    rules = tmp_path / "faults.json"
    rules.write_text(json.dumps([{"operation": "PutFunctionConcurrency", "match": "fn-2", "every": 2, "times": 2,
                                  "code": "ThrottlingException"}]))
    faults = Faults(str(rules))
    hits = [bool(faults.check("PutFunctionConcurrency", "/functions/fn-2/concurrency")) for _call in range(6)]
    assert hits == [False, True, False, True, False, False]
    assert faults.check("PutFunctionConcurrency", "/functions/fn-3/concurrency") is None
    assert faults.check("GetFunction", "/functions/fn-2") is None
    assert len((tmp_path / "faults.json.log").read_text().splitlines()) == 2


def test_the_fifth_switch_to_on_demand_in_a_rolling_day_is_refused_as_aws_does():
    import pytest
    from moto.dynamodb.exceptions import DynamodbException

    from ansible_collections.runbook.recovery.plugins.module_utils.aws_dynamodb import explain_update_limit
    from sandbox.aws_emulator import refuse_fifth_switch

    now = 1_795_435_200.0  # 2026-11-23T12:00:00Z
    refuse_fifth_switch([now - 86400, now - 3, now - 2, now - 1], now)  # the oldest has left the window
    with pytest.raises(DynamodbException) as refused:
        refuse_fifth_switch([now - 7200, now - 3, now - 2, now - 1], now)
    assert "LimitExceededException" in refused.value.error_type
    # The module reads the time of the next possible switch out of the emulator's message.
    assert "the next switch is possible at Tue Nov 24 10:00:00 UTC 2026" in explain_update_limit(
        refused.value.message)
