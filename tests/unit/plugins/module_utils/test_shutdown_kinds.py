"""The shutdown's kinds beyond the first three: a stage's route and method limits, an ECS service's auto scaling
target, a Lambda function's event source mappings, and several kinds as one result (pure logic; the emulator and
real playbooks are tested in tests/integration/test_emergency.py)."""

import pytest

from ansible_collections.runbook.recovery.plugins.module_utils.aws_apigateway import (
    StageThrottle,
    rest_key,
    rest_path,
    tag_key_escape,
    tag_key_unescape,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_ecs import EcsAutoScaling, scaling_resource_id
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import EventSourceMapping, mapping_resource
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import (
    STOPPED_AT,
    Current,
    Kind,
    Resource,
    plan_resume,
    plan_stop,
)
from ansible_collections.runbook.recovery.plugins.module_utils.previous_values_extra import recorded_flag, run_steps

NOW = "2026-11-23T03:00:00.000000Z"
BURST, RATE = "runbook:previous-throttling-burst-limit", "runbook:previous-throttling-rate-limit"


@pytest.mark.parametrize("key", ["$connect", "sendMessage", "GET /items/{id}", "ANY /{proxy+}", "a=b", "*/*", "é"])
def test_a_route_key_survives_a_tag_key(key):
    escaped = tag_key_escape(key)
    assert all(c.isalnum() or c in " _.:/+-@=" for c in escaped)
    assert tag_key_unescape(escaped) == key


def test_a_rest_method_key_reads_as_its_path_and_back():
    assert rest_path("~1items~1{id}/GET") == "GET /items/{id}" and rest_path("~1/GET") == "GET /"
    for key in ("~1items~1{id}/GET", "~1/GET", "~1items/*"):
        assert rest_key(rest_path(key)) == key


def stage(values, tags=None):
    return Current(values, tags or {})


def test_a_stage_stop_records_and_stops_every_route_limit_it_sets():
    kind = StageThrottle(clients=None)
    now = {"burst_limit": 500, "rate_limit": 1000.0, "burst_limit@sendMessage": 50, "rate_limit@sendMessage": 20.0,
           "burst_limit@$connect": 10}
    plan = kind.plan("stopped", NOW)(stage(now))
    assert plan.action == "stop"
    assert plan.write == {"burst_limit": 0, "rate_limit": 0.0, "burst_limit@sendMessage": 0,
                          "rate_limit@sendMessage": 0.0, "burst_limit@$connect": 0}
    assert plan.add_tags == {BURST: "500", RATE: "1000.0", f"{BURST}@sendMessage": "50", f"{RATE}@sendMessage": "20.0",
                             f"{BURST}@=24connect": "10", STOPPED_AT: NOW}
    # read back from the tags: every limit, the route key as it was
    assert kind.recorded(plan.add_tags) == now


def test_a_stage_whose_default_is_stopped_but_a_route_is_not_is_stopped():
    plan = StageThrottle(None).plan("stopped", NOW)(stage({"burst_limit": 0, "rate_limit": 0.0,
                                                           "burst_limit@sendMessage": 50}))
    assert plan.action == "stop" and plan.write["burst_limit@sendMessage"] == 0


def test_a_second_stop_keeps_the_first_record_and_records_a_route_limited_since():
    first = {BURST: "500", RATE: "1000.0", f"{BURST}@sendMessage": "50", STOPPED_AT: NOW}
    kind = StageThrottle(None)
    held = kind.plan("stopped", NOW)(stage({"burst_limit": 0, "rate_limit": 0.0, "burst_limit@sendMessage": 0}, first))
    assert held.action == "already_stopped" and not held.changes
    added = kind.plan("stopped", NOW)(stage({"burst_limit": 0, "rate_limit": 0.0, "burst_limit@sendMessage": 0,
                                             "burst_limit@new": 5}, first))
    assert added.action == "stop" and added.add_tags == {f"{BURST}@new": "5"} and added.write["burst_limit@new"] == 0


def test_a_stage_resume_restores_every_recorded_limit_and_forgets_them():
    tags = {BURST: "500", RATE: "1000.0", f"{BURST}@sendMessage": "50", f"{RATE}@GET /items": "2.5",
            STOPPED_AT: NOW, "team": "chat"}
    plan = StageThrottle(None).plan("resumed")(stage({"burst_limit": 0, "rate_limit": 0.0,
                                                      "burst_limit@sendMessage": 0, "rate_limit@GET /items": 0.0,
                                                      "burst_limit@added-since": 9}, tags))
    assert plan.action == "resume"
    assert plan.write == {"burst_limit": 500, "rate_limit": 1000.0, "burst_limit@sendMessage": 50,
                          "rate_limit@GET /items": 2.5}  # a route limited since the shutdown is left as it is
    assert sorted(plan.remove_tags) == sorted(set(tags) - {"team"})


def test_a_route_changed_during_the_incident_leaves_the_stage_as_it_is():
    tags = {BURST: "500", RATE: "1000.0", f"{BURST}@sendMessage": "50", STOPPED_AT: NOW}
    plan = StageThrottle(None).plan("resumed")(stage({"burst_limit": 0, "rate_limit": 0.0,
                                                      "burst_limit@sendMessage": 70}, tags))
    assert plan.action == "resume" and plan.write is None and "changed by someone else" in plan.note


@pytest.mark.parametrize("tags", [
    {f"{BURST}@sendMessage": "50"},  # a route's record without the stage's own
    {BURST: "5", RATE: "1.0", f"{BURST}@sendMessage": "none"},  # a route limit is never "not set"
    {BURST: "5", RATE: "1.0", f"{BURST}@bad=ZZ": "1"},  # not written by the escape
])
def test_an_unreadable_stage_record_is_an_error_not_a_guess(tags):
    with pytest.raises(RunbookError, match="by hand"):
        StageThrottle(None).recorded(tags)


def test_a_route_key_too_long_for_a_tag_key_is_refused_before_any_change():
    with pytest.raises(RunbookError, match="too long"):
        StageThrottle(None).plan("stopped", NOW)(stage({"burst_limit": 1, "rate_limit": 1.0,
                                                        f"burst_limit@{'x' * 100}": 5}))


def test_scaling_a_stage_keeps_to_the_default():
    assert StageThrottle(None).plan("present") is None


TARGET_BEFORE = {"min_capacity": 2, "max_capacity": 6, "dynamic_scaling_in_suspended": False,
                 "dynamic_scaling_out_suspended": False, "scheduled_scaling_suspended": False}


def test_an_auto_scaling_target_is_held_at_zero_with_scaling_suspended_and_its_range_recorded():
    kind = EcsAutoScaling(None)
    plan = plan_stop(kind, Current(dict(TARGET_BEFORE), {}), NOW)
    assert plan.write == {"min_capacity": 0, "max_capacity": 0, "dynamic_scaling_in_suspended": True,
                          "dynamic_scaling_out_suspended": True, "scheduled_scaling_suspended": True}
    assert plan.add_tags == {"runbook:previous-min-capacity": "2", "runbook:previous-max-capacity": "6",
                             "runbook:previous-dynamic-scaling-in-suspended": "False",
                             "runbook:previous-dynamic-scaling-out-suspended": "False",
                             "runbook:previous-scheduled-scaling-suspended": "False", STOPPED_AT: NOW}
    resume = plan_resume(kind, Current(dict(plan.write), plan.add_tags))
    assert resume.write == TARGET_BEFORE


def test_a_target_that_was_already_suspended_is_restored_suspended():
    before = {**TARGET_BEFORE, "scheduled_scaling_suspended": True}
    kind = EcsAutoScaling(None)
    plan = plan_stop(kind, Current(dict(before), {}), NOW)
    assert plan_resume(kind, Current(dict(plan.write), plan.add_tags)).write == before


def test_the_scaling_target_of_a_service_is_named_by_the_cluster_name():
    service = Resource("chat/backend", "arn:aws:ecs:us-east-1:1:service/chat/backend",
                       {"cluster": "arn:aws:ecs:us-east-1:1:cluster/chat"})
    assert scaling_resource_id(service) == "service/chat/backend"


def test_an_enabled_mapping_is_disabled_and_only_it_is_enabled_again():
    kind = EventSourceMapping(None)
    plan = plan_stop(kind, Current({"enabled": True}, {}), NOW)
    assert plan.write == {"enabled": False} and plan.add_tags == {"runbook:previous-enabled": "True",
                                                                  STOPPED_AT: NOW}
    assert plan_resume(kind, Current({"enabled": False}, plan.add_tags)).write == {"enabled": True}
    disabled_before = plan_stop(kind, Current({"enabled": False}, {}), NOW)
    assert disabled_before.action == "already_stopped" and not disabled_before.changes
    assert plan_resume(kind, Current({"enabled": False}, {})).action == "not_stopped"


@pytest.mark.parametrize("text, value", [("True", True), ("false", False)])
def test_a_recorded_flag_is_read(text, value):
    assert recorded_flag(text) is value


def test_a_recorded_flag_that_is_not_one_is_an_unreadable_record():
    with pytest.raises(ValueError):
        recorded_flag("yes")
    with pytest.raises(RunbookError, match="not a value"):
        EventSourceMapping(None).recorded({"runbook:previous-enabled": "yes"})


def test_a_mapping_is_named_by_function_source_and_uuid():
    resource = mapping_resource({"UUID": "u-1", "EventSourceArn": "arn:aws:sqs:us-east-1:1:orders",
                                 "FunctionArn": "arn:aws:lambda:us-east-1:1:function:handler:live"})
    assert resource.name == "handler <- sqs:orders (u-1)"
    assert resource.arn == "arn:aws:lambda:us-east-1:1:event-source-mapping:u-1"


class Switch(Kind):
    noun = "switch"
    settings = {"on": ("on", recorded_flag)}
    stopped = {"on": False}

    def __init__(self, store, order):
        super().__init__(clients=None)
        self.store, self.order = store, order

    def read(self, resource):
        return Current({"on": self.store[resource.name]}, {})

    def write(self, resource, current, values, outcome=None):
        self.order.append(resource.name)
        self.store[resource.name] = values["on"]

    def tag(self, resource, tags):
        pass

    def untag(self, resource, keys):
        pass


def test_steps_run_in_order_as_one_result():
    store, order = {"a": True, "b": True, "c": False}, []
    result = run_steps([(Switch(store, order), [Resource("a", "a")], {}),
                        (Switch(store, order), [], {}),
                        (Switch(store, order), [Resource("b", "b"), Resource("c", "c")], {})], "stopped", False)
    assert order == ["a", "b"] and store == {"a": False, "b": False, "c": False}
    assert result["changed"] and result["counts"] == {"stop": 2, "already_stopped": 1}
    assert [row["resource"] for row in result["resources"]] == ["a", "b", "c"] and len(result["lines"]) == 3
    assert result["failed_resources"] == []
