"""WAF v2 IP sets (waf-block.yml, waf-allow.yml) against the AWS emulator over HTTP: only the addresses named are added
or removed, a concurrent change is kept (LockToken), the undo removes exactly what was added, a block for a while is
lifted when its time is up, and bad or dangerous input (too wide, covering an allowed address) is refused before any
change. Read back with the AWS CLI."""

from __future__ import annotations

import time

import pytest
from aws_world import AwsWorkspace, World, aws, clients

BLOCKED_BEFORE = ["192.0.2.10/32", "192.0.2.11/32", "198.18.0.0/24"]


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator))


@pytest.fixture
def ws(tmp_path, world):
    [waf] = clients(world.env, "wafv2")
    for name, addresses in ((f"{world.tag}-blocked", BLOCKED_BEFORE), (f"{world.tag}-allowed", ["203.0.113.0/24"])):
        waf.create_ip_set(Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=addresses)
    workspace = AwsWorkspace(tmp_path, world.env, {})
    workspace.extra = {"waf_block_ip_set": f"{world.tag}-blocked", "waf_allow_ip_set": f"{world.tag}-allowed"}
    workspace.write_inventory({})
    return workspace


def addresses(world: World, name: str, cli: bool = True) -> list[str]:
    listed = aws(world.env, "wafv2", "list-ip-sets", "--scope", "REGIONAL", cli=cli)["IPSets"]
    [found] = [s for s in listed if s["Name"] == name]
    got = aws(world.env, "wafv2", "get-ip-set", "--name", name, "--scope", "REGIONAL", "--id", found["Id"], cli=cli)
    return sorted(got["IPSet"]["Addresses"])


def add_elsewhere(world: World, name: str, address: str) -> None:
    """Another person's change, made as the console makes it: read with the token, write the whole list with it."""
    [waf] = clients(world.env, "wafv2")
    [found] = [s for s in waf.list_ip_sets(Scope="REGIONAL")["IPSets"] if s["Name"] == name]
    got = waf.get_ip_set(Name=name, Scope="REGIONAL", Id=found["Id"])
    waf.update_ip_set(Name=name, Scope="REGIONAL", Id=found["Id"], LockToken=got["LockToken"],
                      Addresses=got["IPSet"]["Addresses"] + [address])


def test_a_block_adds_only_the_addresses_named_and_the_undo_removes_exactly_those(ws, world):
    blocked = f"{world.tag}-blocked"
    plan = ws.play("waf-block.yml", check=True, addresses="198.51.100.0/24,192.0.2.1")
    assert plan.rc == 0 and plan.says(f"{blocked} (3 addresses): would add 198.51.100.0/24, 192.0.2.1/32"), \
        plan.output[-3000:]
    assert addresses(world, blocked, cli=False) == sorted(BLOCKED_BEFORE)
    refused = ws.play("waf-block.yml", addresses="198.51.100.0/24,192.0.2.1")
    assert refused.rc != 0 and refused.says("Not confirmed, nothing was changed"), refused.output[-3000:]

    run = ws.play("waf-block.yml", addresses="198.51.100.0/24,192.0.2.1", confirm=True)
    assert run.rc == 0 and run.changed, run.output[-3000:]
    assert addresses(world, blocked) == sorted(BLOCKED_BEFORE + ["198.51.100.0/24", "192.0.2.1/32"])
    again = ws.play("waf-block.yml", addresses="198.51.100.0/24,192.0.2.1", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]

    undo = ws.play("waf-block.yml", undo=True, confirm=True)
    assert undo.rc == 0 and undo.changed, undo.output[-3000:]
    assert addresses(world, blocked) == sorted(BLOCKED_BEFORE)  # the 3 there before are still there
    second = ws.play("waf-block.yml", undo=True, confirm=True)
    assert second.rc == 0 and second.changed == 0, second.output[-3000:]
    assert [(r["procedure"], r["result"], r["state"]) for r in ws.audit()] == [
        ("waf-block", "acted", "present"), ("waf-block", "acted", "undone")]


