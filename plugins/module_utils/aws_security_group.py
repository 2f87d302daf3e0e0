# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ingress rule of a security group, added or removed exactly, recorded for an exact undo.

Runbook 001 opens a port with `aws ec2 authorize-security-group-ingress --protocol tcp --port 443 --cidr 0.0.0.0/0`.
Here the rule is added only when it is not there (a second run changes nothing; AWS's duplicate error is not a
failure), every rule added is recorded as a tag on the group, `runbook:sg-added:<protocol>/<from>-<to>/<cidr>` (the
value: when, and who), so an undo revokes exactly the rules this tool added and never one that was there before, and
the world (0.0.0.0/0, ::/0) is refused on any port but 80 and 443 unless forced with a reason, which is recorded.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.runbook.recovery.plugins.module_utils.aws import error_code
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now

TAG_PREFIX = "runbook:sg-added:"
PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "icmpv6", "all": "-1", "-1": "-1"}
WEB_PORTS = {80, 443}
WORLD = ("0.0.0.0/0", "::/0")


def rule_key(protocol: str, from_port: int, to_port: int, cidr: str) -> str:
    return f"{TAG_PREFIX}{protocol}/{from_port}-{to_port}/{cidr}"


def parse_rule_key(key: str) -> dict | None:
    if not key.startswith(TAG_PREFIX):
        return None
    protocol, ports, cidr = key[len(TAG_PREFIX):].split("/", 2)
    low, high = ports.split("-", 1) if not ports.startswith("-") else ("-1", "-1")
    return {"protocol": protocol, "from_port": int(low), "to_port": int(high), "cidr": cidr}


def check_rule(protocol: str, from_port: int | None, to_port: int | None, cidrs: list, force: bool,
               reason: str) -> tuple[str, int, int, list[str]]:
    """The rule as EC2 takes it, or a refusal before any call."""
    if protocol not in PROTOCOLS:
        raise RunbookError(f"protocol={protocol!r}: use tcp, udp, icmp, icmpv6 or all. Nothing was changed.")
    proto = PROTOCOLS[protocol]
    if proto == "-1":
        from_port, to_port = -1, -1
    elif from_port is None:
        raise RunbookError("name the port: -e port=443 (or -e port=8000-8080). Nothing was changed.")
    to_port = from_port if to_port is None else to_port
    if proto in ("tcp", "udp") and not (0 <= from_port <= to_port <= 65535):
        raise RunbookError(f"port {from_port}-{to_port} is not a port range (0-65535, low to high). Nothing was "
                           "changed.")
    if not cidrs:
        raise RunbookError("name who may connect: -e cidr=203.0.113.0/24. Nothing was changed.")
    out = []
    for given in cidrs:
        try:
            out.append(str(ipaddress.ip_network(str(given).strip())))
        except ValueError as exc:
            raise RunbookError(f"{given!r} is not a CIDR: {exc}. Nothing was changed.") from None
    world = [c for c in out if c in WORLD]
    web_only = 0 <= from_port == to_port and from_port in WEB_PORTS
    if world and not web_only:
        if not force:
            raise RunbookError(f"{', '.join(world)} opens {proto} {ports_text(from_port, to_port)} to the whole "
                               "internet: only 80 and 443 may be opened to everyone. Nothing was changed. Name the "
                               "addresses that need it, or, if you mean it, -e force=true with -e force_reason='...' "
                               "(recorded).")
        if len(reason.strip()) < 5:
            raise RunbookError("force=true opens a port to the whole internet: give the reason, "
                               "-e force_reason='INC-123 ...' (recorded with the rule). Nothing was changed.")
    return proto, from_port, to_port, out


def ports_text(from_port: int, to_port: int) -> str:
    if from_port < 0:
        return "all ports"
    return f"port {from_port}" if from_port == to_port else f"ports {from_port}-{to_port}"


def permission(proto: str, from_port: int, to_port: int, cidr: str, description: str = "") -> dict:
    entry = {"CidrIp" if ":" not in cidr else "CidrIpv6": cidr}
    if description:
        entry["Description"] = description
    perm = {"IpProtocol": proto, "IpRanges" if ":" not in cidr else "Ipv6Ranges": [entry]}
    if proto != "-1":
        perm.update(FromPort=from_port, ToPort=to_port)
    return perm


