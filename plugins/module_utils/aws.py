# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One way to build AWS clients: region, profile, endpoint (AWS_ENDPOINT_URL is honoured by botocore
itself), adaptive retries, and one clear message for a ClientError."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_BOTO3 = False


def aws_argument_spec() -> dict:
    return dict(
        region=dict(type="str", aliases=["aws_region"]),
        profile=dict(type="str", aliases=["aws_profile"]),
        endpoint_url=dict(type="str", aliases=["aws_endpoint_url"]),
        access_key=dict(type="str", aliases=["aws_access_key_id"], no_log=True),
        secret_key=dict(type="str", aliases=["aws_secret_access_key"], no_log=True),
        session_token=dict(type="str", aliases=["aws_session_token"], no_log=True),
    )


def client(service: str, params: dict):
    if not HAS_BOTO3:
        raise RunbookError("boto3 is required on the managed host for AWS operations: pip install boto3")
    session = boto3.session.Session(
        profile_name=params.get("profile"), region_name=params.get("region"),
        aws_access_key_id=params.get("access_key"), aws_secret_access_key=params.get("secret_key"),
        aws_session_token=params.get("session_token"))
    config = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=10, read_timeout=60)
    return session.client(service, endpoint_url=params.get("endpoint_url") or None, config=config)


def describe_error(exc: Exception, action: str) -> str:
    if HAS_BOTO3 and isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{action} failed: {error.get('Code', 'ClientError')}: {error.get('Message', str(exc))}"
    if HAS_BOTO3 and isinstance(exc, BotoCoreError):
        return f"{action} failed: {exc}"
    return f"{action} failed: {exc}"
