# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stop, resume and set AWS resources, recording the value each one had before on the resource itself.

The record is a set of tags, `runbook:previous-<setting>` (`none` when the setting was not set) and
`runbook:stopped-at`, written *before* the change. Resume reads them, restores, then removes them,
so a resume from any machine (or from Airflow) restores the exact prior state, and a crash between
the two steps leaves a record that still tells the truth.

Scaling keeps a record of its own (`runbook:scale-previous-<setting>`, `runbook:scaled-at`) holding only the
settings it changed, so `state: undone` puts back exactly those.

The decisions are pure functions (`plan_stop`, `plan_resume`, `plan_set`, `plan_undo`) over what a resource holds
now; `Kind` subclasses (Lambda, API Gateway stages, ECS services) read and write one resource each;
`apply` runs the plans over many resources on a bounded thread pool and reports every one.

A plan made in check mode carries, per resource, what it read (`read`: values, runbook:* tags, the raw members a
write needs, and when); `from_plan` turns those rows back into resources and their state, so the apply that follows
in the same run neither finds the resources again nor reads them a second time: one read, one tag, one write per
resource. A read older than `PLAN_FRESH_SECONDS` is compared with a new one before the write, and the resource is
refused when it changed in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ansible_collections.runbook.recovery.plugins.module_utils.aws import DEFAULT_WORKERS, describe_error, for_each
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now
from ansible_collections.runbook.recovery.plugins.module_utils.journal import crash_after
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome

NOT_SET = "none"
# How old a plan's read of a resource may be for the apply to act on it without reading it again: the plan and the
# apply of one playbook run are seconds apart; a plan kept from an earlier run is read again.
PLAN_FRESH_SECONDS = 120


@dataclass(frozen=True)
class Record:
    """A kind of record kept in tags: what a shutdown stopped, or what a scaling changed."""

    prefix: str
    stamp: str
    what: str
    complete: bool  # every setting of the resource type is recorded (a shutdown), or only those changed (scaling)


SHUTDOWN = Record("runbook:previous-", "runbook:stopped-at", "shutdown", complete=True)
SCALE = Record("runbook:scale-previous-", "runbook:scaled-at", "scaling", complete=False)
TAG_PREFIX, STOPPED_AT = SHUTDOWN.prefix, SHUTDOWN.stamp


@dataclass
class Resource:
    """One thing to act on: `name` is what a person reads, `arn` what tags are attached to."""

    name: str
    arn: str
    ref: dict = field(default_factory=dict)


@dataclass
class Current:
    values: dict
    tags: dict
    raw: dict = field(default_factory=dict)


@dataclass
class Plan:
    action: str  # stop, already_stopped, resume, not_stopped, set, unchanged, undo, not_scaled, refused
    write: dict | None = None
    add_tags: dict = field(default_factory=dict)
    remove_tags: list = field(default_factory=list)
    after: dict | None = None
    note: str = ""

    @property
    def changes(self) -> bool:
        return bool(self.write is not None or self.add_tags or self.remove_tags)