def test_an_address_added_meanwhile_is_kept_and_never_removed_by_the_undo(ws, world, aws_emulator, tmp_path):
    blocked = f"{world.tag}-blocked"
    run = aws_emulator.race(
        {"operation": "UpdateIPSet", "match": "198.51.100.0/24"},
        lambda: ws.play("waf-block.yml", addresses="198.51.100.0/24", confirm=True),
        lambda: add_elsewhere(world, blocked, "100.64.0.1/32"),
        tmp_path / "release")
    assert run.rc == 0, run.output[-3000:]
    assert addresses(world, blocked) == sorted(BLOCKED_BEFORE + ["198.51.100.0/24", "100.64.0.1/32"])
    undo = ws.play("waf-block.yml", undo=True, confirm=True)
    assert undo.rc == 0, undo.output[-3000:]
    assert addresses(world, blocked) == sorted(BLOCKED_BEFORE + ["100.64.0.1/32"])


def test_a_block_for_a_while_is_lifted_when_its_time_is_up_and_remove_takes_one_out(ws, world):
    blocked = f"{world.tag}-blocked"
    assert ws.play("waf-block.yml", addresses="198.51.100.7", block_for="2s", confirm=True).rc == 0
    assert ws.play("waf-block.yml", addresses="198.51.100.8", block_for="1h", confirm=True).rc == 0
    time.sleep(2.5)
    lift = ws.play("waf-block.yml", lift_expired=True, confirm=True)
    assert lift.rc == 0 and lift.changed, lift.output[-3000:]
    assert addresses(world, blocked) == sorted(BLOCKED_BEFORE + ["198.51.100.8/32"])
    # remove: exactly the address named, whoever added it (here one of those there before)
    out = ws.play("waf-block.yml", remove=True, addresses="192.0.2.10", confirm=True)
    assert out.rc == 0, out.output[-3000:]
    assert addresses(world, blocked) == sorted(["192.0.2.11/32", "198.18.0.0/24", "198.51.100.8/32"])
    assert ws.play("waf-block.yml", undo=True, confirm=True).rc == 0
    assert addresses(world, blocked) == ["192.0.2.11/32", "198.18.0.0/24"]


def test_the_allow_list_gets_its_addresses_and_back(ws, world):
    allowed = f"{world.tag}-allowed"
    run = ws.play("waf-allow.yml", addresses="198.51.100.44", confirm=True)
    assert run.rc == 0, run.output[-3000:]
    assert addresses(world, allowed) == ["198.51.100.44/32", "203.0.113.0/24"]
    # a block can no longer cover it
    covered = ws.play("waf-block.yml", addresses="198.51.100.0/24", confirm=True)
    assert covered.rc != 0 and covered.says(f"198.51.100.0/24 covers 198.51.100.44/32, which {allowed} allows"), \
        covered.output[-3000:]
    assert ws.play("waf-allow.yml", undo=True, confirm=True).rc == 0
    assert addresses(world, allowed) == ["203.0.113.0/24"]


@pytest.mark.parametrize(("extra", "says"), [
    ({"addresses": "198.51.100.300"}, "'198.51.100.300' is not an address or CIDR WAF accepts"),
    ({"addresses": "198.51.100.5/24"}, "has host bits set (the network is 198.51.100.0/24)"),
    ({"addresses": "10.0.0.0/8"}, "10.0.0.0/8 is wider than /16"),
    ({"addresses": "203.0.113.128/25"}, "203.0.113.128/25 covers 203.0.113.0/24"),
    ({"addresses": "2001:db8::1"}, "holds IPV4 addresses only"),
    ({"addresses": "192.0.2.1", "ip_set": "no-such-set"}, "WAF IP set 'no-such-set' (REGIONAL) does not exist"),
    ({}, "name the addresses to add"),
])
def test_bad_input_is_refused_before_any_change(ws, world, extra, says):
    before = addresses(world, f"{world.tag}-blocked", cli=False)
    run = ws.play("waf-block.yml", confirm=True, **extra)
    assert run.rc != 0 and run.says(says), run.output[-3000:]
    assert addresses(world, f"{world.tag}-blocked", cli=False) == before
    assert [r["result"] for r in ws.audit()] == []


def web_acl(world: World) -> str:
    """Runbook 001's web ACL: a rate limit, AWS's common rule set, and the block list."""
    [waf] = clients(world.env, "wafv2")
    visibility = {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "m"}
    name = f"{world.tag}-acl"
    waf.create_web_acl(Name=name, Scope="REGIONAL", DefaultAction={"Allow": {}}, VisibilityConfig=visibility, Rules=[
        {"Name": "RateLimitRule", "Priority": 1, "Action": {"Block": {}}, "VisibilityConfig": visibility,
         "Statement": {"RateBasedStatement": {"Limit": 2000, "AggregateKeyType": "IP"}}},
        {"Name": "AWSManagedRulesCommonRuleSet", "Priority": 2, "OverrideAction": {"None": {}},
         "VisibilityConfig": visibility,
         "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet"}}},
        {"Name": "GeoBlock", "Priority": 3, "Action": {"Block": {}}, "VisibilityConfig": visibility,
         "Statement": {"GeoMatchStatement": {"CountryCodes": ["KP"]}}}])
    return name


