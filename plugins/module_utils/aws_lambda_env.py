# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Lambda function's environment variables, set or removed by name, every other variable kept, with an exact
undo from any machine.

AWS has no call for one variable: UpdateFunctionConfiguration replaces the whole map (runbook 000's
`--environment Variables={LOG_LEVEL=DEBUG}` deletes every other variable). So the map is read with its RevisionId and
written back with it: when anyone changed the function in between, AWS refuses the write
(PreconditionFailedException) and it is read, merged and written again, keeping their change.

What a variable held before the first change is recorded before anything is written, so an undo restores exactly
those variables and nothing more. Variables can hold secrets, so their values are kept where secrets go: a
SecureString in SSM Parameter Store, `/runbook/lambda-env/<function>`, whose document names each variable with its
previous value (or none: it was not set) and a SHA-256 digest of the value the change set. The function carries tags
that say a change is in force (`runbook:env-record`, the parameter; `runbook:env-set-at`; `runbook:env-expires-at`
when it was set for a while). An undo puts a variable back only while it still holds what the change set: a variable
someone changed since is theirs, and is refused (named) unless forced. Values never appear in a result or message,
except the variables named in `show_values` (LOG_LEVEL by default), which are not secrets.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re

from ansible_collections.runbook.recovery.plugins.module_utils.aws import (
    delete_parameter,
    error_code,
    paginate,
    put_json_parameter,
    read_json_parameter,
)
from ansible_collections.runbook.recovery.plugins.module_utils.aws_lambda import (
    LAMBDA_UPDATE_WAIT_SECONDS,
    update_function_configuration,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import (
    RunbookError,
    expires_at,
    isoformat,
    parse_iso,
    utc_now,
)

RECORD_PATH = "/runbook/lambda-env/"
TAG_RECORD, TAG_SET_AT, TAG_EXPIRES = "runbook:env-record", "runbook:env-set-at", "runbook:env-expires-at"
NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]+$")  # AWS's pattern for a key
# Keys AWS reserves (Lambda "Defined runtime environment variables"): a function cannot set them.
RESERVED = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"})
ENVIRONMENT_LIMIT = 4096  # bytes: "The total size of all environment variables doesn't exceed 4 KB"
REVISION_TRIES = 5
DEFAULT_SHOWN = ("LOG_LEVEL", "POWERTOOLS_LOG_LEVEL")


def digest(value: str | None) -> str | None:
    return None if value is None else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def record_name(function: str) -> str:
    return RECORD_PATH + function


def environment_size(variables: dict) -> int:
    """What AWS counts against the 4 KB: the variables as the JSON the API carries."""
    return len(json.dumps(variables, separators=(",", ":")).encode())


def check_size(function: str, wanted: dict) -> None:
    size = environment_size(wanted)
    if size > ENVIRONMENT_LIMIT:
        raise RunbookError(f"{function}'s variables would take {size} bytes, over Lambda's 4 KB: nothing was "
                           "changed. Keep large values in SSM Parameter Store or Secrets Manager and pass their name.")


def check_changes(values: dict, unset: list) -> None:
    """Refused before any call: no change named, a malformed or reserved name, a name both set and removed, a value
    that is not text."""
    if not values and not unset:
        raise RunbookError("name the variables to change: variables={NAME: VALUE, ...}, unset=NAME[,NAME], or "
                           "debug=true (LOG_LEVEL=DEBUG). Nothing was changed.")
    for name in [*values, *unset]:
        if not isinstance(name, str) or not NAME.match(name):
            raise RunbookError(f"{name!r} is not a Lambda environment variable name (a letter, then one or more "
                               "letters, digits and _). Nothing was changed.")
        if name in RESERVED:
            raise RunbookError(f"{name} is reserved by AWS Lambda: a function cannot set it. Nothing was changed.")
    both = sorted(set(values) & set(unset))
    if both:
        raise RunbookError(f"{', '.join(both)} is both set and removed: name it once. Nothing was changed.")
    for name, value in values.items():
        if not isinstance(value, str):
            raise RunbookError(f"the value of {name} must be text (quote it), not {type(value).__name__}. Nothing was "
                               "changed.")


