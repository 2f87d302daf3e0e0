"""Emulator extension for Lambda configuration writes that do not undo someone else's: RevisionId.

What moto lacks, added here following AWS's documented behaviour (Lambda API reference, UpdateFunctionConfiguration:
"RevisionId - Update the function only if the revision ID matches the ID that's specified. Use this option to
avoid modifying a function that has changed since you last read it."):

- A function has a ``RevisionId`` in its configuration (``GetFunctionConfiguration``, ``GetFunction``, and the
  answers of the calls that change it), as AWS gives one (moto gives one to aliases only).
- Every change of a function's configuration (``UpdateFunctionConfiguration``) or code (``UpdateFunctionCode``) gives
  it a new ``RevisionId``, as AWS does (moto keeps the one it made at creation).
- ``UpdateFunctionConfiguration`` with a ``RevisionId`` that is not the function's current one is refused with
  ``PreconditionFailedException`` (HTTP 412: "The Revision Id provided does not match the latest Revision Id. Call
  the GetFunction/GetAlias API to retrieve the latest Revision Id"), and nothing is changed (moto ignores it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote


def install_revision_ids() -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.awslambda.responses import LambdaResponse
    from moto.moto_api._internal import mock_random as random

    try:
        from sandbox.emulator_shutdown import _error
    except ImportError:  # started as a script (python sandbox/aws_emulator.py): its folder is on sys.path
        from emulator_shutdown import _error

    original_init = LambdaFunction.__init__
    original_read = LambdaFunction.get_configuration
    original_configuration = LambdaFunction.update_configuration
    original_code = LambdaFunction.update_function_code

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.revision_id = str(random.uuid4())

    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**original_read(self, *args, **kwargs), "RevisionId": self.revision_id}

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        self.revision_id = str(random.uuid4())
        return original_configuration(self, config_updates)

    def update_function_code(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.revision_id = str(random.uuid4())
        return original_code(self, *args, **kwargs)

    original_response = LambdaResponse.update_function_configuration

    def update_function_configuration(self: Any) -> Any:
        wanted = (self.json_body or {}).get("RevisionId")
        if wanted:
            name = unquote(self.path.rsplit("/", 2)[-2])
            function = self.backend.get_function(name, self._get_param("Qualifier", None))
            if wanted != function.revision_id:
                raise _error("PreconditionFailedException", "The Revision Id provided does not match the latest "
                             "Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                             412)
        return original_response(self)

    LambdaFunction.__init__ = __init__
    LambdaFunction.get_configuration = get_configuration
    LambdaFunction.update_configuration = update_configuration
    LambdaFunction.update_function_code = update_function_code
    LambdaResponse.update_function_configuration = update_function_configuration


def install() -> None:
    """Patch moto (called once, before the server starts)."""
    install_revision_ids()
