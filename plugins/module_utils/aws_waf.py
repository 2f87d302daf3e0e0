# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Addresses added to and removed from a WAF v2 IP set, touching only the addresses named, with an exact undo.

`aws wafv2 update-ip-set --addresses ...` replaces the whole list: a block of two addresses typed as the runbook
shows it unblocks every address blocked before. Here the set is read with its LockToken, the named addresses merged
into (or taken out of) what it holds, and written with that token; when anyone changed the set in between, WAF refuses
the write (WAFOptimisticLockException) and it is read, merged and written once more.

What each run added is recorded, so an undo removes exactly those addresses, and never one that was there before or
that someone else added: an SSM parameter `/runbook/waf-ip-set/<scope>/<name>` holds, per address added, when, by
whom and until when (`block_for`), and the IP set is tagged `runbook:waf-record` (its tags cannot hold a list of
addresses). Entries are refused before any call when malformed, of the other IP version, wider than the configured
prefix (default /16, /48 for IPv6), or, for a block list, covering an address of the allow list.
"""

from __future__ import annotations

import datetime
import ipaddress
import json

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    delete_parameter,
    error_code,
    paginate,
    put_json_parameter,
    read_json_parameter,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    expires_at,
    isoformat,
    parse_iso,
    utc_now,
)

RECORD_PATH = "/runbook/waf-ip-set/"
TAG_RECORD = "runbook:waf-record"
SCOPES = ("REGIONAL", "CLOUDFRONT")
ADDRESS_LIMIT = 10000  # addresses in one IP set (WAF quota)


def record_name(scope: str, name: str) -> str:
    return f"{RECORD_PATH}{scope.lower()}/{name}"


def parse_address(text: str, max_prefix: dict) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One CIDR as WAF stores it (a bare address is its /32 or /128); refused when malformed, with host bits set, or
    wider than max_prefix {4: 16, 6: 48}."""
    given = str(text).strip()
    try:
        network = ipaddress.ip_network(given if "/" in given else f"{given}/{128 if ':' in given else 32}")
    except ValueError as exc:
        hint = ""
        if "host bits set" in str(exc):
            hint = f" (the network is {ipaddress.ip_network(given, strict=False)})"
        raise RunbookError(f"{given!r} is not an address or CIDR WAF accepts: {exc}{hint}. Nothing was changed.") \
            from None
    widest = max_prefix[network.version]
    if network.prefixlen < widest:
        raise RunbookError(f"{network} is wider than /{widest} ({network.num_addresses} addresses): a block that wide "
                           f"takes legitimate users with it. Give narrower ranges, or raise the limit "
                           f"(waf_max_prefix_v{network.version}) if you mean it. Nothing was changed.")
    return network


def parse_addresses(given: list, max_prefix: dict) -> list[str]:
    seen, out = set(), []
    for item in given:
        network = str(parse_address(item, max_prefix))
        if network not in seen:
            seen.add(network)
            out.append(network)
    return out


def covering(blocked: list[str], allowed: list[str]) -> list[tuple[str, str]]:
    """(block entry, allowed entry) pairs that share an address."""
    pairs = []
    for b in blocked:
        net_b = ipaddress.ip_network(b)
        for a in allowed:
            net_a = ipaddress.ip_network(a, strict=False)
            if net_a.version == net_b.version and net_b.overlaps(net_a):
                pairs.append((b, str(net_a)))
    return pairs


def expiry(block_for: str | None, now: datetime.datetime) -> str | None:
    return expires_at(block_for, now, "block_for")


def find_by_name(waf, operation: str, key: str, scope: str, name: str, what: str) -> str:
    """The id of the one WAF resource of `scope` named `name` (list_ip_sets / list_web_acls, NextMarker pages)."""
    found, marker = [], None
    while True:
        page = getattr(waf, operation)(Scope=scope, **({"NextMarker": marker} if marker else {}))
        found += [item for item in page.get(key, []) if item["Name"] == name]
        marker = page.get("NextMarker")
        if not marker or not page.get(key):
            break
    if not found:
        raise RunbookError(f"WAF {what} {name!r} ({scope}) does not exist: check the name and the scope (CLOUDFRONT "
                           "ones live in us-east-1). Nothing was changed.")
    if len(found) > 1:
        raise RunbookError(f"{len(found)} WAF {what}s are named {name!r} ({scope}): give its id "
                           f"({', '.join(item['Id'] for item in found)}). Nothing was changed.")
    return found[0]["Id"]


