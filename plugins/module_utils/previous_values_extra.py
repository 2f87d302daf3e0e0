# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What previous_values.py lacks for the emergency shutdown's kinds, kept here until it moves there.

- `run_steps`: several kinds of resource acted on by one module call, one kind after the other, as one result.
- `recorded_flag`: the type of a recorded True/False (a setting that is a switch).

An emergency shutdown of a Lambda function also disables its event source mappings, and one of an ECS service also
holds its Application Auto Scaling target at zero: each is a kind of its own (its own record, on its own resource),
run by `previous_values.run` in the order the procedure needs, and the rows of all of them are one result with the
shape `run` returns (so `previous_values.finish`, the roles and the audit read it unchanged).

`run_steps` belongs in previous_values.run (a list of (kind, resources) where it takes one), `recorded_flag` beside
previous_values.format_value, which writes a bool as True/False.
"""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.previous_values import Kind, Resource, run


def run_steps(steps: list[tuple[Kind, list[Resource], dict]], state: str, check_mode: bool) -> dict:
    """`run` for each (kind, resources, options) in order, options being run's keyword arguments (`wanted`,
    `decide`); a kind with no resources is skipped. One result: every row, the counts added up, one message."""
    results = [run(kind, resources, state, check_mode, **options) for kind, resources, options in steps
               if resources]
    if not results:
        return {"changed": False, "resources": [], "counts": {}, "failed_resources": [], "lines": [],
                "msg": "nothing selected"}
    counts: dict[str, int] = {}
    for result in results:
        for action, number in result["counts"].items():
            counts[action] = counts.get(action, 0) + number
    return {"changed": any(result["changed"] for result in results),
            "resources": [row for result in results for row in result["resources"]], "counts": counts,
            "failed_resources": [name for result in results for name in result["failed_resources"]],
            "lines": [line for result in results for line in result["lines"]],
            "msg": "; ".join(result["msg"] for result in results)}


def recorded_flag(text: str) -> bool:
    """A recorded True/False (format_value writes a bool so); anything else is not a value (ValueError), which
    Kind.recorded reports as an unreadable record."""
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"
