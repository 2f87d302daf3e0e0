# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is the account/region bootstrapped for the CDK? The CDKToolkit stack must exist in a usable state and the
bootstrap version the CLI reads (SSM parameter /cdk-bootstrap/<qualifier>/version) must be at least the one the
app needs - otherwise every deploy fails with "Need to perform AWS CDK bootstrap"."""

from __future__ import annotations

from ansible_collections.runbook.recovery.plugins.module_utils.aws import error_code

DEFAULT_QUALIFIER = "hnb659fds"
DEFAULT_STACK = "CDKToolkit"
USABLE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")
# A stack in one of these must be deleted before `cdk bootstrap` can create it again.
LEFT_BEHIND = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED")


def toolkit_stack(cfn, stack_name: str) -> dict | None:
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:
        if error_code(exc) == "ValidationError":
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def bootstrap_version(ssm, stack: dict | None, qualifier: str) -> int | None:
    try:
        return int(ssm.get_parameter(Name=f"/cdk-bootstrap/{qualifier}/version")["Parameter"]["Value"])
    except Exception as exc:
        if error_code(exc) != "ParameterNotFound" and not isinstance(exc, ValueError):
            raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}
    return int(outputs["BootstrapVersion"]) if outputs.get("BootstrapVersion", "").isdigit() else None


def inspect(cfn, ssm, stack_name: str, qualifier: str, required_version: int) -> dict:
    """{status, version, required_version, problem}: problem is None when the environment is bootstrapped."""
    stack = toolkit_stack(cfn, stack_name)
    status = stack["StackStatus"] if stack else None
    version = bootstrap_version(ssm, stack, qualifier) if stack else None
    if stack is None:
        problem = f"stack {stack_name} does not exist"
    elif status in LEFT_BEHIND:
        problem = f"stack {stack_name} is {status} and must be deleted before it can be bootstrapped again"
    elif status not in USABLE:
        problem = f"stack {stack_name} is {status}"
    elif version is None:
        problem = f"no bootstrap version (/cdk-bootstrap/{qualifier}/version is missing)"
    elif version < required_version:
        problem = f"bootstrap version {version} is older than the {required_version} this app needs"
    else:
        problem = None
    return {"stack": stack_name, "status": status, "version": version, "required_version": required_version,
            "problem": problem}


def bootstrap_command(executable: str, account: str, region: str, stack_name: str, qualifier: str,
                      extra_args: list[str]) -> list[str]:
    command = [executable, "bootstrap", f"aws://{account}/{region}"]
    if stack_name != DEFAULT_STACK:
        command += ["--toolkit-stack-name", stack_name]
    if qualifier != DEFAULT_QUALIFIER:
        command += ["--qualifier", qualifier]
    return command + list(extra_args)