def expiry(lift_after: str | None, now: datetime.datetime) -> str | None:
    return expires_at(lift_after, now, "for")


def describe_value(name: str, value: str | None, shown: tuple) -> str:
    if value is None:
        return "not set"
    return repr(value) if name in shown else f"set ({len(value)} characters)"


class FunctionEnvironment:
    """One function: its variables, the RevisionId they were read with, its tags and its record."""

    def __init__(self, clients, function: str, wait_seconds: float = LAMBDA_UPDATE_WAIT_SECONDS,
                 shown: tuple = DEFAULT_SHOWN):
        self.lam, self.ssm = clients("lambda"), clients("ssm")
        self.function, self.wait_seconds, self.shown = function, wait_seconds, tuple(shown)
        self.arn = self.revision = None
        self.variables: dict = {}
        self.tags: dict = {}

    # -- reading ------------------------------------------------------------------------------------------
    def read(self) -> None:
        try:
            config = self.lam.get_function_configuration(FunctionName=self.function)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise RunbookError(f"Lambda function {self.function!r} does not exist: check the name (names are "
                                   "case-sensitive). Nothing was changed.") from None
            raise
        self.arn = config["FunctionArn"]
        self.revision = config.get("RevisionId")
        self.variables = dict((config.get("Environment") or {}).get("Variables") or {})
        self.tags = self.lam.list_tags(Resource=self.arn).get("Tags") or {}

    def record(self) -> dict | None:
        return read_json_parameter(self.ssm, record_name(self.function), decrypt=True)

    # -- deciding -----------------------------------------------------------------------------------------
    def plan_set(self, values: dict, unset: list) -> list[dict]:
        rows = []
        for name in [*values, *unset]:
            before, after = self.variables.get(name), values.get(name)
            action = "unchanged" if before == after else ("unset" if after is None else "set")
            rows.append({"name": name, "action": action,
                         "before": describe_value(name, before, self.shown),
                         "after": describe_value(name, after, self.shown)})
        return rows

    def plan_undo(self, record: dict | None) -> list[dict]:
        """Per recorded variable: put back (restore), already as it was (unchanged), or changed since by someone
        else (conflict)."""
        rows = []
        for name, entry in sorted(((record or {}).get("variables") or {}).items()):
            now, previous = self.variables.get(name), entry.get("previous")
            if now == previous:
                action = "unchanged"
            elif digest(now) == entry.get("set"):
                action = "restore"
            else:
                action = "conflict"
            rows.append({"name": name, "action": action, "before": describe_value(name, now, self.shown),
                         "after": describe_value(name, previous, self.shown)})
        return rows

    # -- writing ------------------------------------------------------------------------------------------
    def write(self, change) -> dict:
        """`change(variables)` returns the wanted map from the current one; written with the RevisionId of the read
        it was made from, read and made again when the function changed in between."""
        for _try in range(REVISION_TRIES):
            wanted = change(dict(self.variables))
            if wanted == self.variables:
                return wanted
            check_size(self.function, wanted)
            update = {"Environment": {"Variables": wanted}}
            if self.revision:
                update["RevisionId"] = self.revision
            try:
                update_function_configuration(self.lam, self.function, update, f"the update of {self.function}",
                                              self.wait_seconds)
                return wanted
            except Exception as exc:
                if error_code(exc) != "PreconditionFailedException":
                    raise
            self.read()
        raise RunbookError(f"{self.function}'s configuration changed under every one of {REVISION_TRIES} writes: "
                           "someone else keeps updating it. Nothing of theirs was undone; run again once they are "
                           "done.")

    def put_record(self, record: dict) -> None:
        put_json_parameter(self.ssm, record_name(self.function), record,
                           f"runbook.recovery: what lambda-env.yml changed on {self.function}", secure=True)
        tags = {TAG_RECORD: record_name(self.function), TAG_SET_AT: record["set_at"]}
        if record.get("expires_at"):
            tags[TAG_EXPIRES] = record["expires_at"]
        self.lam.tag_resource(Resource=self.arn, Tags=tags)
        if not record.get("expires_at") and TAG_EXPIRES in self.tags:
            self.lam.untag_resource(Resource=self.arn, TagKeys=[TAG_EXPIRES])

    def drop_record(self) -> None:
        """The tags first: a crash in between leaves a parameter without tags, which the next undo still finds."""
        present = [k for k in (TAG_RECORD, TAG_SET_AT, TAG_EXPIRES) if k in self.tags]
        if present:
            self.lam.untag_resource(Resource=self.arn, TagKeys=present)
        delete_parameter(self.ssm, record_name(self.function))


