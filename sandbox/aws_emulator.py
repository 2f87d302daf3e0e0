"""The local AWS API emulator: moto's server, extended with the operations this project calls
that moto lacks.

Added here (the modules keep calling the real AWS API; only the emulator learns it):
- API Gateway v2 ``UpdateStage`` (PATCH /v2/apis/{apiId}/stages/{stageName}), with AWS's
  documented semantics: only the members present in the request change; ``DefaultRouteSettings``
  and each ``RouteSettings`` entry are merged field by field; the response is the full stage.

Run: python sandbox/aws_emulator.py --port 55555   (binds 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any
from urllib.parse import unquote

# Members of UpdateStage whose value replaces the stage's (moto attribute names).
_REPLACED = {
    "accessLogSettings": "access_log_settings",
    "autoDeploy": "auto_deploy",
    "clientCertificateId": "client_certificate_id",
    "deploymentId": "deployment_id",
    "description": "description",
}


def update_stage_model(stage: Any, changes: dict[str, Any]) -> Any:
    """Apply an UpdateStage request body to a moto Stage, in place."""
    for member, attribute in _REPLACED.items():
        if member in changes:
            setattr(stage, attribute, changes[member])
    if "defaultRouteSettings" in changes:
        stage.default_route_settings = {**(stage.default_route_settings or {}), **changes["defaultRouteSettings"]}
    if "routeSettings" in changes:
        merged = dict(stage.route_settings or {})
        for route_key, settings in changes["routeSettings"].items():
            merged[route_key] = {**merged.get(route_key, {}), **settings}
        stage.route_settings = merged
    if "stageVariables" in changes:
        variables = dict(stage.stage_variables or {})
        for key, value in changes["stageVariables"].items():
            # AWS removes a stage variable whose new value is empty.
            if value in (None, ""):
                variables.pop(key, None)
            else:
                variables[key] = value
        stage.stage_variables = variables
    stage.updated = datetime.now()
    return stage


def install_extensions() -> None:
    from moto.apigatewayv2.models import Stage
    from moto.apigatewayv2.responses import ApiGatewayV2Response

    def to_json_with_deployment(self: Any) -> dict[str, Any]:
        document = _original_to_json(self)
        if getattr(self, "deployment_id", None):
            document["deploymentId"] = self.deployment_id
        return document

    def update_stage(self: Any) -> tuple[int, dict, str]:
        parts = self.path.split("/")
        api_id, stage_name = parts[-3], unquote(parts[-1])
        stage = self.apigatewayv2_backend.get_stage(api_id, stage_name)  # raises NotFound like AWS
        update_stage_model(stage, json.loads(self.body or "{}"))
        return 200, {}, json.dumps(stage.to_json())

    if getattr(Stage, "_runbook_extended", False):
        return
    _original_to_json = Stage.to_json
    Stage.to_json = to_json_with_deployment
    Stage._runbook_extended = True
    if not hasattr(ApiGatewayV2Response, "update_stage"):
        ApiGatewayV2Response.update_stage = update_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=55555)
    args = parser.parse_args()
    install_extensions()
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main()