class Kind:
    """What differs between resource types. `settings` maps each setting to (tag suffix, type)."""

    noun = "resource"
    settings: dict[str, tuple[str, type]] = {}
    stopped: dict = {}
    raw_kept: tuple[str, ...] = ()  # the members of Current.raw that `write` uses, kept in a plan's rows

    def __init__(self, clients):
        self.clients = clients

    # -- per resource, overridden ----------------------------------------------------------------
    def read(self, resource: Resource) -> Current:
        raise NotImplementedError

    def write(self, resource: Resource, current: Current, values: dict, outcome: Outcome | None = None) -> None:
        """Make the change. A write of several AWS calls, or one that waits after AWS accepted it, says each accepted
        call to `outcome` (`outcome.wrote(...)`) as it goes, so a failure part way names what was done; a write
        that says nothing is recorded as one change once it returns."""
        raise NotImplementedError

    def tag(self, resource: Resource, tags: dict) -> None:
        raise NotImplementedError

    def untag(self, resource: Resource, keys: list) -> None:
        raise NotImplementedError

    def related(self, changing: dict, current: Current) -> dict:
        """Settings a change to `changing` loses besides its own, which a scaling must record too."""
        return {}

    def check(self, current: Current, changing: dict) -> None:
        """Refuse (RunbookError) a change the service would refuse, before anything is written."""

    def restore_values(self, recorded: dict) -> tuple[dict, str]:
        """The values a resume writes for a record, and a note when they cannot be the record itself."""
        return recorded, ""

    # -- the record ------------------------------------------------------------------------------
    def suffix(self, setting: str) -> str:
        return self.settings[setting][0]

    def setting(self, suffix: str) -> tuple[str, type] | None:
        """The setting a tag suffix names, and its type; None for a suffix this type does not know."""
        for setting, (known, kind) in self.settings.items():
            if known == suffix:
                return setting, kind
        return None

    def encode(self, values: dict, record: Record = SHUTDOWN) -> dict[str, str]:
        return {record.prefix + self.suffix(s): NOT_SET if v is None else format_value(v) for s, v in values.items()}

    def record_keys(self, tags: dict, record: Record = SHUTDOWN) -> list[str]:
        return [key for key in tags if key.startswith(record.prefix) or key == record.stamp]

    def recorded(self, tags: dict, record: Record = SHUTDOWN) -> dict | None:
        """The values a record holds, None when there is none; an unreadable or partial record is an error
        (guessing a value to restore is worse than stopping to ask)."""
        values = {}
        for key, text in tags.items():
            if not key.startswith(record.prefix):
                continue
            known = self.setting(key[len(record.prefix):])
            if known is None:
                raise RunbookError(f"the {record.what} record {key} on this {self.noun} names no setting this tool "
                                   "knows; set the value by hand, then remove the runbook:* tags.")
            setting, kind = known
            try:
                values[setting] = None if text == NOT_SET else kind(text)
            except ValueError:
                raise RunbookError(f"the {record.what} record {key}={text!r} on this {self.noun} is not a value or "
                                   f"{NOT_SET!r}; set the value by hand, then remove the runbook:* tags.") from None
        if not values:
            return None
        if record.complete and set(values) != set(self.settings):
            missing = ", ".join(sorted(record.prefix + self.suffix(s) for s in set(self.settings) - set(values)))
            raise RunbookError(f"the {record.what} record on this {self.noun} is incomplete (missing {missing}); "
                               "set the value by hand, then remove the runbook:* tags.")
        return values


def format_value(value) -> str:
    return value if isinstance(value, str) else str(value) if isinstance(value, int) else repr(float(value))


def snapshot(kind: Kind, current: Current) -> dict:
    """What a plan's row keeps of its read, for `from_plan`: the values, the runbook:* tags (the records) and the
    raw members the kind's write uses."""
    return {"values": current.values, "tags": {k: v for k, v in current.tags.items() if k.startswith("runbook:")},
            "raw": {key: current.raw[key] for key in kind.raw_kept if key in current.raw}, "at": time.time()}


@dataclass
class Planned:
    """A resource's state as its plan read it; `fresh` when that read is recent enough to act on unread."""

    current: Current
    at: float
    fresh: bool


def from_plan(noun: str, planned: list[dict], now: float | None = None) -> tuple[list[Resource], dict[str, Planned]]:
    """The resources of `noun` in the rows of a check-mode run (a module's `resources`), and the state each was read
    in, by ARN. A read under PLAN_FRESH_SECONDS old is acted on as it is; an older one is compared with a new read
    before anything is written (apply), as is one marked `sealed` (from a plan file); a row without a read (its read
    failed) is read as if there were no plan."""
    now = time.time() if now is None else now
    resources, known = [], {}
    for row in planned:
        if not isinstance(row, dict) or not all(isinstance(row.get(key), str) for key in ("kind", "resource", "arn")):
            raise RunbookError("planned holds a row without kind, resource and arn: pass the resources of this "
                               "module's own check-mode run (its registered result's resources). Nothing was changed.")
        if row["kind"] != noun:
            continue
        resource = Resource(row["resource"], row["arn"], dict(row.get("ref") or {}))
        resources.append(resource)
        read = row.get("read")
        if isinstance(read, dict):
            at = float(read.get("at") or 0)
            # A sealed plan's read (a plan file, reviewed and approved earlier) is always read again and compared.
            fresh = 0 <= now - at <= PLAN_FRESH_SECONDS and not read.get("sealed")
            known[resource.arn] = Planned(Current(dict(read.get("values") or {}), dict(read.get("tags") or {}),
                                                  dict(read.get("raw") or {})), at, fresh)
    return resources, known


