"""Emulator extensions for DynamoDB restore fidelity (TTL, streams, deletion protection, tags, PITR) and the
Application Auto Scaling and CloudWatch alarm calls a faithful restore needs.

Probed against moto 5.2.5: TTL, continuous backups (PITR), stream specifications, DeletionProtectionEnabled,
table tags, Application Auto Scaling targets and policies (with the target-tracking alarms AWS creates for them),
CloudWatch metric alarms with dimensions and tags, and SSM parameters behave as AWS documents. A restored table
comes without TTL, stream, tags, PITR and deletion protection, as in AWS ("You must manually set up the following
on the restored table: auto scaling policies, IAM policies, Amazon CloudWatch metrics and alarms, tags, stream
settings, Time to Live (TTL) settings, point in time recovery settings": RestoreTableFromBackup and
RestoreTableToPointInTime in the DynamoDB API reference).

What moto answers unlike AWS, added here following AWS's documented behaviour:

- ``DescribeTable``'s ``ItemCount`` is approximate: "DynamoDB updates this value approximately every six hours.
  Recent changes might not be reflected in this value" (TableDescription, DynamoDB API reference). Moto counts the
  items on every call. Here a table's count is taken when it is first described (a new table: 0) and again only
  after RUNBOOK_EMULATOR_ITEM_COUNT_SECONDS (21600 by default), so code that trusts it for an exact comparison
  fails here as it would on AWS. A backup's ``SourceTableDetails.ItemCount`` is the count as of the backup, with
  the same lag.
- A restored table keeps the billing mode of its source (the backup's table, or the source table of a
  point-in-time restore), as AWS does unless ``BillingModeOverride`` is given; moto's has none
  (``BillingModeSummary: {}``), so a provisioned source came back without a mode.
- Application Auto Scaling ``DescribeScalingPolicies`` with a ``ResourceId`` (and ``ScalableDimension``) returns
  that resource's policies only; moto's matches by substring, so ``table/sessions`` also answered the policies of
  ``table/sessions-restored-...``.

Not added: tags on on-demand backups. AWS Backup's documentation says "DynamoDB does not support assigning tags to
backups unless you first enable Advanced DynamoDB backup", so this project keeps a backup's exact item count in
SSM Parameter Store instead (see plugins/module_utils/aws_dynamodb.py).
"""

from __future__ import annotations

import os
import time
from typing import Any

ITEM_COUNT_SECONDS = float(os.environ.get("RUNBOOK_EMULATOR_ITEM_COUNT_SECONDS", str(6 * 3600)))


def approximate_count(table: Any, now: float | None = None, every: float = ITEM_COUNT_SECONDS) -> int:
    """The table's ItemCount as AWS reports it: the count taken at the last refresh (the first description is one)."""
    now = time.time() if now is None else now
    taken = getattr(table, "_runbook_item_count", None)
    if taken is None or now - taken[1] >= every:
        taken = table._runbook_item_count = (len(table), now)
    return taken[0]


def install_approximate_item_count() -> None:
    from moto.dynamodb.models.table import Table

    original = Table.describe

    def describe(self: Any, base_key: str = "TableDescription") -> dict[str, Any]:
        result = original(self, base_key=base_key)
        result[base_key]["ItemCount"] = approximate_count(self)
        return result

    Table.describe = describe


def install_restored_billing_mode() -> None:
    from moto.dynamodb.models.table import RestoredPITTable, RestoredTable

    from_backup, to_point = RestoredTable.__init__, RestoredPITTable.__init__

    def restored(self: Any, name: str, account_id: str, region: str, backup: Any) -> None:
        from_backup(self, name, account_id, region, backup)
        self.billing_mode = backup.table.billing_mode

    def restored_to_point(self: Any, name: str, account_id: str, region: str, source: Any) -> None:
        to_point(self, name, account_id, region, source)
        self.billing_mode = source.billing_mode

    RestoredTable.__init__ = restored
    RestoredPITTable.__init__ = restored_to_point


def install_exact_policy_filter() -> None:
    from moto.applicationautoscaling.models import ApplicationAutoscalingBackend

    original = ApplicationAutoscalingBackend.describe_scaling_policies

    def describe_scaling_policies(self: Any, service_namespace: str, resource_id: str, scalable_dimension: str,
                                  max_results: int | None, next_token: str) -> Any:
        token, policies = original(self, service_namespace, resource_id, scalable_dimension, max_results, next_token)
        return token, [policy for policy in policies
                       if resource_id in (None, "", policy.resource_id)
                       and scalable_dimension in (None, "", policy.scalable_dimension)]

    ApplicationAutoscalingBackend.describe_scaling_policies = describe_scaling_policies


def install() -> None:
    """Patch moto (called once, before the server starts)."""
    install_approximate_item_count()
    install_restored_billing_mode()
    install_exact_policy_filter()
