# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A sealed plan: what a destructive playbook's check mode read and resolved, written as one JSON document with the
SHA-256 of its canonical form (`--check -e plan_out=FILE`), and read back by the apply (`-e plan=FILE -e confirm=true`),
which then acts on exactly what the plan lists, as the plan read it.

Reading refuses, before anything changes: a file that is not a plan, a digest that does not match (an edited file),
a plan for another procedure or other inputs, and a plan older than its age limit. Comparing (a procedure whose apply
plans again and acts only when nothing moved) also refuses a plan whose resources read differently now: changed,
appeared or gone. Plain Python, no Ansible."""

from __future__ import annotations

import hashlib
import json
import os
import time

from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    parse_duration,
    write_json_atomic,
)

FORMAT = 1
ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["written", "read", "compared"], required=True),
    path=dict(type="path", required=True),
    procedure=dict(type="str", required=True),
    inputs=dict(type="dict", default={}),
    hosts=dict(type="list", elements="str", default=[]),
    resources=dict(type="dict", default={}),
    max_age=dict(type="str", default="1h"),
    ignore=dict(type="list", elements="str", default=[]),
    partial=dict(type="bool", default=False),
)

# What changes between two reads of a resource nobody touched: when it was read, how old something is now, and the
# sentences written from those. A compared plan ignores these keys at any depth.
VOLATILE = frozenset({"at", "read_at", "age", "age_seconds", "lines", "msg", "sealed"})


def canonical(document: dict) -> bytes:
    body = {key: value for key, value in document.items() if key != "digest"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def digest(document: dict) -> str:
    return "sha256:" + hashlib.sha256(canonical(document)).hexdigest()


def seal(procedure: str, inputs: dict, hosts: list[str], resources: dict, now: float | None = None) -> dict:
    """The plan document: what was asked (inputs), where (hosts), every resource as read (before) and as it would be
    written (after), when, and its digest."""
    made = time.time() if now is None else now
    document = {"format": FORMAT, "procedure": procedure, "inputs": inputs, "hosts": sorted(hosts),
                "made_at": made, "made_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(made)),
                "resources": resources}
    # Through JSON once: the digest is of exactly what a reader parses back.
    document = json.loads(json.dumps(document, default=str))
    document["digest"] = digest(document)
    return document


def write(path: str, document: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    write_json_atomic(path, document)
    os.chmod(path, 0o600)


def to_act_on(resources):
    """The plan's resources as the apply passes them to its modules: every read marked `sealed`, so each resource is
    read again and compared with it before it is written, however recent the plan (previous_values.from_plan)."""
    if isinstance(resources, dict):
        marked = {key: to_act_on(value) for key, value in resources.items()}
        if isinstance(resources.get("read"), dict):
            marked["read"] = {**resources["read"], "sealed": True}
        return marked
    if isinstance(resources, list):
        return [to_act_on(value) for value in resources]
    return resources


def load(path: str, procedure: str, max_age: float, inputs: dict | None = None, now: float | None = None) -> dict:
    """The plan at `path`, checked: or a RunbookError that says what is wrong and what to do."""
    again = (f"Make a new plan (ansible-playbook playbooks/{procedure}.yml --check -e plan_out=FILE ...), review it, "
             "and apply that one. Nothing was changed.")
    try:
        with open(path) as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise RunbookError(f"plan {path} does not exist. {again}") from None
    except (OSError, ValueError) as exc:
        raise RunbookError(f"plan {path} cannot be read as a plan ({exc}). {again}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or "digest" not in document:
        raise RunbookError(f"{path} is not a plan of runbook.recovery (format {FORMAT}). {again}")
    if document["digest"] != digest(document):
        raise RunbookError(f"plan {path} was changed after it was made: its digest {document['digest']} does not "
                           f"match its content ({digest(document)}). {again}")
    if document.get("procedure") != procedure:
        raise RunbookError(f"plan {path} is a plan of {document.get('procedure')}, not of {procedure}. {again}")
    age = (time.time() if now is None else now) - float(document.get("made_at") or 0)
    if age > max_age or age < -60:
        raise RunbookError(f"plan {path} was made {age / 60:.0f} min ago ({document.get('made_at_utc')}), longer "
                           f"ago than plan_max_age ({max_age / 60:.0f} min): what it read may no longer be true. "
                           f"{again}")
    for key, value in (inputs or {}).items():
        planned = document.get("inputs", {}).get(key)
        if value not in (None, "") and planned != value:
            raise RunbookError(f"plan {path} was made for {key}={planned!r}, and this run asks for {key}={value!r}: "
                               f"drop -e {key} (the plan says what to act on) or make a new plan. Nothing was "
                               "changed.")
    return document


def _without(value, ignore: frozenset):
    if isinstance(value, dict):
        return {key: _without(item, ignore) for key, item in value.items() if key not in ignore}
    if isinstance(value, list):
        return [_without(item, ignore) for item in value]
    return value


def _brief(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def differences(planned, current, where: str = "") -> list[str]:
    """Where `current` differs from `planned` (both already stripped of volatile keys), one phrase per place."""
    if isinstance(planned, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(planned) | set(current), key=str):
            here = f"{where}.{key}" if where else str(key)
            if key not in current:
                found.append(f"{here} is gone (the plan read {_brief(planned[key])})")
            elif key not in planned:
                found.append(f"{here} is new ({_brief(current[key])}), not in the plan")
            else:
                found += differences(planned[key], current[key], here)
        return found
    if isinstance(planned, list) and isinstance(current, list) and len(planned) == len(current):
        found = []
        for index, (old, new) in enumerate(zip(planned, current, strict=True)):
            found += differences(old, new, f"{where}[{index}]")
        return found
    if planned != current:
        return [f"{where or 'the plan'}: the plan read {_brief(planned)}, now {_brief(current)}"]
    return []


def compare(document: dict, current: dict, ignore=(), partial: bool = False) -> None:
    """Refuse (RunbookError) when what this run read (`current`, by kind, as the plan's `resources`) is not what the
    sealed plan read and resolved: a resource changed, appeared or went away since the plan was made. `partial`: only
    the kinds (top-level keys) in `current` are compared (a play that goes host by host compares its host's)."""
    volatile = VOLATILE | frozenset(ignore)
    planned = dict(document.get("resources") or {})
    if partial:
        planned = {key: planned[key] for key in current if key in planned}
    found = differences(_without(planned, volatile), _without(current, volatile))
    if found:
        shown = "; ".join(found[:6]) + (f"; and {len(found) - 6} more" if len(found) > 6 else "")
        raise RunbookError(f"the sealed plan of {document.get('made_at_utc')} ({document.get('digest')}) no longer "
                           f"holds, so nothing was changed: {shown}. Make a new plan (--check -e plan_out=FILE), "
                           "review it, and apply that one.")


def handle(params: dict) -> dict:
    """One call of the sealed_plan module or action: the plan written or read, as the task returns it."""
    if params["state"] == "written":
        document = seal(params["procedure"], params["inputs"], params["hosts"], params["resources"])
        write(params["path"], document)
        return {"changed": False, "plan": document, "digest": document["digest"],
                "msg": f"plan of {params['procedure']} written to {params['path']} ({document['digest']}); apply it "
                       f"with -e plan={params['path']} -e confirm=true"}
    document = load(params["path"], params["procedure"], parse_duration(params["max_age"]), params["inputs"])
    if params["state"] == "compared":
        compare(document, params["resources"], params["ignore"], params["partial"])
        return {"changed": False, "plan": document, "digest": document["digest"],
                "msg": f"every resource of plan {params['path']} ({document['digest']}) is as the plan read it"}
    return {"changed": False, "plan": document, "digest": document["digest"],
            "resources": to_act_on(document["resources"]),
            "msg": f"plan {params['path']} ({document['digest']}) of {document['made_at_utc']} is intact"}
