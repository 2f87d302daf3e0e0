# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One way to build AWS clients: region, profile, endpoint (AWS_ENDPOINT_URL is honoured by botocore
itself), adaptive retries, and one clear message for a ClientError. Also the pieces every AWS module
shares: paginated listing, naming an error code, and a bounded thread pool that acts on many
resources at once and keeps going when one of them fails."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError
from ansible_collections.runbook.recovery.plugins.module_utils.journal import crash_after
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import Outcome, reported

# boto3 itself is imported when the first client is made (half a second of every module run that needs none:
# pg_backup without an S3 copy, pg_health without an archive); its exceptions are cheap to import.
try:
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_BOTO3 = False

# Adaptive mode adds client-side rate limiting on top of exponential backoff, so a pool of workers
# slows down together when AWS answers ThrottlingException instead of hammering it.
MAX_ATTEMPTS = 10
DEFAULT_WORKERS = 16


def aws_argument_spec() -> dict:
    return dict(
        region=dict(type="str", aliases=["aws_region"]),
        profile=dict(type="str", aliases=["aws_profile"]),
        endpoint_url=dict(type="str", aliases=["aws_endpoint_url"]),
        access_key=dict(type="str", aliases=["aws_access_key_id"], no_log=True),
        secret_key=dict(type="str", aliases=["aws_secret_access_key"], no_log=True),
        session_token=dict(type="str", aliases=["aws_session_token"], no_log=True),
    )


def resources_argument_spec(states=("stopped", "resumed", "present", "undone"), **options) -> dict:
    """The options of every module that acts on many resources of one type (states=() for one without a state)."""
    spec = aws_argument_spec()
    if states:
        spec["state"] = dict(type="str", choices=list(states), required=True)
    spec.update(workers=dict(type="int", default=DEFAULT_WORKERS), **options)
    return spec


def client(service: str, params: dict, pool_size: int = 10):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise RunbookError("boto3 is required on the managed host for AWS operations: pip install boto3") from None
    session = boto3.session.Session(
        profile_name=params.get("profile"), region_name=params.get("region"),
        aws_access_key_id=params.get("access_key"), aws_secret_access_key=params.get("secret_key"),
        aws_session_token=params.get("session_token"))
    config = Config(retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS}, connect_timeout=10, read_timeout=60,
                    max_pool_connections=max(10, pool_size))
    return session.client(service, endpoint_url=params.get("endpoint_url") or None, config=config)


def fail_at_once(aws_client, operation: str, code: str) -> None:
    """Let `code` from `operation` fail on the first answer. botocore retries some refusals as throttling
    (LimitExceededException is one) for a minute, when AWS will answer the same until a limit's window moves on."""
    def no_retry(response=None, **_):
        if response is not None and response[1].get("Error", {}).get("Code") == code:
            return False  # the first non-None answer to needs-retry decides; the more specific event is asked first
        return None

    event = f"needs-retry.{aws_client.meta.service_model.service_id.hyphenize()}.{operation}"
    aws_client.meta.events.register_first(event, no_retry, unique_id=f"runbook-fail-at-once-{operation}-{code}")


class Clients:
    """One client per service for a module run, shared by every worker thread (boto3 clients are
    thread-safe once built; building them is not, hence the lock)."""

    def __init__(self, params: dict, workers: int = DEFAULT_WORKERS):
        if workers < 1:
            raise RunbookError(f"workers={workers}: give 1 or more.")
        self.params, self.workers = params, workers
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str):
        with self._lock:
            if service not in self._clients:
                self._clients[service] = client(service, self.params, pool_size=self.workers)
            return self._clients[service]


def region_of(aws_client) -> str:
    return aws_client.meta.region_name


def error_code(exc: BaseException) -> str | None:
    if HAS_BOTO3 and isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def describe_error(exc: Exception, action: str) -> str:
    if HAS_BOTO3 and isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{action} failed: {error.get('Code', 'ClientError')}: {error.get('Message', str(exc))}"
    if HAS_BOTO3 and isinstance(exc, BotoCoreError):
        return f"{action} failed: {exc}"
    return f"{action} failed: {exc}"


def is_aws_error(exc: BaseException) -> bool:
    return HAS_BOTO3 and isinstance(exc, (ClientError, BotoCoreError))


def aws_failures_reported(module, action: str):
    """The outcome seam (outcome.reported) for an AWS module: an AWS error's message names `action`."""
    return reported(module, lambda exc: describe_error(exc, action) if is_aws_error(exc) else None)


def paginate(aws_client, operation: str, key: str, **kwargs) -> list:
    """Every item of a list call, through botocore's paginator (never only the first page)."""
    items = []
    for page in aws_client.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key, []))
    return items


# -- records kept in SSM Parameter Store (what a change replaced, where the resource has no tags for it) -------------
def read_json_parameter(ssm, name: str, decrypt: bool = False) -> dict | None:
    """The JSON document of a parameter, None when there is none; one that is not JSON (edited by hand) refused."""
    try:
        text = ssm.get_parameter(Name=name, WithDecryption=decrypt)["Parameter"]["Value"]
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise
    try:
        return json.loads(text)
    except ValueError:
        raise RunbookError(f"the record {name} is not a JSON document: it was edited by hand. Nothing was changed; "
                           "fix or delete it.") from None


def put_json_parameter(ssm, name: str, document: dict, description: str, secure: bool = False) -> None:
    ssm.put_parameter(Name=name, Type="SecureString" if secure else "String", Overwrite=True,
                      Value=json.dumps(document, sort_keys=True), Description=description)


def delete_parameter(ssm, name: str) -> bool:
    """Whether there was one to delete."""
    try:
        ssm.delete_parameter(Name=name)
        return True
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            return False
        raise


def exit_with_rows(module, result: dict, rows: list[dict], failures: str, name: str = "name") -> None:
    """Exit with the per-resource rows; when a row carries an error, fail instead, keeping every row in the result,
    with a message that ends with what the run changed (the outcome seam). `failures` completes "N of M ...: "
    (such as "log groups failed"). A row says what it changed in `changes` (a failed row too: what was done before
    its error); a row without it that succeeded with `changed` counts as one change of `row[name]`."""
    failed = [row for row in rows if row.get("error")]
    if failed:
        done = Outcome()
        for row in rows:
            changes = row.get("changes")
            if changes is None:
                changes = [f"{row.get(name)} ({row.get('fix') or 'changed'})"] if row.get("changed") and not \
                    row.get("error") else []
            for change in changes:
                done.wrote(change)
        message = f"{len(failed)} of {len(rows)} {failures}: " + "; ".join(r["error"] for r in failed[:5])
        facts = done.facts()
        module.fail_json(msg=done.told(message), **{**result, "changes": facts["changes"]})
    crash_after(module, bool(result.get("changed")))
    module.exit_json(**result)


def for_each(items: Iterable, action: Callable, workers: int = DEFAULT_WORKERS) -> list:
    """Run `action(item)` for every item on a bounded pool; return, in the items' order, either the
    action's result or the exception it raised. One failing item never stops the others."""
    def guarded(item):
        try:
            return action(item)
        except Exception as exc:  # reported per item by the caller
            return exc

    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(guarded, items))