class SecurityGroup:
    def __init__(self, clients, group: str, vpc_id: str | None = None):
        self.ec2, self.given, self.vpc_id = clients("ec2"), group, vpc_id
        self.id = self.name = None
        self.rules: set = set()
        self.tags: dict = {}

    def read(self) -> None:
        filters = ([{"Name": "group-id", "Values": [self.given]}] if self.given.startswith("sg-")
                   else [{"Name": "group-name", "Values": [self.given]}])
        if self.vpc_id:
            filters.append({"Name": "vpc-id", "Values": [self.vpc_id]})
        found = self.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
        if not found:
            where = f" in {self.vpc_id}" if self.vpc_id else ""
            raise RunbookError(f"security group {self.given!r} does not exist{where}: check the id or name (and the "
                               "region). Nothing was changed.")
        if len(found) > 1:
            raise RunbookError(f"{len(found)} security groups are named {self.given!r} "
                               f"({', '.join(g['GroupId'] for g in found)}): give the id, or vpc_id. Nothing was "
                               "changed.")
        group = found[0]
        self.id, self.name = group["GroupId"], group.get("GroupName")
        self.tags = {t["Key"]: t["Value"] for t in group.get("Tags") or []}
        self.rules = set()
        for perm in group.get("IpPermissions") or []:
            proto = perm.get("IpProtocol")
            low, high = perm.get("FromPort", -1), perm.get("ToPort", -1)
            if proto == "-1":
                low, high = -1, -1
            for entry in perm.get("IpRanges") or []:
                self.rules.add((proto, low, high, entry["CidrIp"]))
            for entry in perm.get("Ipv6Ranges") or []:
                self.rules.add((proto, low, high, entry["CidrIpv6"]))

    def label(self) -> str:
        return f"{self.id} ({self.name})" if self.name else self.id


def add_rules(group: SecurityGroup, proto: str, from_port: int, to_port: int, cidrs: list[str], description: str,
              check_mode: bool, actor: str = "", reason: str = "") -> dict:
    group.read()
    new = [c for c in cidrs if (proto, from_port, to_port, c) not in group.rules]
    row = {"group": group.label(), "protocol": proto, "ports": ports_text(from_port, to_port), "added": new,
           "already": [c for c in cidrs if c not in new], "removed": [], "changed": bool(new)}
    if not new or check_mode:
        return row
    stamp = f"{isoformat(utc_now())} {actor}".strip()
    if reason:
        stamp = f"{stamp}: {reason}"[:256]
    # the record first: a crash after it leaves a tag an undo acts on (revoking a rule that is not there is a no-op)
    tags = [{"Key": rule_key(proto, from_port, to_port, c), "Value": stamp} for c in new]
    group.ec2.create_tags(Resources=[group.id], Tags=tags)
    for cidr in new:
        try:
            group.ec2.authorize_security_group_ingress(
                GroupId=group.id, IpPermissions=[permission(proto, from_port, to_port, cidr, description)])
        except Exception as exc:
            if error_code(exc) != "InvalidPermission.Duplicate":  # added meanwhile by someone: theirs, not ours
                raise
            group.ec2.delete_tags(Resources=[group.id], Tags=[{"Key": rule_key(proto, from_port, to_port, cidr)}])
    return row


def remove_rules(group: SecurityGroup, wanted: list[tuple] | None, check_mode: bool) -> dict:
    """`wanted` (proto, from, to, cidr) rules revoked exactly; None: the rules this tool added (its tags)."""
    group.read()
    recorded = {}
    for key in group.tags:
        parsed = parse_rule_key(key)
        if parsed:
            recorded[(parsed["protocol"], parsed["from_port"], parsed["to_port"], parsed["cidr"])] = key
    targets = sorted(recorded) if wanted is None else list(wanted)
    present = [r for r in targets if r in group.rules]
    keys = [recorded[r] for r in targets if r in recorded]
    row = {"group": group.label(), "added": [], "already": [],
           "removed": [f"{r[0] if r[0] != '-1' else 'all'} {ports_text(r[1], r[2])} from {r[3]}" for r in present],
           "changed": bool(present or keys), "recorded": len(recorded)}
    if check_mode or not row["changed"]:
        return row
    for proto, low, high, cidr in present:
        try:
            group.ec2.revoke_security_group_ingress(GroupId=group.id,
                                                    IpPermissions=[permission(proto, low, high, cidr)])
        except Exception as exc:
            if error_code(exc) != "InvalidPermission.NotFound":
                raise
    if keys:
        group.ec2.delete_tags(Resources=[group.id], Tags=[{"Key": k} for k in keys])
    return row