def set_variables(env: FunctionEnvironment, values: dict, unset: list, lift_after: str | None, check_mode: bool,
                  actor: str = "") -> dict:
    """Set `values` and remove `unset` on one function; every other variable kept."""
    env.read()
    rows = env.plan_set(values, unset)
    changing = [r for r in rows if r["action"] != "unchanged"]
    row = {"function": env.function, "variables": rows, "changed": bool(changing)}
    if not changing:
        record = env.record()
        if record and record.get("expires_at"):
            row["expires_at"] = record["expires_at"]
        return row
    now = utc_now()
    row["expires_at"] = expiry(lift_after, now)

    def change(current: dict) -> dict:
        for name in unset:
            current.pop(name, None)
        current.update(values)
        return current

    check_size(env.function, change(dict(env.variables)))
    if check_mode:
        return row
    record = env.record() or {"function": env.function, "arn": env.arn, "first_set_at": isoformat(now),
                              "variables": {}}
    for item in changing:  # the first change of a variable keeps what it held before any of ours
        record["variables"].setdefault(item["name"], {"previous": env.variables.get(item["name"])})
        record["variables"][item["name"]]["set"] = digest(values.get(item["name"]))
    record.update(set_at=isoformat(now), expires_at=row["expires_at"], by=actor or None)
    env.put_record(record)  # before the change: a crash after it leaves a record that tells the truth
    env.write(change)
    return row


def undo_variables(env: FunctionEnvironment, check_mode: bool, force: bool = False) -> dict:
    """Every variable the record names back to what it held before; a variable changed since by someone else is
    refused unless `force`."""
    env.read()
    record = env.record()
    rows = env.plan_undo(record)
    row = {"function": env.function, "variables": rows, "recorded": record is not None,
           "changed": record is not None}
    conflicts = [r["name"] for r in rows if r["action"] == "conflict"]
    if conflicts and not force:
        them = "them" if len(conflicts) > 1 else "it"
        raise RunbookError(
            f"{env.function}: {', '.join(conflicts)} changed since lambda-env.yml set {them} (the value is neither "
            "what it set nor what was there before): someone else's change, kept. "
            "Nothing was changed. Put the variables back by hand, or run again with -e force=true to put back what "
            "was recorded anyway.", function=env.function, variables=rows)
    if check_mode or record is None:
        return row
    restore = {r["name"]: record["variables"][r["name"]]["previous"] for r in rows
               if r["action"] in ("restore", "conflict")}

    def change(current: dict) -> dict:
        for name, previous in restore.items():
            if previous is None:
                current.pop(name, None)
            else:
                current[name] = previous
        return current

    env.write(change)
    env.drop_record()
    return row


def recorded_functions(clients) -> list[dict]:
    """Every record under /runbook/lambda-env/: {function, expires_at, set_at}."""
    found = paginate(clients("ssm"), "get_parameters_by_path", "Parameters", Path=RECORD_PATH.rstrip("/"),
                     Recursive=True, WithDecryption=True)
    records = []
    for parameter in found:
        try:
            document = json.loads(parameter["Value"])
        except ValueError:
            document = {}
        records.append({"function": parameter["Name"][len(RECORD_PATH):], "expires_at": document.get("expires_at"),
                        "set_at": document.get("set_at")})
    return records


def due(records: list[dict], now: datetime.datetime) -> list[str]:
    return sorted(r["function"] for r in records if r.get("expires_at") and parse_iso(r["expires_at"]) <= now)
