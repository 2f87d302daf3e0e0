"""One ingress rule of a security group (security-group-rule.yml) against the AWS emulator over HTTP: added exactly,
a second run changes nothing, the undo revokes exactly the rules it added (never one there before), the world is
refused on any port but 80 and 443 unless forced with a reason, and bad input is refused before any change. Read back
with the AWS CLI."""

from __future__ import annotations

import pytest
from aws_world import AwsWorkspace, World, aws, clients

PLAYBOOK = "security-group-rule.yml"


@pytest.fixture
def world(aws_emulator):
    aws_emulator.clear_faults()
    return World(dict(aws_emulator))


@pytest.fixture
def ws(tmp_path, world):
    return AwsWorkspace(tmp_path, world.env, {})


def make_group(world: World) -> str:
    [ec2] = clients(world.env, "ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName=f"{world.tag}-alb", Description="the load balancer", VpcId=vpc)
    ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.7/32"}]}])
    return group["GroupId"]


def ingress(world: World, group: str, cli: bool = True) -> list[tuple]:
    [found] = aws(world.env, "ec2", "describe-security-groups", "--group-ids", group, cli=cli)["SecurityGroups"]
    out = []
    for perm in found["IpPermissions"]:
        for entry in perm.get("IpRanges", []):
            out.append((perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"), entry["CidrIp"]))
        for entry in perm.get("Ipv6Ranges", []):
            out.append((perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"), entry["CidrIpv6"]))
    return sorted(out)


def runbook_tags(world: World, group: str) -> dict:
    [found] = aws(world.env, "ec2", "describe-security-groups", "--group-ids", group)["SecurityGroups"]
    return {t["Key"]: t["Value"] for t in found.get("Tags", []) if t["Key"].startswith("runbook:")}


def test_https_from_everyone_is_added_once_and_the_undo_revokes_exactly_it(ws, world):
    group = make_group(world)
    before = ingress(world, group)
    plan = ws.play(PLAYBOOK, check=True, group=group, port=443, cidr="0.0.0.0/0")
    assert plan.rc == 0 and plan.says("would allow tcp port 443 from 0.0.0.0/0"), plan.output[-3000:]
    assert ingress(world, group, cli=False) == before

    run = ws.play(PLAYBOOK, group=f"{world.tag}-alb", port=443, cidr="0.0.0.0/0,::/0", confirm=True)
    assert run.rc == 0 and run.changed, run.output[-3000:]
    assert ingress(world, group) == sorted(before + [("tcp", 443, 443, "0.0.0.0/0"), ("tcp", 443, 443, "::/0")])
    assert set(runbook_tags(world, group)) == {"runbook:sg-added:tcp/443-443/0.0.0.0/0",
                                               "runbook:sg-added:tcp/443-443/::/0"}
    again = ws.play(PLAYBOOK, group=group, port=443, cidr="0.0.0.0/0", confirm=True)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    # a rule there before is not ours: asking for it changes nothing and records nothing
    there = ws.play(PLAYBOOK, group=group, port=80, cidr="0.0.0.0/0", confirm=True)
    assert there.rc == 0 and there.changed == 0 and there.says("0.0.0.0/0 already allowed"), there.output[-3000:]

    undo = ws.play(PLAYBOOK, group=group, undo=True, confirm=True)
    assert undo.rc == 0 and undo.changed, undo.output[-3000:]
    assert ingress(world, group) == before and runbook_tags(world, group) == {}
    second = ws.play(PLAYBOOK, group=group, undo=True, confirm=True)
    assert second.rc == 0 and second.changed == 0, second.output[-3000:]
    assert [(r["procedure"], r["result"]) for r in ws.audit()] == [("security-group-rule", "acted")] * 2


def test_the_world_on_another_port_needs_force_and_a_reason_and_remove_takes_out_one_rule(ws, world):
    group = make_group(world)
    before = ingress(world, group)
    refused = ws.play(PLAYBOOK, group=group, port=22, cidr="0.0.0.0/0", confirm=True)
    assert refused.rc != 0 and refused.says("0.0.0.0/0 opens tcp port 22 to the whole internet"), \
        refused.output[-3000:]
    no_reason = ws.play(PLAYBOOK, group=group, port=22, cidr="0.0.0.0/0", force=True, confirm=True)
    assert no_reason.rc != 0 and no_reason.says("give the reason"), no_reason.output[-3000:]
    assert ingress(world, group, cli=False) == before
    forced = ws.play(PLAYBOOK, group=group, port=22, cidr="0.0.0.0/0", force=True,
                     force_reason="INC-9 vendor debugging for an hour", confirm=True)
    assert forced.rc == 0, forced.output[-3000:]
    assert runbook_tags(world, group)["runbook:sg-added:tcp/22-22/0.0.0.0/0"].endswith(
        "INC-9 vendor debugging for an hour")
    # remove: exactly the rule named, here one that was there before
    out = ws.play(PLAYBOOK, group=group, port=22, cidr="198.51.100.7/32", remove=True, confirm=True)
    assert out.rc == 0 and out.changed, out.output[-3000:]
    assert ingress(world, group) == sorted([("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 22, 22, "0.0.0.0/0")])
    assert ws.play(PLAYBOOK, group=group, undo=True, confirm=True).rc == 0
    assert ingress(world, group) == [("tcp", 80, 80, "0.0.0.0/0")]


@pytest.mark.parametrize(("extra", "says"), [
    ({"group": "sg-00000000000000000", "port": 443, "cidr": "10.0.0.0/8"},
     "security group 'sg-00000000000000000' does not exist"),
    ({"port": 443, "cidr": "10.0.0.300/8"}, "'10.0.0.300/8' is not a CIDR"),
    ({"port": 443, "cidr": "10.0.0.1/8"}, "has host bits set"),
    ({"port": 70000, "cidr": "10.0.0.0/8"}, "is not a port range"),
    ({"port": "http", "cidr": "10.0.0.0/8"}, "port='http': give a port"),
    ({"port": 443}, "name who may connect"),
    ({"cidr": "10.0.0.0/8"}, "name the port"),
    ({"port": 443, "cidr": "10.0.0.0/8", "protocol": "sctp"}, "protocol='sctp'"),
    ({"port": 3389, "cidr": "::/0"}, "::/0 opens tcp port 3389 to the whole internet"),
])
def test_bad_input_is_refused_before_any_change(ws, world, extra, says):
    group = make_group(world)
    before = ingress(world, group, cli=False)
    run = ws.play(PLAYBOOK, confirm=True, **{"group": group, **extra})
    assert run.rc != 0 and run.says(says), run.output[-3000:]
    assert ingress(world, group, cli=False) == before and runbook_tags(world, group) == {}
