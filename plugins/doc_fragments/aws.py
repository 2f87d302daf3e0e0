# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  region:
    description: AWS region.
    type: str
    aliases: [aws_region]
  profile:
    description: AWS profile.
    type: str
    aliases: [aws_profile]
  endpoint_url:
    description: AWS endpoint URL (the sandbox's emulator). C(AWS_ENDPOINT_URL) in the environment works too.
    type: str
    aliases: [aws_endpoint_url]
  access_key:
    description: AWS access key id.
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description: AWS secret access key. Never logged.
    type: str
    aliases: [aws_secret_access_key]
  session_token:
    description: AWS session token. Never logged.
    type: str
    aliases: [aws_session_token]
requirements:
  - boto3 on the managed host, for the AWS options
"""

    # For the modules that act on many resources at once (lambda_concurrency, apigateway_stage_throttle, ...).
    RESOURCES = r"""
options:
  workers:
    description: Resources acted on at the same time (a bounded thread pool; botocore's adaptive retries slow it down
      together when AWS throttles).
    type: int
    default: 16
"""

    # The emergency modules' apply from their own plan (lambda_concurrency, apigateway_stage_throttle,
    # ecs_service_count).
    PLANNED = r"""
options:
  planned:
    description:
      - The C(resources) of this module's own check-mode run with the same O(state), made just before (a role's plan
        task registers them). The resources acted on are those rows (the selection options are not resolved again),
        and each resource is acted on in the state that plan read, without reading it again, when that read is under
        two minutes old. An older one is compared with a new read before anything is written to the resource, and a
        resource that changed in between is refused (a failed row saying what changed); a row whose read failed is
        read as if there were no plan. A plan and its apply then cost one read, one tag and one write per resource
        that changes, and no call for one that does not.
      - A row that is not such a row (no C(kind), C(resource), C(arn)) fails before any change.
    type: list
    elements: dict
    version_added: 0.2.0
"""

    # How lambda_concurrency and lambda_capacity choose their functions.
    LAMBDA_SELECTION = r"""
options:
  names:
    description: Function names.
    type: list
    elements: str
    default: []
  prefixes:
    description: Every function whose name starts with one of these.
    type: list
    elements: str
    default: []
  tags:
    description: Every function carrying all of these tags.
    type: dict
    default: {}
"""