def rules(world: World, name: str, cli: bool = True) -> dict:
    listed = aws(world.env, "wafv2", "list-web-acls", "--scope", "REGIONAL", cli=cli)["WebACLs"]
    [found] = [a for a in listed if a["Name"] == name]
    acl = aws(world.env, "wafv2", "get-web-acl", "--name", name, "--scope", "REGIONAL", "--id", found["Id"],
              cli=cli)["WebACL"]
    return {r["Name"]: {k: v for k, v in r.items() if k != "Name"} for r in acl["Rules"]}


def test_a_rule_counts_and_back_every_other_rule_as_it_was(ws, world):
    acl = web_acl(world)
    before = rules(world, acl)
    plan = ws.play("waf-count-rule.yml", check=True, web_acl=acl, rule="RateLimitRule")
    assert plan.rc == 0 and plan.says(f"{acl} rule RateLimitRule: would Action Block -> Count"), plan.output[-3000:]
    run = ws.play("waf-count-rule.yml", web_acl=acl, rule="RateLimitRule,AWSManagedRulesCommonRuleSet", confirm=True)
    assert run.rc == 0 and run.changed, run.output[-3000:]
    now = rules(world, acl)
    assert now["RateLimitRule"] == {**before["RateLimitRule"], "Action": {"Count": {}}}
    assert now["AWSManagedRulesCommonRuleSet"] == {**before["AWSManagedRulesCommonRuleSet"],
                                                   "OverrideAction": {"Count": {}}}
    assert now["GeoBlock"] == before["GeoBlock"]
    again = ws.play("waf-count-rule.yml", web_acl=acl, rule="RateLimitRule", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]

    undo = ws.play("waf-count-rule.yml", web_acl=acl, rule="RateLimitRule,AWSManagedRulesCommonRuleSet", undo=True,
                   confirm=True)
    assert undo.rc == 0 and undo.changed, undo.output[-3000:]
    assert rules(world, acl) == before
    second = ws.play("waf-count-rule.yml", web_acl=acl, rule="RateLimitRule", undo=True, confirm=True)
    assert second.rc == 0 and second.changed == 0, second.output[-3000:]


def test_a_rule_someone_changed_since_is_kept_and_an_unknown_rule_is_refused(ws, world):
    acl = web_acl(world)
    unknown = ws.play("waf-count-rule.yml", web_acl=acl, rule="RateLimit", confirm=True)
    assert unknown.rc != 0 and unknown.says(
        f"web ACL {acl} has no rule 'RateLimit' (its rules: RateLimitRule, AWSManagedRulesCommonRuleSet, GeoBlock)"), \
        unknown.output[-3000:]
    assert ws.play("waf-count-rule.yml", web_acl=acl, rule="GeoBlock", confirm=True).rc == 0
    [waf] = clients(world.env, "wafv2")  # someone sets it to Allow by hand
    [found] = [a for a in waf.list_web_acls(Scope="REGIONAL")["WebACLs"] if a["Name"] == acl]
    got = waf.get_web_acl(Name=acl, Scope="REGIONAL", Id=found["Id"])
    changed = [dict(r, Action={"Allow": {}}) if r["Name"] == "GeoBlock" else r for r in got["WebACL"]["Rules"]]
    waf.update_web_acl(Name=acl, Scope="REGIONAL", Id=found["Id"], DefaultAction=got["WebACL"]["DefaultAction"],
                       Rules=changed, VisibilityConfig=got["WebACL"]["VisibilityConfig"], LockToken=got["LockToken"])
    refused = ws.play("waf-count-rule.yml", web_acl=acl, rule="GeoBlock", undo=True, confirm=True)
    assert refused.rc != 0 and refused.says("rule GeoBlock of"), refused.output[-3000:]
    assert rules(world, acl, cli=False)["GeoBlock"]["Action"] == {"Allow": {}}
    forced = ws.play("waf-count-rule.yml", web_acl=acl, rule="GeoBlock", undo=True, force=True, confirm=True)
    assert forced.rc == 0, forced.output[-3000:]
    assert rules(world, acl)["GeoBlock"]["Action"] == {"Block": {}}
