"""The DagBag of dags/ loads with no import error, and every DAG is one a person can operate: tags, an owner, a
description, no catch-up; scheduled ones retry, manual ones run one at a time and never retry the change."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def dagbag(airflow):
    os.environ.update({k: v for k, v in airflow.env.items() if k.startswith("AIRFLOW")})
    sys.path.insert(0, str(ROOT / "dags"))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


SCHEDULED = {"backup_postgres", "verify_backups", "pg_integrity", "pg_maintenance", "health_sweep", "log_retention",
             "backup_dynamodb", "pitr_drill", "base_backup_postgres", "lift_expired"}
MANUAL = {"recover_db", "recover_db_to_a_point_in_time", "recover_rows", "emergency_shutdown", "emergency_resume",
          "scale", "bootstrap_fixes", "kill_long_queries", "restart_app", "terraform_unlock", "rollback_deploy",
          "lambda_env", "waf_block", "waf_allow", "waf_count_rule",
          "security_group_rule", "cognito_user"}


def test_no_import_errors_and_every_dag_is_there(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == SCHEDULED | MANUAL


def test_every_dag_has_tags_owner_description_and_no_catchup(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.owner and dag.owner != "airflow", dag.dag_id
        assert dag.doc_md and len(dag.doc_md.strip()) > 40, dag.dag_id
        assert dag.catchup is False, dag.dag_id
        assert all(task.on_failure_callback for task in dag.tasks), dag.dag_id


def test_scheduled_dags_have_a_schedule_and_retries(dagbag):
    for dag_id in SCHEDULED:
        dag = dagbag.dags[dag_id]
        assert dag.timetable.can_be_scheduled, dag_id
        assert all(task.retries >= 1 for task in dag.tasks), dag_id


def test_manual_dags_plan_approve_apply_verify_one_at_a_time(dagbag):
    for dag_id in MANUAL:
        dag = dagbag.dags[dag_id]
        assert not dag.timetable.can_be_scheduled and dag.max_active_runs == 1, dag_id
        chain = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
        assert chain == {"plan": ["approve"], "approve": ["approve_2"], "approve_2": ["apply"], "apply": ["verify"],
                         "verify": []}, dag_id
        assert type(dag.task_dict["approve"]).__name__ == "FourEyesApproval"
        assert type(dag.task_dict["apply"]).__name__ == "ApplyOperator"
        # A reject skips everything after it; a timeout fails the approval: nothing is applied either way.
        assert dag.task_dict["approve"].ignore_downstream_trigger_rules and dag.task_dict["approve"].defaults is None
        assert dag.task_dict["apply"].retries == 0, dag_id
        assert dag.task_dict["plan"].check and dag.task_dict["verify"].check and not dag.task_dict["apply"].check
        assert dag.task_dict["apply"].extravars["confirm"] is True
        assert "reason" in dag.params and dag.params.get_param("reason").schema["minLength"] >= 5, dag_id
        for name, param in dag.params.items():
            assert param.description and param.schema.get("type"), (dag_id, name)


def test_the_recover_db_form(dagbag):
    params = dagbag.dags["recover_db"].params
    assert set(params) == {"database", "backup", "reason"}
    assert params["backup"] == "latest"
    assert params.get_param("backup").schema["pattern"] == "^(latest|[0-9]{8}T[0-9]{6}Z)$"


def test_every_free_text_field_refuses_a_template_when_the_run_is_triggered(dagbag):
    """The form (and a run's conf, which Airflow checks against the same schema) refuses a template in any
    free-text field of any manual DAG before a run exists."""
    from airflow.sdk.exceptions import ParamValidationError

    payloads = ["chat{{ lookup('pipe', 'touch /tmp/F') }}", "{% if true %}x{% endif %}"]
    checked = 0
    for dag_id in MANUAL:
        params = dagbag.dags[dag_id].params
        for name in params:
            schema = params.get_param(name).schema
            if "string" not in str(schema.get("type")) or schema.get("enum"):
                continue
            for payload in payloads:
                with pytest.raises(ParamValidationError):
                    params.get_param(name).resolve(payload)
                checked += 1
    assert checked >= 2 * 14, checked  # every free-text field of the issue, and the reasons


def test_a_restart_is_verified_by_the_health_of_what_it_restarted(dagbag):
    dag = dagbag.dags["restart_app"]
    verify = dag.task_dict["verify"]
    # A restart always has something to do: its verify step is the playbook's health check, which restarts nothing.
    assert verify.extravars == {"service": "{{ params.service }}", "verify": True} and verify.expect_no_change
    assert "verify" not in dag.task_dict["apply"].extravars and "verify" not in dag.task_dict["plan"].extravars


def test_a_rollback_is_verified_against_what_it_recorded(dagbag):
    # A second rollback undoes the first, so check mode after a rollback is never empty: the verify step asks whether
    # each resource still runs what the rollback set (to=recorded).
    dag = dagbag.dags["rollback_deploy"]
    assert dag.task_dict["verify"].extravars["to"] == "recorded" and dag.task_dict["verify"].expect_no_change
    assert dag.task_dict["apply"].extravars["to"] == "{{ params.to }}"


def test_the_scale_form_reaches_compose_replicas(dagbag):
    dag = dagbag.dags["scale"]
    assert dag.params["compose_replicas"] is None  # empty: unchanged
    assert dag.params.get_param("compose_replicas").schema["minimum"] == 0
    assert dag.task_dict["apply"].extravars["compose_replicas"] == "{{ params.compose_replicas }}"
