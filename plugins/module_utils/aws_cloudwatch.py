# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon CloudWatch: Logs retention (find the log groups under some prefixes and the ones named outright, create
the named ones that are missing, give every one the wanted retention; never delete a group)."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.aws import describe_error, error_code, for_each, paginate
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError

# Every value PutRetentionPolicy accepts (the AWS CLI reference, logs put-retention-policy).
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                  3288, 3653)


def check_retention(days: int) -> None:
    if days not in RETENTION_DAYS:
        lower = max((d for d in RETENTION_DAYS if d < days), default=None)
        higher = min((d for d in RETENTION_DAYS if d > days), default=None)
        nearest = " or ".join(str(d) for d in (lower, higher) if d is not None)
        raise RunbookError(f"retention_days={days} is not a value CloudWatch Logs accepts; the nearest are {nearest}. "
                           f"Accepted: {', '.join(map(str, RETENTION_DAYS))}. Nothing was changed.")


def find_groups(logs, prefixes: list[str], names: list[str]) -> tuple[dict[str, dict], list[str]]:
    """{name: group} for every group under a prefix or named, and the prefixes that matched nothing."""
    groups, unmatched = {}, []
    for prefix in prefixes:
        found = paginate(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=prefix)
        if not found:
            unmatched.append(prefix)
        groups.update((g["logGroupName"], g) for g in found)
    for name in names:
        if name not in groups:
            groups.update((g["logGroupName"], g) for g in paginate(
                logs, "describe_log_groups", "logGroups", logGroupNamePrefix=name) if g["logGroupName"] == name)
    return groups, unmatched


def plan(groups: dict[str, dict], names: list[str], days: int, only_unset: bool) -> list[dict]:
    """One row per group, sorted by name: before/after retention, whether it is created, whether it changes."""
    rows = []
    for name in sorted(set(groups) | set(names)):
        group = groups.get(name)
        before = group.get("retentionInDays") if group else None
        wants_change = before != days and not (only_unset and before is not None)
        rows.append({"name": name, "created": group is None, "before": before,
                     "after": days if wants_change else before, "changed": group is None or wants_change})
    return rows


def apply(logs, rows: list[dict], workers: int) -> list[dict]:
    def act(row):
        row["changes"] = []
        if row["created"]:
            try:
                logs.create_log_group(logGroupName=row["name"])
                row["changes"].append(f"log group {row['name']} created")
            except Exception as exc:  # created meanwhile by the application itself: still set its retention
                if error_code(exc) != "ResourceAlreadyExistsException":
                    raise
        if row["after"] is not None and row["after"] != row["before"]:
            logs.put_retention_policy(logGroupName=row["name"], retentionInDays=row["after"])
            row["changes"].append(f"retention of {row['name']} set to {row['after']} days")
        return row

    changing = [r for r in rows if r["changed"]]
    for row, outcome in zip(changing, for_each(changing, act, workers), strict=True):
        if isinstance(outcome, Exception):
            row.update(changed=bool(row.get("changes")),
                       error=describe_error(outcome, f"setting the retention of {row['name']}"))
    return rows