class IpSet:
    """One IP set: its addresses, the LockToken they were read with, and the record of what we added."""

    def __init__(self, clients, name: str, scope: str = "REGIONAL", set_id: str | None = None):
        if scope not in SCOPES:
            raise RunbookError(f"scope={scope!r}: use REGIONAL or CLOUDFRONT. Nothing was changed.")
        self.waf, self.ssm = clients("wafv2"), clients("ssm")
        self.name, self.scope, self.id = name, scope, set_id
        self.arn = self.lock_token = self.version = None
        self.addresses: list[str] = []

    def read(self) -> None:
        self.id = self.id or find_by_name(self.waf, "list_ip_sets", "IPSets", self.scope, self.name, "IP set")
        try:
            answer = self.waf.get_ip_set(Name=self.name, Scope=self.scope, Id=self.id)
        except Exception as exc:
            if error_code(exc) == "WAFNonexistentItemException":
                raise RunbookError(f"WAF IP set {self.name!r} ({self.scope}, id {self.id}) does not exist. Nothing "
                                   "was changed.") from None
            raise
        found = answer["IPSet"]
        self.arn, self.lock_token = found["ARN"], answer["LockToken"]
        self.version = found.get("IPAddressVersion", "IPV4")
        self.addresses = list(found.get("Addresses") or [])

    def check_version(self, addresses: list[str]) -> None:
        wanted = 6 if self.version == "IPV6" else 4
        other = [a for a in addresses if ipaddress.ip_network(a).version != wanted]
        if other:
            raise RunbookError(f"{', '.join(other)}: {self.name} holds {self.version} addresses only. Nothing was "
                               "changed.")

    def write(self, change) -> list[str]:
        """`change(addresses)` gives the wanted list from the current one; written with the LockToken of the read it
        was made from; read, made and written once more when the set changed in between."""
        for attempt in range(2):
            wanted = change(list(self.addresses))
            if sorted(wanted) == sorted(self.addresses):
                return wanted
            if len(wanted) > ADDRESS_LIMIT:
                raise RunbookError(f"{self.name} would hold {len(wanted)} addresses, over WAF's {ADDRESS_LIMIT}. "
                                   "Nothing was changed.")
            try:
                self.waf.update_ip_set(Name=self.name, Scope=self.scope, Id=self.id, Addresses=wanted,
                                       LockToken=self.lock_token)
                return wanted
            except Exception as exc:
                if error_code(exc) != "WAFOptimisticLockException" or attempt:
                    if error_code(exc) == "WAFOptimisticLockException":
                        raise RunbookError(f"{self.name} changed under both writes: someone else is editing it. "
                                           "Nothing of theirs was undone; run again.") from None
                    raise
            self.read()
        return []  # not reached

    # -- the record of what we added ----------------------------------------------------------------------------
    def record(self) -> dict:
        return (read_json_parameter(self.ssm, record_name(self.scope, self.name))
                or {"ip_set": self.name, "scope": self.scope, "added": {}})

    def save_record(self, record: dict) -> None:
        if not record["added"]:
            delete_parameter(self.ssm, record_name(self.scope, self.name))
            self.waf.untag_resource(ResourceARN=self.arn, TagKeys=[TAG_RECORD])
            return
        put_json_parameter(self.ssm, record_name(self.scope, self.name), record,
                           f"runbook.recovery: the addresses waf-block.yml/waf-allow.yml added to {self.name}")
        self.waf.tag_resource(ResourceARN=self.arn, Tags=[{"Key": TAG_RECORD,
                                                           "Value": record_name(self.scope, self.name)}])


