# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stop, resume and set AWS resources, recording the value each one had before on the resource itself.

The record is a set of tags, `runbook:previous-<setting>` (`none` when the setting was not set) and
`runbook:stopped-at`, written *before* the change. Resume reads them, restores, then removes them,
so a resume from any machine (or from Airflow) restores the exact prior state, and a crash between
the two steps leaves a record that still tells the truth.

The decisions are pure functions (`plan_stop`, `plan_resume`, `plan_set`) over what a resource holds
now; `Kind` subclasses (Lambda, API Gateway stages, ECS services) read and write one resource each;
`apply` runs the plans over many resources on a bounded thread pool and reports every one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ansible_collections.runbook.recovery.plugins.module_utils.aws import DEFAULT_WORKERS, describe_error, for_each
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, isoformat, utc_now

TAG_PREFIX = "runbook:previous-"
STOPPED_AT = "runbook:stopped-at"
NOT_SET = "none"


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
    action: str  # stop, already_stopped, resume, not_stopped, set, unchanged, refused
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

    def __init__(self, clients):
        self.clients = clients

    # -- per resource, overridden ----------------------------------------------------------------
    def read(self, resource: Resource) -> Current:
        raise NotImplementedError

    def write(self, resource: Resource, current: Current, values: dict) -> None:
        raise NotImplementedError

    def tag(self, resource: Resource, tags: dict) -> None:
        raise NotImplementedError

    def untag(self, resource: Resource, keys: list) -> None:
        raise NotImplementedError

    def restore_values(self, recorded: dict) -> tuple[dict, str]:
        """The values a resume writes for a record, and a note when they cannot be the record itself."""
        return recorded, ""

    # -- the record ------------------------------------------------------------------------------
    def tag_keys(self) -> dict[str, str]:
        return {setting: TAG_PREFIX + suffix for setting, (suffix, _type) in self.settings.items()}

    def encode(self, values: dict) -> dict[str, str]:
        keys = self.tag_keys()
        return {keys[s]: NOT_SET if values[s] is None else format_number(values[s]) for s in self.settings}

    def recorded(self, tags: dict) -> dict | None:
        """The values recorded by a shutdown, None when there is no record; an unreadable or partial
        record is an error (guessing a value to restore is worse than stopping to ask)."""
        keys = self.tag_keys()
        present = {s for s, key in keys.items() if key in tags}
        if not present:
            return None
        if present != set(keys):
            missing = ", ".join(sorted(keys[s] for s in set(keys) - present))
            raise RunbookError(f"the shutdown record on this {self.noun} is incomplete (missing {missing}); "
                               "set the value by hand, then remove the runbook:* tags.")
        values = {}
        for setting, key in keys.items():
            text, kind = tags[key], self.settings[setting][1]
            try:
                values[setting] = None if text == NOT_SET else kind(text)
            except ValueError:
                raise RunbookError(f"the shutdown record {key}={text!r} on this {self.noun} is not a number or "
                                   f"{NOT_SET!r}; set the value by hand, then remove the runbook:* tags.") from None
        return values


def format_number(value) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


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
    record_tags = [key for key in (*kind.tag_keys().values(), STOPPED_AT) if key in current.tags]
    if recorded is None:
        return Plan("not_stopped", after=current.values, note="carries no shutdown record; left as it is")
    if not same(current.values, kind.stopped):
        return Plan("resume", remove_tags=record_tags, after=current.values,
                    note=f"was changed by someone else since the shutdown (now {describe(current.values)}, recorded "
                         f"{describe(recorded)}); left as it is, record removed")
    target, note = kind.restore_values(recorded)
    return Plan("resume", write=target, remove_tags=record_tags, after=target,
                note=note or f"restored to {describe(recorded)}")


def plan_set(kind: Kind, current: Current, wanted: dict) -> Plan:
    if kind.recorded(current.tags) is not None:
        return Plan("refused", after=current.values,
                    note=f"stopped by an emergency shutdown since {current.tags.get(STOPPED_AT, '?')}: resume it "
                         "first (emergency-resume.yml), then scale")
    target = {**current.values, **wanted}
    if same(current.values, target):
        return Plan("unchanged", after=current.values)
    return Plan("set", write=target, after=target)


def same(left: dict, right: dict) -> bool:
    return all(numeric(left.get(k)) == numeric(v) for k, v in right.items())


def numeric(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def describe(values: dict) -> str:
    return ", ".join(f"{k}={'not set' if v is None else v}" for k, v in values.items())


# -- execution ------------------------------------------------------------------------------------
def execute(kind: Kind, resource: Resource, current: Current, plan: Plan) -> None:
    """Record first, then change, then forget: a failure at any point leaves a record that is true."""
    if plan.add_tags:
        kind.tag(resource, plan.add_tags)
    if plan.write is not None:
        kind.write(resource, current, plan.write)
    if plan.remove_tags:
        kind.untag(resource, plan.remove_tags)


def apply(kind: Kind, resources: list[Resource], decide: Callable[[Current], Plan], check_mode: bool,
          workers: int = DEFAULT_WORKERS) -> list[dict]:
    """Read, decide and (unless check_mode) act on every resource concurrently; one row per resource."""

    def one(resource: Resource) -> dict:
        row = {"resource": resource.name, "arn": resource.arn}
        try:
            current = kind.read(resource)
            row["before"] = current.values
            plan = decide(current)
        except RunbookError as exc:
            return {**row, "action": "failed", "changed": False, "error": str(exc)}
        row.update(action=plan.action, after=plan.after, changed=plan.changes, note=plan.note)
        if plan.action == "refused":
            return {**row, "action": "failed", "error": plan.note}
        if check_mode or not plan.changes:
            return row
        try:
            execute(kind, resource, current, plan)
        except Exception as exc:
            return {**row, "action": "failed", "after": None, "changed": True,
                    "error": describe_error(exc, plan.action)}
        return row

    rows = []
    for resource, outcome in zip(resources, for_each(resources, one, workers), strict=True):
        if isinstance(outcome, Exception):
            outcome = {"resource": resource.name, "arn": resource.arn, "action": "failed", "changed": False,
                       "error": describe_error(outcome, f"reading this {kind.noun}")}
        rows.append(outcome)
    return rows


def run(kind: Kind, resources: list[Resource], state: str, check_mode: bool, wanted: dict | None = None,
        workers: int = DEFAULT_WORKERS) -> dict:
    """The result every module of this family returns: one row per resource, counts, and a message."""
    now = isoformat(utc_now())
    if state == "stopped":
        rows = apply(kind, resources, lambda current: plan_stop(kind, current, now), check_mode, workers)
    elif state == "resumed":
        rows = apply(kind, resources, lambda current: plan_resume(kind, current), check_mode, workers)
    else:
        rows = apply(kind, resources, lambda current: plan_set(kind, current, wanted or {}), check_mode, workers)
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
    module.exit_json(**result)