def from_plan_kinds(planned: list[dict], *nouns: str | None) -> tuple[list[list[Resource]], dict[str, Planned]]:
    """`from_plan` for each kind a module acts on (None: a kind it skips this run, no resources), in that order,
    and the states of all of them in one mapping."""
    lists, known = [], {}
    for noun in nouns:
        resources, found = from_plan(noun, planned) if noun else ([], {})
        lists.append(resources)
        known.update(found)
    return lists, known


def changed_since(planned: Planned, current: Current) -> str | None:
    """What differs between a plan's read and a new one (the values, or the runbook:* records); None when nothing."""
    records = {k: v for k, v in current.tags.items() if k.startswith("runbook:")}
    if planned.current.values == current.values and planned.current.tags == records:
        return None
    seen = time.strftime("%H:%M:%S UTC", time.gmtime(planned.at))
    if planned.current.values != current.values:
        return (f"changed since the plan read it at {seen} ({describe(planned.current.values)}, now "
                f"{describe(current.values)})")
    return f"its runbook:* record changed since the plan read it at {seen}"


# -- decisions (pure) -----------------------------------------------------------------------------
def plan_stop(kind: Kind, current: Current, now: str) -> Plan:
    recorded = kind.recorded(current.tags)
    at_stop = same(current.values, kind.stopped)
    if recorded is None:
        if at_stop:
            return Plan("already_stopped", after=current.values,
                        note="already stopped before this shutdown (not by runbook.recovery); nothing recorded, "
                             "so a resume leaves it as it is")
        return Plan("stop", write=dict(kind.stopped), add_tags={**kind.encode(current.values), STOPPED_AT: now},
                    after=dict(kind.stopped), note=f"previous value recorded: {describe(current.values)}")
    since = current.tags.get(STOPPED_AT, "an earlier run")
    if at_stop:
        return Plan("already_stopped", after=current.values,
                    note=f"stopped by runbook.recovery since {since}; the recorded value {describe(recorded)} is kept")
    return Plan("stop", write=dict(kind.stopped), after=dict(kind.stopped),
                note=f"stopped again (changed since {since}); the value recorded by the first shutdown, "
                     f"{describe(recorded)}, is kept")


def plan_resume(kind: Kind, current: Current) -> Plan:
    recorded = kind.recorded(current.tags)
    record_tags = kind.record_keys(current.tags)
    if recorded is None:
        return Plan("not_stopped", after=current.values, note="carries no shutdown record; left as it is")
    if not same(current.values, kind.stopped):
        return Plan("resume", remove_tags=record_tags, after=current.values,
                    note=f"was changed by someone else since the shutdown (now {describe(current.values)}, recorded "
                         f"{describe(recorded)}); left as it is, record removed")
    target, note = kind.restore_values(recorded)
    return Plan("resume", write=target, remove_tags=record_tags, after=target,
                note=note or f"restored to {describe(recorded)}")