def add(ip_set: IpSet, addresses: list[str], lifted_at: str | None, check_mode: bool, actor: str = "") -> dict:
    """The named addresses into the set; the others kept. Each one added is recorded (one already there is not ours
    and is not recorded: an undo leaves it)."""
    ip_set.read()
    ip_set.check_version(addresses)
    new = [a for a in addresses if a not in ip_set.addresses]
    row = {"ip_set": ip_set.name, "scope": ip_set.scope, "before": len(ip_set.addresses), "added": new,
           "already": [a for a in addresses if a in ip_set.addresses], "removed": [], "changed": bool(new),
           "expires_at": lifted_at if new else None}
    if not new or check_mode:
        return row
    record = ip_set.record()
    now = isoformat(utc_now())
    for address in new:
        record["added"][address] = {"at": now, "by": actor or None, "expires_at": lifted_at}
    ip_set.save_record(record)  # before the change: a crash after it leaves a record that an undo can act on
    ip_set.write(lambda current: current + [a for a in new if a not in current])
    return row


def remove(ip_set: IpSet, addresses: list[str] | None, check_mode: bool, only_recorded: bool,
           now: datetime.datetime | None = None) -> dict:
    """Take addresses out of the set. `only_recorded`: the ones we added (all, or those named, or those whose time
    is up when `now` is given); else exactly the ones named, whoever added them."""
    ip_set.read()
    record = ip_set.record()
    if only_recorded:
        wanted = [a for a, entry in sorted(record["added"].items())
                  if (addresses is None or a in addresses)
                  and (now is None or (entry.get("expires_at") and parse_iso(entry["expires_at"]) <= now))]
    else:
        ip_set.check_version(addresses)
        wanted = list(addresses)
    present = [a for a in wanted if a in ip_set.addresses]
    gone = [a for a in wanted if a in record["added"]]  # recorded, whether still there or not
    row = {"ip_set": ip_set.name, "scope": ip_set.scope, "before": len(ip_set.addresses), "added": [],
           "removed": present, "changed": bool(present or gone), "recorded": sorted(record["added"])}
    if check_mode or not row["changed"]:
        return row
    ip_set.write(lambda current: [a for a in current if a not in present])
    for address in gone:
        record["added"].pop(address, None)
    ip_set.save_record(record)
    return row


def due_ip_sets(clients) -> list[tuple[str, str]]:
    """(scope, name) of every record under /runbook/waf-ip-set/ holding an address whose time is up."""
    found = paginate(clients("ssm"), "get_parameters_by_path", "Parameters", Path=RECORD_PATH.rstrip("/"),
                     Recursive=True)
    now, due = utc_now(), []
    for parameter in found:
        try:
            document = json.loads(parameter["Value"])
        except ValueError:
            continue
        if any(e.get("expires_at") and parse_iso(e["expires_at"]) <= now for e in document.get("added", {}).values()):
            due.append((document.get("scope", "REGIONAL"), document["ip_set"]))
    return sorted(due)


# -- one rule of a web ACL counted instead of acting ----------------------------------------------------------
RULE_RECORD_PATH = "/runbook/waf-web-acl/"
COUNT = {"Count": {}}
GROUP_STATEMENTS = ("ManagedRuleGroupStatement", "RuleGroupReferenceStatement")


def rule_record_name(scope: str, acl: str, rule: str) -> str:
    return f"{RULE_RECORD_PATH}{scope.lower()}/{acl}/{rule}"


def action_member(rule: dict) -> str:
    """A rule group's rule is counted through OverrideAction, any other rule through Action."""
    return "OverrideAction" if any(k in rule.get("Statement", {}) for k in GROUP_STATEMENTS) else "Action"


def describe_action(action: dict | None) -> str:
    return next(iter(action), "none") if action else "none"


