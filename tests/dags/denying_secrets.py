"""A secrets backend that refuses the Variable runbook_inventory and the Connection runbook_postgres
(AirflowSecretsBackendAccessDenied: an authoritative no, as a vault's permission error is), for
tests/dags/test_dags.py's failed-lookup test."""

from __future__ import annotations

from airflow.sdk.bases.secrets_backend import BaseSecretsBackend
from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied


class DenyingBackend(BaseSecretsBackend):
    def get_variable(self, key: str):
        if key == "runbook_inventory":
            raise AirflowSecretsBackendAccessDenied(f"permission denied reading {key}")
        return None

    def get_conn_value(self, conn_id: str):
        if conn_id == "runbook_postgres":
            raise AirflowSecretsBackendAccessDenied(f"permission denied reading {conn_id}")
        return None