def plan_set(kind: Kind, current: Current, wanted: dict, now: str) -> Plan:
    """Scale: write only the settings named (others are never sent), recording the values they replace so
    `plan_undo` can put them back; a second scaling keeps the first record, so undo returns to before both."""
    if kind.record_keys(current.tags, SHUTDOWN):
        return Plan("refused", after=current.values,
                    note=f"stopped by an emergency shutdown since {current.tags.get(STOPPED_AT, '?')}: resume it "
                         "first (emergency-resume.yml), then scale")
    named = {key: value for key, value in wanted.items() if value is not None}
    changing = {key: value for key, value in named.items() if not same({key: current.values.get(key)}, {key: value})}
    if not changing:
        return Plan("unchanged", after=current.values)
    kind.check(current, changing)
    prior = kind.recorded(current.tags, SCALE) or {}
    replaced = {**kind.related(changing, current), **{key: current.values.get(key) for key in changing}}
    record = kind.encode({key: value for key, value in replaced.items() if key not in prior}, SCALE)
    if record and not prior:
        record[SCALE.stamp] = now
    target = {**current.values, **changing}
    return Plan("set", write=changing, add_tags=record, after=target,
                note=f"previous {describe({k: current.values.get(k) for k in changing})} recorded for undo"
                if record else "the values recorded by the first scaling are kept for undo")


def plan_undo(kind: Kind, current: Current) -> Plan:
    if kind.record_keys(current.tags, SHUTDOWN):
        return Plan("refused", after=current.values,
                    note="stopped by an emergency shutdown: resume it first (emergency-resume.yml), then undo")
    prior = kind.recorded(current.tags, SCALE)
    if prior is None:
        return Plan("not_scaled", after=current.values, note="carries no scaling record; left as it is")
    target, note = kind.restore_values(prior)
    kind.check(current, {key: value for key, value in target.items() if not same({key: current.values.get(key)},
                                                                                 {key: value})})
    return Plan("undo", write=target, remove_tags=kind.record_keys(current.tags, SCALE),
                after={**current.values, **target}, note=note or f"restored to {describe(prior)}")


def same(left: dict, right: dict) -> bool:
    return all(numeric(left.get(k)) == numeric(v) for k, v in right.items())