class WebAcl:
    def __init__(self, clients, name: str, scope: str = "REGIONAL", acl_id: str | None = None):
        if scope not in SCOPES:
            raise RunbookError(f"scope={scope!r}: use REGIONAL or CLOUDFRONT. Nothing was changed.")
        self.waf, self.ssm = clients("wafv2"), clients("ssm")
        self.name, self.scope, self.id = name, scope, acl_id
        self.acl: dict = {}
        self.lock_token = None

    def read(self) -> None:
        self.id = self.id or find_by_name(self.waf, "list_web_acls", "WebACLs", self.scope, self.name, "web ACL")
        answer = self.waf.get_web_acl(Name=self.name, Scope=self.scope, Id=self.id)
        self.acl, self.lock_token = answer["WebACL"], answer["LockToken"]

    def rule(self, name: str) -> dict:
        for rule in self.acl.get("Rules") or []:
            if rule["Name"] == name:
                return rule
        names = ", ".join(r["Name"] for r in self.acl.get("Rules") or []) or "none"
        raise RunbookError(f"web ACL {self.name} has no rule {name!r} (its rules: {names}). Nothing was changed.")

    def write(self, rule_name: str, member: str, action: dict) -> None:
        """Only that rule's action changes; every other member of the web ACL is sent back as read, with the
        LockToken of that read (WAF refuses it when the ACL changed in between: read and made again, once)."""
        for attempt in range(2):
            rules = [dict(r) for r in self.acl.get("Rules") or []]
            for rule in rules:
                if rule["Name"] == rule_name:
                    rule.pop("Action", None)
                    rule.pop("OverrideAction", None)
                    rule[member] = action
            accepted = self.waf.meta.service_model.operation_model("UpdateWebACL").input_shape.members
            update = {k: v for k, v in self.acl.items()  # an empty member is absent (AWS refuses an empty one)
                      if k in accepted and k not in ("Rules", "LockToken") and v not in (None, "", [], {})}
            update.update(Name=self.name, Scope=self.scope, Id=self.id, Rules=rules, LockToken=self.lock_token)
            try:
                self.waf.update_web_acl(**update)
                return
            except Exception as exc:
                if error_code(exc) != "WAFOptimisticLockException" or attempt:
                    raise
            self.read()

    def record(self, rule: str) -> dict | None:
        return read_json_parameter(self.ssm, rule_record_name(self.scope, self.name, rule))


def count_rule(acl: WebAcl, rule_name: str, check_mode: bool, actor: str = "") -> dict:
    acl.read()
    rule = acl.rule(rule_name)
    member = action_member(rule)
    now = rule.get(member)
    row = {"web_acl": acl.name, "rule": rule_name, "member": member, "before": describe_action(now),
           "after": "Count", "changed": now != COUNT}
    if not row["changed"] or check_mode:
        return row
    if acl.record(rule_name) is None:  # a second count keeps what the rule did before the first
        put_json_parameter(acl.ssm, rule_record_name(acl.scope, acl.name, rule_name),
                           {"member": member, "previous": now, "at": isoformat(utc_now()), "by": actor or None},
                           f"runbook.recovery: what rule {rule_name} of {acl.name} did before COUNT")
    acl.write(rule_name, member, COUNT)
    return row


def uncount_rule(acl: WebAcl, rule_name: str, check_mode: bool, force: bool = False) -> dict:
    acl.read()
    rule = acl.rule(rule_name)
    record = acl.record(rule_name)
    member = (record or {}).get("member") or action_member(rule)
    now = rule.get(member)
    previous = (record or {}).get("previous")
    row = {"web_acl": acl.name, "rule": rule_name, "member": member, "before": describe_action(now),
           "after": describe_action(previous) if record else describe_action(now), "changed": record is not None}
    if record is None:
        return row
    if now != COUNT and now != previous and not force:
        raise RunbookError(f"rule {rule_name} of {acl.name} now does {describe_action(now)}, not the Count this tool "
                           "set: someone changed it since, and it is kept. Nothing was changed. Run again with "
                           "-e force=true to put back what it did before anyway.", rules=[row])
    if check_mode:
        return row
    if now != previous:
        acl.write(rule_name, member, previous)
    delete_parameter(acl.ssm, rule_record_name(acl.scope, acl.name, rule_name))
    return row