def numeric(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def describe(values: dict) -> str:
    return ", ".join(f"{k}={'not set' if v is None else v}" for k, v in values.items())


# -- execution ------------------------------------------------------------------------------------
def execute(kind: Kind, resource: Resource, current: Current, plan: Plan, outcome: Outcome) -> None:
    """Record first, then change, then forget: a failure at any point leaves a record that is true, and `outcome`
    says which of the three were done."""
    record = None
    if plan.add_tags:
        kind.tag(resource, plan.add_tags)
        record = outcome.wrote(f"record {describe_tags(plan.add_tags)} tagged on {resource.name}")
    if plan.write is not None:
        said = len(outcome.steps)
        try:
            kind.write(resource, current, plan.write, outcome=outcome)
        except RunbookError as exc:
            if record is not None and exc.details.get("record_removed"):
                outcome.undid(record, "removed again: the service refused the change")
            raise
        if len(outcome.steps) == said:
            outcome.wrote(f"{describe(plan.write)} set on {resource.name}")
    if plan.remove_tags:
        kind.untag(resource, plan.remove_tags)
        outcome.wrote(f"record {', '.join(plan.remove_tags)} removed from {resource.name}")


def describe_tags(tags: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in tags.items())


def apply(kind: Kind, resources: list[Resource], decide: Callable[[Current], Plan], check_mode: bool,
          workers: int = DEFAULT_WORKERS, known: dict[str, Planned] | None = None) -> list[dict]:
    """Read, decide and (unless check_mode) act on every resource concurrently; one row per resource. A resource
    in `known` (from_plan) is not read when its plan's read is fresh: that read is the state acted on; when it is
    not, the resource is read and refused if anything changed since the plan (the plan a person approved is the
    only one acted on). In check mode each row keeps its read (`read`), for the apply."""
    known = known or {}

    def one(resource: Resource) -> dict:
        row = {"kind": kind.noun, "resource": resource.name, "arn": resource.arn, "ref": resource.ref}
        try:
            planned = known.get(resource.arn)
            current = planned.current if planned and planned.fresh else kind.read(resource)
            if planned and not planned.fresh:
                change = changed_since(planned, current)
                if change:
                    return {**row, "before": current.values, "action": "failed", "changed": False,
                            "error": f"{change}: nothing was written to it; run the plan again"}
            row["before"] = current.values
            if check_mode:
                row["read"] = snapshot(kind, current)
            plan = decide(current)
        except RunbookError as exc:
            return {**row, "action": "failed", "changed": False, "error": str(exc)}
        row.update(action=plan.action, after=plan.after, changed=plan.changes, note=plan.note)
        if plan.action == "refused":
            return {**row, "action": "failed", "error": plan.note}
        if check_mode or not plan.changes:
            return row
        outcome = Outcome()
        try:
            execute(kind, resource, current, plan, outcome)
        except Exception as exc:
            facts = outcome.facts()
            return {**row, **facts, "action": "failed", "after": None if facts["changed"] else current.values,
                    "error": outcome.told(describe_error(exc, plan.action))}
        return row

    rows = []
    for resource, outcome in zip(resources, for_each(resources, one, workers), strict=True):
        if isinstance(outcome, Exception):
            outcome = {"kind": kind.noun, "resource": resource.name, "arn": resource.arn, "ref": resource.ref,
                       "action": "failed", "changed": False,
                       "error": describe_error(outcome, f"reading this {kind.noun}")}
        rows.append(outcome)
    return rows


def run(kind: Kind, resources: list[Resource], state: str, check_mode: bool, wanted: dict | None = None,
        decide: Callable[[Current], Plan] | None = None, known: dict[str, Planned] | None = None) -> dict:
    """The result every module of this family returns: one row per resource, counts, and a message. The pool is
    as wide as the kind's clients were built for. `decide` replaces the plan of `state` (a kind with plans of its
    own, such as a deployment rollback). `known`: the state of resources a plan read (from_plan; see apply)."""
    workers = getattr(kind.clients, "workers", DEFAULT_WORKERS)
    now = isoformat(utc_now())
    decide = decide or {
        "stopped": lambda current: plan_stop(kind, current, now),
        "resumed": lambda current: plan_resume(kind, current),
        "present": lambda current: plan_set(kind, current, wanted or {}, now),
        "undone": lambda current: plan_undo(kind, current),
    }[state]
    rows = apply(kind, resources, decide, check_mode, workers, known)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    failed = [row for row in rows if row["action"] == "failed"]
    message = (f"{'plan for ' if check_mode else ''}{len(rows)} {kind.noun}(s): "
               + ", ".join(f"{a} {n}" for a, n in sorted(counts.items())))
    if failed:
        message += ". Failed: " + "; ".join(f"{row['resource']}: {row['error']}" for row in failed[:5])
        if len(failed) > 5:
            message += f"; and {len(failed) - 5} more (see resources)"
    return {"changed": any(row.get("changed") for row in rows), "resources": rows, "counts": counts,
            "failed_resources": [row["resource"] for row in failed], "lines": [line(kind, row) for row in rows],
            "msg": message}


def line(kind: Kind, row: dict) -> str:
    """One resource as a person reads it in a plan: action, what, value before -> after, and why."""
    text = f"{row['action']:<15} {kind.noun} {row['resource']}"
    if "before" in row:
        text += f": {describe(row['before'])}"
        if row.get("after") is not None and not same(row["before"], row["after"]):
            text += f" -> {describe(row['after'])}"
    detail = row.get("error") or row.get("note")
    return f"{text} ({detail})" if detail else text


def diff(rows: list[dict]) -> dict:
    return {"before": {row["resource"]: row.get("before") for row in rows},
            "after": {row["resource"]: row.get("after") for row in rows}}


def finish(module, result: dict) -> None:
    """Exit with every resource reported; fail the task when any resource failed (the others were done)."""
    if module._diff:
        result["diff"] = diff(result["resources"])
    if result["failed_resources"]:
        module.fail_json(**result)
    crash_after(module, bool(result.get("changed")))
    module.exit_json(**result)
